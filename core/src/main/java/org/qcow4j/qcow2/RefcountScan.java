package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.qcow4j.QcowException;
import org.qcow4j.format.BitmapTable;
import org.qcow4j.format.CFormat;
import org.qcow4j.format.Feature;
import org.qcow4j.format.L1Entry;
import org.qcow4j.format.L2Entry;
import org.qcow4j.format.RefcountBlock;
import org.qcow4j.format.SubclusterType;

/**
 * The scan of {@link Qcow2Check}: what {@code qemu-img check} finds and how it words it. It recomputes every host
 * cluster's refcount from all metadata (QEMU's {@code calculate_refcounts}), compares the result with the stored
 * refcounts ({@code compare_refcounts}) and checks the COPIED flags of the active tables ({@code
 * check_oflag_copied}), reporting each finding as QEMU does and counting it in the {@link CheckContext}.
 *
 * <p>The scan decides what a finding is; where the mode repairs it ("Repairing ..." rather than "ERROR ..."), the
 * writes are {@link RefcountRepair}'s.
 */
final class RefcountScan {
    private final CheckContext c;
    private final RefcountRepair repairs;
    /** One cluster's worth of L2 table, reused for every table read. */
    private final ByteBuffer l2Buffer;
    private final long[] l2Table;

    /** The {@code fix} of the current {@link #calculateRefcounts} (QEMU's BDRV_FIX_ERRORS there). */
    private boolean fixing;

    RefcountScan(CheckContext c, RefcountRepair repairs) {
        this.c = c;
        this.repairs = repairs;
        this.l2Buffer = ByteBuffer.allocate((int) c.clusterSize).order(ByteOrder.BIG_ENDIAN);
        this.l2Table = new long[(int) (c.clusterSize / 8)];
    }

    // ------------------------------------------------------------------ QEMU's calculate_refcounts

    /**
     * QEMU's {@code calculate_refcounts}. {@code fix}: a refcount block past the end of the file has the file grown
     * to it (QEMU's BDRV_FIX_ERRORS; a dry run only decides whether it could).
     */
    void calculateRefcounts(CheckSnapshotTable snapshots, boolean fix) throws IOException {
        fixing = fix;
        addReference(0, c.clusterSize); // header
        checkL1(c.header.l1TableOffset(), c.header.l1Size(), true);

        if (c.hasDataFile && !snapshots.entries().isEmpty()) {
            c.corruption("ERROR " + snapshots.entries().size() + " snapshots in image with data file");
        }
        for (CheckSnapshotTable.Entry sn : snapshots.entries()) {
            if (c.offsetIntoCluster(sn.l1Offset()) != 0) {
                c.corruption("ERROR snapshot " + sn.id() + " (" + sn.name() + ") l1_offset=" + CFormat.altHex(sn.l1Offset())
                        + ": L1 table is not cluster aligned; snapshot table entry corrupted");
                continue;
            }
            if (sn.l1Size() > L1Entry.MAX_ENTRIES) {
                c.corruption("ERROR snapshot " + sn.id() + " (" + sn.name() + ") l1_size=" + CFormat.altHex(sn.l1Size())
                        + ": L1 table is too large; snapshot table entry corrupted");
                continue;
            }
            checkL1(sn.l1Offset(), (int) sn.l1Size(), false);
        }
        addReference(c.header.snapshotsOffset(), snapshots.size());

        addReference(c.refcountTableOffset, c.stored.table().length * 8L);

        if (c.header.crypto() != null && c.header.crypto().length() > 0) {
            // the LUKS header and key material (QEMU's calculate_refcounts: "encryption")
            addReference(c.header.crypto().offset(), c.header.crypto().length());
        }

        if (c.header.bitmaps() != null && c.header.has(Feature.BITMAPS)) {
            addReference(c.header.bitmaps().directoryOffset(), c.header.bitmaps().directorySize());
            for (BitmapTable t : c.bitmapTables) {
                addReference(t.offset(), (long) t.entries() * BitmapTable.ENTRY_SIZE);
                for (long entry : c.readBitmapTable(t)) {
                    long offset = BitmapTable.dataOffset(entry);
                    if (offset != 0) {
                        addReference(offset, c.clusterSize);
                    }
                }
            }
        }

        checkRefcountBlocks(fix);
    }

    /**
     * QEMU's {@code check_refcounts_l1}: references the L1 table, each L2 table it names and, through
     * {@link #checkL2}, their clusters. Only the active table ({@code active}) counts allocation and fragmentation.
     */
    private void checkL1(long l1Offset, int l1Size, boolean active) throws IOException {
        if (l1Size == 0) {
            return;
        }
        addReference(l1Offset, l1Size * 8L);
        if (l1Offset >= c.fileLength) {
            return; // a table wholly past the end of the file reads as zeros: it maps nothing (no need to read 32 MiB)
        }
        long[] l1 = active ? c.activeL1 : c.readLongs(l1Offset, l1Size);
        if (l1 == null) {
            c.checkError("ERROR: I/O error in check_refcounts_l1");
            throw c.checkFailed(CheckContext.EIO);
        }
        for (long entry : l1) {
            if (entry == 0) {
                continue;
            }
            if (L1Entry.hasReservedBits(entry)) {
                c.corruption("ERROR found L1 entry with reserved bits set: " + CFormat.hex(entry));
            }
            long l2Offset = L1Entry.l2Offset(entry);
            addReference(l2Offset, c.clusterSize);
            if (c.offsetIntoCluster(l2Offset) != 0) {
                c.corruption("ERROR l2_offset=" + CFormat.hex(l2Offset) + ": Table is not cluster aligned; L1 entry corrupted");
            }
            checkL2(l2Offset, active);
        }
    }

    /**
     * QEMU's {@code fix_l2_entry_by_zero}: entry {@code i} of the L2 table at {@code l2Offset} becomes a zero cluster
     * (with extended L2 entries, no host offset and its allocated subclusters zero), written at once and forced.
     */
    private void fixL2EntryByZero(long l2Offset, int i, long bitmap) throws IOException {
        int entrySize = c.extendedL2 ? 16 : 8;
        ByteBuffer fixed = ByteBuffer.allocate(entrySize).order(ByteOrder.BIG_ENDIAN);
        if (c.extendedL2) {
            long zeroBitmap = (bitmap | bitmap << 32) & L2Entry.BITMAP_ALL_ZERO;
            fixed.putLong(8, zeroBitmap);
            l2Table[2 * i] = 0;
            l2Table[2 * i + 1] = zeroBitmap;
        } else {
            fixed.putLong(0, L2Entry.ZERO);
            l2Table[i] = L2Entry.ZERO;
        }
        if (c.writer != null) {
            c.write(fixed, l2Offset + (long) i * entrySize);
            c.force();
        }
        c.corruptions--;
        c.corruptionsFixed++;
    }

    /** QEMU's {@code check_refcounts_l2}: references and checks every entry of one L2 table. */
    private void checkL2(long l2Offset, boolean active) throws IOException {
        readL2(l2Offset);
        long nextContiguousOffset = 0;
        for (int i = 0; i < l2Entries(); i++) {
            long entry = l2Entry(i);
            long bitmap = l2Bitmap(i);
            SubclusterType type = clusterType(entry);
            if (type != SubclusterType.COMPRESSED && (entry & L2Entry.STD_RESERVED_MASK) != 0) {
                c.corruption("ERROR found l2 entry with reserved bits set: " + CFormat.hex(entry));
            }
            switch (type) {
                case COMPRESSED -> {
                    if ((entry & L2Entry.COPIED) != 0) {
                        c.corruption("ERROR: coffset=0x" + CFormat.hex(L2Entry.compressedOffset(entry, c.clusterBits))
                                + ": copied flag must never be set for compressed clusters");
                        entry &= ~L2Entry.COPIED;
                    }
                    if (c.hasDataFile) {
                        c.corruption("ERROR compressed cluster " + i + " with data file, entry=0x" + CFormat.hex(entry));
                        break;
                    }
                    if (bitmap != 0) {
                        c.corruption("ERROR compressed cluster " + i + " with non-zero subcluster allocation bitmap, entry=0x"
                                + CFormat.hex(entry));
                        break;
                    }
                    // Every host cluster the sector-rounded stream touches gets a reference.
                    addReference(L2Entry.compressedOffset(entry, c.clusterBits), L2Entry.compressedSize(entry, c.clusterBits));
                    if (active) {
                        c.allocatedClusters++;
                        c.compressedClusters++;
                        c.fragmentedClusters++; // QEMU counts every compressed cluster as fragmented
                    }
                }
                case NORMAL, ZERO_ALLOC -> {
                    long offset = L2Entry.hostOffset(entry);
                    if (hasInvalidBitmap(entry, bitmap)) {
                        c.corruption("ERROR offset=" + CFormat.hex(offset)
                                + ": Allocated cluster has corrupted subcluster allocation bitmap");
                    }
                    if (c.offsetIntoCluster(offset) != 0) {
                        boolean containsData = c.extendedL2 ? (bitmap & L2Entry.BITMAP_ALL_ALLOC) != 0
                                : (entry & L2Entry.ZERO) == 0;
                        if (containsData) {
                            c.corruption("ERROR offset=" + CFormat.hex(offset)
                                    + ": Data cluster is not properly aligned; L2 entry corrupted.");
                        } else {
                            c.repairableCorruption((fixing ? "Repairing" : "ERROR") + " offset=" + CFormat.hex(offset)
                                    + ": Preallocated cluster is not properly aligned; L2 entry corrupted.");
                            if (fixing) {
                                fixL2EntryByZero(l2Offset, i, bitmap);
                                continue; // the cluster is unused now: neither counted nor referenced
                            }
                        }
                    }
                    if (active) {
                        c.allocatedClusters++;
                        if (nextContiguousOffset != 0 && offset != nextContiguousOffset) {
                            c.fragmentedClusters++;
                        }
                        nextContiguousOffset = offset + c.clusterSize;
                    }
                    if (!c.hasDataFile) {
                        addReference(offset, c.clusterSize);
                    }
                }
                case UNALLOCATED_PLAIN -> {
                    if (hasInvalidBitmap(entry, bitmap)) {
                        c.corruption("ERROR: Unallocated cluster has non-zero subcluster allocation map");
                    }
                }
                default -> {
                    // ZERO_PLAIN: nothing is allocated, nothing to check.
                }
            }
        }
    }

    /**
     * QEMU's {@code check_refblocks}: references each refcount block, which must be referenced exactly once. A table
     * entry that cannot name a block (reserved bits, unaligned) or a block referenced more than once makes the
     * structure one to rebuild; a block past the end of the file is a corruption that {@code fix} repairs by growing
     * the file to it (QEMU's {@code bdrv_co_truncate}, {@link RefcountRepair#growFileForRefcountBlock}), so that it
     * is a referenced, zeroed cluster.
     */
    private void checkRefcountBlocks(boolean fix) throws IOException {
        long[] table = c.stored.table();
        for (int i = 0; i < table.length; i++) {
            long offset = table[i] & RefcountBlock.TABLE_OFFSET_MASK;
            long cluster = offset >>> c.clusterBits;
            if ((table[i] & ~RefcountBlock.TABLE_OFFSET_MASK) != 0) {
                c.rebuildCorruption("ERROR refcount table entry " + i + " has reserved bits set");
                continue;
            }
            if (c.offsetIntoCluster(offset) != 0) {
                c.rebuildCorruption("ERROR refcount block " + i + " is not cluster aligned; refcount table entry corrupted");
                continue;
            }
            if (Long.compareUnsigned(cluster, c.nbClusters) >= 0) {
                c.repairableCorruption((fix ? "Repairing" : "ERROR") + " refcount block " + i + " is outside image");
                if (fix && repairs.growFileForRefcountBlock(i, offset)) {
                    addReference(offset, c.clusterSize); // a fresh zeroed cluster: its refcount is exactly 1
                }
                continue;
            }
            if (offset != 0) {
                addReference(offset, c.clusterSize);
                long count = c.computed.get(cluster);
                if (count != 1) {
                    c.rebuildCorruption("ERROR refcount block " + i + " refcount=" + Long.toUnsignedString(count));
                }
            }
        }
    }

    /**
     * QEMU's {@code qcow2_inc_refcounts_imrt}: one more reference to every cluster of {@code [offset, offset+size)}.
     * A range reaching a whole cluster or more past the end of the file is a corruption and counts nothing.
     */
    private void addReference(long offset, long size) throws QcowException {
        if (size <= 0) {
            return;
        }
        if (offset + size - c.fileLength >= c.clusterSize) { // QEMU's int64_t arithmetic, wrap-around included
            c.corruption("ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x"
                    + CFormat.hex(offset) + " size 0x" + CFormat.hex(size));
            return;
        }
        long first = offset >>> c.clusterBits;
        long last = (offset + size - 1) >>> c.clusterBits; // below 2^55: k++ cannot wrap around
        for (long k = first; Long.compareUnsigned(k, last) <= 0; k++) {
            if (Long.compareUnsigned(k, c.nbClusters) >= 0) {
                if (Long.compareUnsigned(k, c.computed.capacity()) >= 0) {
                    // Only an offset with bit 63 set gets here; QEMU fails to allocate an array reaching it.
                    c.checkErrors++;
                    throw c.checkFailed("Cannot allocate memory");
                }
                c.nbClusters = k + 1;
            }
            if (!c.computed.increment(k)) {
                // Repaired as QEMU repairs it: by a rebuild if the excess reference was a refcount block's (the
                // rebuilt structure has none), else not at all.
                c.report.accept("ERROR: overflow cluster offset=0x" + CFormat.hex(k << c.clusterBits));
                c.repairableCorruption("Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean "
                        + "copy if the image cannot be opened for writing");
            }
        }
    }

    // ------------------------------------------------------------------ QEMU's compare_refcounts and check_oflag_copied

    /**
     * QEMU's {@code compare_refcounts}: stored versus computed refcount of every cluster; higher stored is a leak,
     * lower a corruption. {@code repairLeaks} and {@code repairErrors} fix single entries in place; a stored 0 is
     * never fixed so (its refcount block may not even exist) but makes the structure one to rebuild.
     */
    void compareRefcounts(boolean repairLeaks, boolean repairErrors) throws IOException {
        long highest = 0;
        long perBlock = c.stored.clustersPerBlock();
        for (long first = 0; first < c.nbClusters; first += perBlock) {
            long end = Math.min(c.nbClusters, first + perBlock);
            ByteBuffer block;
            try {
                block = c.stored.block(first / perBlock);
            } catch (StoredRefcounts.UnreadableRefcount e) {
                c.signalCorruption(e);
                for (long i = first; i < end; i++) {
                    c.checkError("Can't get refcount for cluster " + i + ": " + CheckContext.EIO);
                }
                continue;
            }
            for (long i = first; i < end; i++) {
                long storedCount = block == null ? 0 : c.stored.get(block, i);
                long computedCount = c.computed.get(i);
                if (storedCount != 0 || computedCount != 0) {
                    highest = i;
                }
                if (storedCount != computedCount) {
                    boolean tooLow = Long.compareUnsigned(storedCount, computedCount) < 0;
                    if (storedCount == 0) {
                        c.rebuild = true;
                    }
                    boolean repair = storedCount != 0 && (tooLow ? repairErrors : repairLeaks);
                    String line = (repair ? "Repairing" : tooLow ? "ERROR" : "Leaked") + " cluster " + i + " refcount="
                            + Long.toUnsignedString(storedCount) + " reference=" + Long.toUnsignedString(computedCount);
                    if (repair) {
                        c.report.accept(line);
                        repairs.setRefcount(i, computedCount, tooLow);
                    } else if (tooLow) {
                        c.repairableCorruption(line);
                    } else {
                        c.report.accept(line);
                        c.leaks++;
                    }
                }
            }
        }
        c.imageEndOffset = (highest + 1) * c.clusterSize;
    }

    /**
     * QEMU's {@code check_oflag_copied}: in the active tables, COPIED must be set exactly on L2 tables and data
     * clusters whose stored refcount is 1 (data in an external data file always counts as refcount 1).
     */
    void checkCopiedFlags() throws IOException {
        boolean repair = repairs.repairsCopiedFlags();
        for (int i = 0; i < c.activeL1.length; i++) {
            long l1Entry = c.activeL1[i];
            long l2Offset = L1Entry.l2Offset(l1Entry);
            if (l2Offset == 0) {
                continue;
            }
            long refcount;
            try {
                refcount = storedRefcount(l2Offset >>> c.clusterBits);
            } catch (StoredRefcounts.UnreadableRefcount e) {
                continue; // compareRefcounts reported it
            }
            if ((refcount == 1) != ((l1Entry & L1Entry.COPIED) != 0)) {
                String line = (repair ? "Repairing" : "ERROR") + " OFLAG_COPIED L2 cluster: l1_index=" + i + " l1_entry="
                        + CFormat.hex(l1Entry) + " refcount=" + Long.toUnsignedString(refcount);
                if (repair) {
                    c.report.accept(line);
                    c.activeL1[i] = refcount == 1 ? l1Entry | L1Entry.COPIED : l1Entry & ~L1Entry.COPIED;
                    repairs.writeL1Entry(i, c.activeL1[i]);
                } else {
                    c.repairableCorruption(line);
                }
            }
            readL2(l2Offset);
            int l2Dirty = 0;
            for (int j = 0; j < l2Entries(); j++) {
                long entry = l2Entry(j);
                SubclusterType type = clusterType(entry);
                if (type != SubclusterType.NORMAL && type != SubclusterType.ZERO_ALLOC) {
                    continue;
                }
                long dataRefcount;
                try {
                    dataRefcount = c.hasDataFile ? 1 : storedRefcount(L2Entry.hostOffset(entry) >>> c.clusterBits);
                } catch (StoredRefcounts.UnreadableRefcount e) {
                    continue;
                }
                if ((dataRefcount == 1) != ((entry & L2Entry.COPIED) != 0)) {
                    String line = (repair ? "Repairing" : "ERROR") + " OFLAG_COPIED data cluster: l2_entry="
                            + CFormat.hex(entry) + " refcount=" + Long.toUnsignedString(dataRefcount);
                    if (repair) {
                        c.report.accept(line);
                        l2Table[c.extendedL2 ? 2 * j : j] = dataRefcount == 1 ? entry | L2Entry.COPIED : entry & ~L2Entry.COPIED;
                        l2Dirty++;
                    } else {
                        c.repairableCorruption(line);
                    }
                }
            }
            if (l2Dirty > 0) {
                repairs.writeL2Table(l2Offset, l2Table, l2Dirty);
            }
        }
    }

    private long storedRefcount(long cluster) throws StoredRefcounts.UnreadableRefcount, IOException {
        try {
            return c.stored.get(cluster);
        } catch (StoredRefcounts.UnreadableRefcount e) {
            c.signalCorruption(e);
            throw e;
        }
    }

    // ------------------------------------------------------------------ L2 tables

    /** Entries per L2 table (QEMU's l2_size). */
    private int l2Entries() {
        return c.extendedL2 ? l2Table.length / 2 : l2Table.length;
    }

    private long l2Entry(int i) {
        return c.extendedL2 ? l2Table[2 * i] : l2Table[i];
    }

    /** The extended-L2 subcluster bitmap of entry {@code i}; 0 without extended L2 (as QEMU's get_l2_bitmap). */
    private long l2Bitmap(int i) {
        return c.extendedL2 ? l2Table[2 * i + 1] : 0;
    }

    /** Reads the L2 table at {@code offset} (which may be unaligned: QEMU reads it anyway) into {@link #l2Table}. */
    private void readL2(long offset) throws IOException {
        l2Buffer.clear();
        c.storage.readFully(l2Buffer, offset);
        l2Buffer.flip().asLongBuffer().get(l2Table);
    }

    /**
     * QEMU's {@code qcow2_get_cluster_type}: the type of the whole cluster, subcluster bitmap aside. With extended
     * L2 entries bit 0 is no zero flag, so it is masked before {@link L2Entry#classify} is asked.
     */
    private SubclusterType clusterType(long entry) {
        return L2Entry.classify(c.extendedL2 ? entry & ~L2Entry.ZERO : entry, 0, 0, false, c.hasDataFile);
    }

    /**
     * Whether an extended-L2 bitmap is one the spec forbids for its entry (both bits of a subcluster set, allocation
     * bits on an unallocated cluster): {@link L2Entry#classify} calls that INVALID whatever the subcluster.
     */
    private boolean hasInvalidBitmap(long entry, long bitmap) {
        return c.extendedL2 && L2Entry.classify(entry, bitmap, 0, true, c.hasDataFile) == SubclusterType.INVALID;
    }
}
