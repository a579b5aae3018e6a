package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.FormatException;
import org.qcow4j.QcowException;
import org.qcow4j.RefusedRequestException;
import org.qcow4j.SnapshotException;
import org.qcow4j.format.ClusterGeometry;
import org.qcow4j.format.Header;
import org.qcow4j.format.L1Entry;
import org.qcow4j.format.L2Entry;
import org.qcow4j.format.Snapshot;
import org.qcow4j.format.SnapshotTable;
import org.qcow4j.format.SubclusterType;
import org.qcow4j.io.FileStorage;

/**
 * Internal snapshot operations on a qcow2 image opened for writing, as QEMU 7.2's block/qcow2-snapshot.c does them
 * ({@code qcow2_snapshot_create}, {@code _goto}, {@code _delete}, {@code qcow2_write_snapshots}) over
 * {@code qcow2_update_snapshot_refcount} (block/qcow2-refcount.c), in QEMU's order of writes, so that a crash at any
 * point leaves a consistent image (at most leaked clusters) in which each snapshot exists whole or not at all:
 *
 * <ul>
 *   <li>create: the L1 copy written, every reachable cluster's refcount raised and flushed (refcount blocks, then the
 *       L2 tables and L1 entries that lost their COPIED flags), then the new snapshot table, flushed, then the header
 *       switched to it; the old table freed last;</li>
 *   <li>delete: the table without the entry and the header first; then the refcounts lowered, the snapshot's L1 table
 *       freed, and the COPIED flags of the active tables brought up to date;</li>
 *   <li>apply: the image resized to the snapshot's disk size and its L1 table grown if need be, the snapshot's
 *       clusters referenced once more (flushed), its L1 entries written over the active L1 table (forced), then the old
 *       active tables' references dropped and the COPIED flags brought up to date.</li>
 * </ul>
 *
 * The resulting bytes are QEMU's (allocation through {@link RefcountTable}, the same table layout, the same flags);
 * only dates differ. Callers hold the image's write lock and run each operation through the updater, and open the
 * image for this one operation: the image's own snapshot list and header are not updated.
 */
final class SnapshotWriter {
    private final Qcow2Image image;
    private final Qcow2Updater writes;
    private final ClusterMap map;
    private final RefcountTable refcounts;
    private final FileStorage storage;
    private final Header header;
    private final ClusterGeometry geo;
    private final String filename;
    private List<SnapshotTable.Entry> entries;
    /** QEMU's {@code s->snapshots_offset} and {@code s->snapshots_size}: where the current table is and its bytes. */
    private long tableOffset;
    private long tableSize;

    SnapshotWriter(Qcow2Image image, Qcow2Updater writes, ClusterMap map, FileStorage storage, Header header)
            throws IOException {
        this.image = image;
        this.writes = writes;
        this.map = map;
        this.refcounts = writes.refcounts();
        this.storage = storage;
        this.header = header;
        this.geo = header.geometry();
        this.filename = image.filename();
        this.entries = new ArrayList<>(SnapshotTable.read(header, storage::read, filename, storage.length(), image.size()));
        this.tableOffset = header.snapshotsOffset();
        this.tableSize = SnapshotTable.storedSize(header, storage::read);
    }

    List<SnapshotTable.Entry> entries() {
        return List.copyOf(entries);
    }

    // ------------------------------------------------------------------------------------------ finding

    /** QEMU's {@code find_snapshot_by_id_and_name}: either may be null; -1 if none matches. */
    int find(String id, String name) {
        for (int i = 0; i < entries.size(); i++) {
            SnapshotTable.Entry e = entries.get(i);
            if ((id == null || e.id().equals(id)) && (name == null || e.name().equals(name)) && (id != null || name != null)) {
                return i;
            }
        }
        return -1;
    }

    /** QEMU's {@code find_snapshot_by_id_or_name}: the id first, then the name. */
    int findByIdOrName(String idOrName) {
        int i = find(idOrName, null);
        return i >= 0 ? i : find(null, idOrName);
    }

    // ------------------------------------------------------------------------------------------ operations

    /** QEMU's {@code qcow2_snapshot_create} as {@code qemu-img snapshot -c} calls it (no VM state, clocks 0). */
    Snapshot create(String name, long dateSec, long dateNsec) throws IOException {
        if (entries.size() >= Header.MAX_SNAPSHOTS) {
            throw new SnapshotException(filename, SnapshotException.Reason.TOO_BIG, "too many snapshots (QEMU's limit is "
                    + Header.MAX_SNAPSHOTS + ")");
        }
        String id = newId();
        int l1Size = map.l1Size();
        long l1Offset = refcounts.allocate(geo.sizeToClusters(l1Size * 8L));
        if (l1Size > 0) {
            refcounts.markMetadata(l1Offset, geo.sizeToClusters(l1Size * 8L), "L1 table of snapshot " + id);
            ByteBuffer out = ByteBuffer.allocate(l1Size * 8);
            out.asLongBuffer().put(map.l1Copy());
            storage.writeFully(out, l1Offset);
        }
        // "Increase the refcounts of all clusters and make sure everything is stable on disk before updating the
        // snapshot table to contain a pointer to the new L1 table."
        updateRefcounts(map.l1Offset(), l1Size, 1);
        SnapshotTable.Entry entry = new SnapshotTable.Entry(l1Offset, l1Size, id, name, dateSec, dateNsec, 0, 0,
                image.size(), 0, SnapshotTable.KNOWN_EXTRA, new byte[0]);
        List<SnapshotTable.Entry> next = new ArrayList<>(entries);
        next.add(entry);
        writeSnapshots(next);
        return entry.snapshot();
    }

    /** QEMU's {@code find_new_snapshot_id}: one more than the largest id read as a number ({@code strtoul}). */
    private String newId() {
        long max = 0;
        for (SnapshotTable.Entry e : entries) {
            max = Math.max(max, leadingNumber(e.id()));
        }
        return Long.toUnsignedString(max + 1);
    }

    /** {@code strtoul(s, NULL, 10)}: leading white space, an optional sign, digits; 0 without digits. */
    static long leadingNumber(String s) {
        int i = 0;
        while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
            i++;
        }
        boolean negative = false;
        if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
            negative = s.charAt(i) == '-';
            i++;
        }
        long v = 0;
        int start = i;
        for (; i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9'; i++) {
            long next = v * 10 + (s.charAt(i) - '0');
            if (Long.compareUnsigned(next, v) < 0 || Long.divideUnsigned(next - (s.charAt(i) - '0'), 10) != v) {
                return -1; // ULONG_MAX on overflow
            }
            v = next;
        }
        return i == start ? 0 : negative ? -v : v;
    }

    /**
     * QEMU's {@code qcow2_upgrade} of a table whose entries lack the version 3 extra data: the same entries written
     * anew ({@code qcow2_write_snapshots} always writes the 24 bytes, the disk size read as the image's, the icount
     * -1 when absent).
     */
    void rewriteTable() throws IOException {
        writeSnapshots(new ArrayList<>(entries));
    }

    /** QEMU's {@code qcow2_snapshot_delete} of the entry {@code index}. */
    void delete(int index) throws IOException {
        SnapshotTable.Entry sn = entries.get(index);
        validateL1(sn);
        List<SnapshotTable.Entry> next = new ArrayList<>(entries);
        next.remove(index);
        writeSnapshots(next);
        // "The snapshot is now unused, clean up. If we fail after this point, we won't recover but just leak clusters."
        updateRefcounts(sn.l1TableOffset(), sn.l1Size(), -1);
        if (sn.l1Size() > 0) {
            refcounts.unmarkMetadata(geo.startOfCluster(sn.l1TableOffset()),
                    geo.sizeToClusters(geo.offsetInCluster(sn.l1TableOffset()) + sn.l1Size() * 8L));
        }
        refcounts.free(sn.l1TableOffset(), sn.l1Size() * 8L, RefcountTable.Discard.SNAPSHOT);
        refcounts.processDiscards();
        // "must update the copied flag on the current cluster offsets"
        updateRefcounts(map.l1Offset(), map.l1Size(), 0);
    }

    /** QEMU's {@code qcow2_snapshot_goto} of the entry {@code index}. */
    void apply(int index) throws IOException {
        SnapshotTable.Entry sn = entries.get(index);
        validateL1(sn);
        if (sn.diskSize() != image.size()) {
            writes.resize(sn.diskSize());
        }
        if (sn.l1Size() > map.l1Size()) {
            writes.growL1(sn.l1Size());
        }
        int curSize = map.l1Size();
        long[] snL1 = new long[curSize];
        if (sn.l1Size() > 0) {
            storage.read(sn.l1TableOffset(), sn.l1Size() * 8).order(ByteOrder.BIG_ENDIAN).asLongBuffer().get(snL1, 0, sn.l1Size());
        }
        updateRefcounts(sn.l1TableOffset(), sn.l1Size(), 1);
        for (int i = 0; i < snL1.length; i++) {
            checkL2Offset(snL1[i], "L1 entry " + i + " of snapshot " + sn.id());
            // QEMU writes the entries as read before the walk, COPIED flags and all, though the walk has just given
            // every table a second reference: a crash before the last walk would leave flags on shared tables, and a
            // later write would change a snapshot's table in place. Without them the last walk sets exactly the
            // flags QEMU's sets, so the file ends the same.
            snL1[i] &= ~L1Entry.COPIED;
        }
        ByteBuffer out = ByteBuffer.allocate(curSize * 8);
        out.asLongBuffer().put(snL1);
        long[] old = map.l1Copy();
        for (long e : old) {
            long l2 = L1Entry.l2Offset(e);
            if (l2 != 0) {
                refcounts.unmarkMetadata(l2, 1);
            }
        }
        storage.writeFully(out, map.l1Offset());
        storage.force();
        // "Decrease refcount of clusters of current L1 table": the old active tables, from memory
        updateRefcounts(old, map.l1Offset(), curSize, -1);
        map.loadL1(snL1);
        for (int i = 0; i < snL1.length; i++) {
            long l2 = L1Entry.l2Offset(snL1[i]);
            if (l2 != 0) {
                refcounts.markMetadata(l2, 1, "L1 entry " + i);
            }
        }
        // "Update QCOW_OFLAG_COPIED in the active L1 table"
        updateRefcounts(map.l1Offset(), curSize, 0);
    }

    /** QEMU's {@code qcow2_validate_table} of a snapshot's L1 table ({@link SnapshotL1Table}). */
    private void validateL1(SnapshotTable.Entry sn) throws IOException {
        SnapshotL1Table.validate(filename, sn.id(), sn.l1TableOffset(), Integer.toUnsignedLong(sn.l1Size()), geo,
                storage.length());
    }

    // ------------------------------------------------------------------------------------------ the table

    /**
     * QEMU's {@code qcow2_write_snapshots}: the whole table in new clusters (flushed first, so their refcounts are on
     * disk), flushed, then the header's {@code nb_snapshots} and {@code snapshots_offset} in one write, then the old
     * table freed.
     */
    private void writeSnapshots(List<SnapshotTable.Entry> next) throws IOException {
        if (!SnapshotTable.fits(next)) {
            throw new SnapshotException(filename, SnapshotException.Reason.TOO_BIG, "the snapshot table would exceed QEMU's"
                    + " limit of " + Snapshot.MAX_TABLE_BYTES + " bytes");
        }
        int size = SnapshotTable.size(next);
        long offset = refcounts.allocate(geo.sizeToClusters(size));
        writes.flush();
        if (size > 0) {
            refcounts.markMetadata(offset, geo.sizeToClusters(size), "new snapshot table");
            // QEMU writes each entry and leaves the padding between them as the clusters held it
            ByteBuffer previous = storage.read(offset, size);
            storage.writeFully(SnapshotTable.encode(next, previous), offset);
        }
        writes.flush();
        storage.force();
        // "Update the header to point to the new snapshot table. This requires the new table and its refcounts to be
        // stable on disk."
        ByteBuffer field = ByteBuffer.allocate(12).putInt(next.size()).putLong(offset).flip();
        storage.writeFully(field, Header.NB_SNAPSHOTS_AT);
        storage.force();
        if (tableSize > 0) {
            refcounts.unmarkMetadata(geo.startOfCluster(tableOffset),
                    geo.sizeToClusters(geo.offsetInCluster(tableOffset) + tableSize));
        }
        refcounts.free(tableOffset, tableSize, RefcountTable.Discard.SNAPSHOT);
        refcounts.processDiscards(); // qcow2_free_clusters outside a snapshot walk discards at once
        tableOffset = offset;
        tableSize = size;
        entries = next;
    }

    // ------------------------------------------------------------------------------------------ refcounts

    /** QEMU's {@code qcow2_update_snapshot_refcount} over the L1 table at {@code l1Offset} (the active one from memory). */
    private void updateRefcounts(long l1Offset, int l1Size, int addend) throws IOException {
        boolean active = l1Offset == map.l1Offset();
        long[] l1;
        if (active) {
            l1 = map.l1Copy();
        } else {
            l1 = new long[l1Size];
            if (l1Size > 0) {
                storage.read(l1Offset, l1Size * 8).order(ByteOrder.BIG_ENDIAN).asLongBuffer().get(l1);
            }
        }
        updateRefcounts(l1, l1Offset, l1Size, addend);
    }

    /**
     * The walk itself over {@code l1}: every L2 table and the clusters its entries use gain ({@code addend} 1) or lose
     * (-1) a reference, or keep their count (0); every entry of a table walked gets COPIED exactly when its cluster's
     * refcount is then 1, and the L1 entries likewise. Tables whose last reference goes are forgotten with their
     * changes (QEMU discards them from its cache); clusters freed are zeroed as QEMU's snapshot discards punch them.
     * The L1 table is written back when a flag changed, unless its references were dropped. Ends with a flush.
     */
    private void updateRefcounts(long[] l1, long l1Offset, int l1Size, int addend) throws IOException {
        boolean active = l1Offset == map.l1Offset() && addend >= 0;
        boolean ext = geo.extendedL2();
        boolean l1Modified = false;
        int entries = geo.l2Entries();
        try {
            for (int i = 0; i < l1Size; i++) {
                long oldL1 = l1[i];
                if (oldL1 == 0) {
                    continue;
                }
                long l2 = L1Entry.l2Offset(oldL1);
                checkL2Offset(oldL1, "L1 entry " + i);
                if (l2 == 0) {
                    continue; // only flag bits: nothing to count (QEMU would read the header cluster as a table)
                }
                long[] table = map.table(l2);
                Run run = new Run(l2, table, ext);
                for (int j = 0; j < entries; j++) {
                    int slot = ext ? 2 * j : j;
                    long oldEntry = run.entry(slot);
                    long entry = oldEntry & ~L2Entry.COPIED;
                    long refcount;
                    SubclusterType type = L2Entry.clusterType(entry, ext, false);
                    switch (type) {
                        case COMPRESSED -> {
                            run.finish(addend);
                            if (addend != 0) {
                                int bits = geo.clusterBits();
                                long coffset = L2Entry.compressedOffset(entry, bits);
                                int csize = L2Entry.compressedSize(entry, bits);
                                reference(coffset, csize, addend);
                            }
                            refcount = 2; // "compressed clusters are never modified"
                        }
                        case NORMAL, ZERO_ALLOC -> {
                            long host = L2Entry.hostOffset(entry);
                            if (geo.offsetInCluster(host) != 0 || host == 0) {
                                run.finish(addend);
                                throw new FormatException(filename, "L2 entry " + j + " of the table at "
                                        + FormatException.hex(l2), FormatException.hex(oldEntry),
                                        "Cluster allocation offset unaligned");
                            }
                            // counted with the contiguous clusters around it; its flag is set when the run ends
                            run.add(j, host, addend);
                            continue;
                        }
                        default -> {
                            run.finish(addend);
                            refcount = 0;
                        }
                    }
                    if (refcount == 1) {
                        entry |= L2Entry.COPIED;
                    }
                    run.set(slot, oldEntry, entry);
                }
                run.finish(addend);
                if (addend != 0) {
                    reference(l2, geo.clusterSize(), addend);
                }
                long refcount = refcounts.liveRefcount(l2 >>> geo.clusterBits());
                if (refcount == 0) {
                    map.forget(l2); // "qcow2_cache_discard": its changes never reach the disk
                }
                long newL1 = refcount == 1 ? l2 | L1Entry.COPIED : l2;
                if (newL1 != oldL1) {
                    l1[i] = newL1;
                    l1Modified = true;
                    if (active) {
                        map.setL1Entry(i, newL1);
                    }
                }
                if (map.overfull()) {
                    flushPass(addend);
                }
            }
        } finally {
            refcounts.processDiscards();
        }
        flushPass(addend);
        // "Update L1 only if it isn't deleted anyway (addend = -1)"; the active one went with the flush
        if (!active && addend >= 0 && l1Modified) {
            ByteBuffer out = ByteBuffer.allocate(l1Size * 8);
            out.asLongBuffer().put(l1, 0, l1Size);
            storage.writeFully(out, l1Offset);
            storage.force();
        }
    }

    /**
     * The data clusters of one L2 table that a walk counts together: consecutive entries whose host clusters follow
     * each other (as in any image written in order), each counted once, so their references change and their
     * refcounts are read a refcount block at a time ({@link RefcountTable#addReferences}, {@code freeRun},
     * {@code liveRefcounts}). The clusters of a run are distinct, so this changes and reads exactly what QEMU's walk,
     * entry by entry, does; anything else in the table ends the run first, keeping QEMU's order.
     */
    private final class Run {
        private final long l2;
        private final long[] table;
        private final boolean ext;
        private long[] update;
        private int first = -1;
        private long firstHost;
        private int length;
        private long[] live = new long[0];

        Run(long l2, long[] table, boolean ext) {
            this.l2 = l2;
            this.table = table;
            this.ext = ext;
        }

        /** The entry in {@code slot} as the walk has left it so far. */
        long entry(int slot) {
            return (update != null ? update : table)[slot];
        }

        /** Sets the entry in {@code slot} to {@code entry} if it changed (the table then becomes dirty). */
        void set(int slot, long oldEntry, long entry) throws IOException {
            if (entry != oldEntry) {
                if (update == null) {
                    update = map.tableForUpdate(l2);
                }
                update[slot] = entry;
            }
        }

        /** Entry {@code j}, a data cluster at {@code host}: joins the run, or ends it and starts the next. */
        void add(int j, long host, int addend) throws IOException {
            if (length > 0 && j == first + length && host == firstHost + (long) length * geo.clusterSize()) {
                length++;
                return;
            }
            finish(addend);
            first = j;
            firstHost = host;
            length = 1;
        }

        /** Counts the run's clusters and gives their entries COPIED where their refcount is then 1. */
        void finish(int addend) throws IOException {
            if (length == 0) {
                return;
            }
            int n = length;
            length = 0;
            if (live.length < n) {
                live = new long[Math.max(n, Math.min(geo.l2Entries(), 2 * live.length))];
            }
            long c = firstHost >>> geo.clusterBits();
            int counted = n;
            int covered = n;
            if (addend > 0) {
                covered = refcounts.countedPrefix(c, n);
                counted = refcounts.addReferences(c, covered, live);
            } else if (addend < 0) {
                refcounts.freeRun(c, n, RefcountTable.Discard.SNAPSHOT, live);
            } else {
                refcounts.liveRefcounts(c, n, live);
            }
            // on an overflow, the entries before it keep what the walk did to them (their flags too), as in QEMU
            for (int k = 0; k < counted; k++) {
                int slot = ext ? 2 * (first + k) : first + k;
                long oldEntry = entry(slot);
                long entry = oldEntry & ~L2Entry.COPIED;
                set(slot, oldEntry, live[k] == 1 ? entry | L2Entry.COPIED : entry);
            }
            if (counted < covered) {
                throw new SnapshotException(filename, SnapshotException.Reason.REFCOUNT_OVERFLOW,
                        "refcount of cluster " + (c + counted) + " would exceed "
                        + Long.toUnsignedString(org.qcow4j.format.RefcountBlock.max(header.refcountOrder())));
            }
            if (covered < n) {
                uncounted(c + covered);
            }
        }
    }

    /**
     * The flags and the refcounts of a walk cannot change at once: the order is chosen so that a crash never leaves a
     * COPIED flag on a cluster whose stored refcount is above 1 (a later write would go into a shared cluster). So
     * references taken are written after the tables that lose flags, and references dropped before the tables that
     * gain them; what a crash can leave is a flag missing on a cluster counted once (qemu-img check calls it an
     * OFLAG_COPIED error and -r all sets it), which costs a needless copy-on-write at most. QEMU writes its caches
     * in an order that can also leave flags on clusters counted twice.
     */
    private void flushPass(int addend) throws IOException {
        if (addend < 0) {
            writes.flushFreesFirst();
        } else if (addend > 0) {
            writes.flushTablesFirst();
        } else {
            writes.flush();
        }
    }

    /** One reference more or less to the clusters {@code [offset, offset + length)} touches. */
    private void reference(long offset, long length, int addend) throws IOException {
        if (addend > 0) {
            long max = org.qcow4j.format.RefcountBlock.max(header.refcountOrder());
            for (long c = offset >>> geo.clusterBits(); c <= (offset + length - 1) >>> geo.clusterBits(); c++) {
                if (refcounts.countedPrefix(c, 1) == 0) {
                    uncounted(c); // (QEMU's update_refcount undoes its partial update: nothing taken here yet)
                }
                if (Long.compareUnsigned(refcounts.refcount(c), max) >= 0) {
                    throw new SnapshotException(filename, SnapshotException.Reason.REFCOUNT_OVERFLOW,
                            "refcount of cluster " + c + " would exceed " + Long.toUnsignedString(max));
                }
            }
            refcounts.addReference(offset, length);
        } else {
            refcounts.free(offset, length, RefcountTable.Discard.SNAPSHOT);
        }
    }

    /**
     * A walk taking a reference to cluster {@code c}, which no refcount block counts (only a damaged entry names
     * one): QEMU's {@code update_refcount} creates the block, or grows the table, and fails with EAGAIN (EFBIG past
     * the table's limit), which {@code qcow2_update_snapshot_refcount} passes on.
     */
    private void uncounted(long c) throws IOException {
        String what = "cluster " + c + ", which no refcount block counts";
        try {
            refcounts.addMissingBlock(c);
        } catch (RefusedRequestException e) {
            if (e.reason() != RefusedRequestException.Reason.TOO_LARGE) {
                throw e;
            }
            throw new SnapshotException(filename, SnapshotException.Reason.TOO_BIG, what + ": " + e.getMessage());
        }
        throw new SnapshotException(filename, SnapshotException.Reason.UNCOUNTED_CLUSTER, what
                + " (a refcount block was added for it, as QEMU adds one before it gives up)");
    }

    private void checkL2Offset(long l1Entry, String field) throws FormatException {
        long l2 = L1Entry.l2Offset(l1Entry);
        if (geo.offsetInCluster(l2) != 0) {
            throw new FormatException(filename, field, FormatException.hex(l1Entry), "L2 table offset not aligned to the cluster size");
        }
        if (l2 != 0 && l2 + geo.clusterSize() > Math.max(storage.length(), refcounts.allocatedEnd())) {
            throw new FormatException(filename, field, FormatException.hex(l1Entry), "L2 table past the end of the file");
        }
    }

    /** For errors that name a cause QEMU gives as an errno. */
    static QcowException notFound(String filename) {
        return new SnapshotException(filename, SnapshotException.Reason.NOT_FOUND, "Can't find the snapshot");
    }
}
