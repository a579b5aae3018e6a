package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;
import org.qcow4j.CheckResult;
import org.qcow4j.FormatException;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.format.BitmapTable;
import org.qcow4j.format.CFormat;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.format.L1Entry;
import org.qcow4j.format.L2Entry;
import org.qcow4j.format.RefcountBlock;
import org.qcow4j.format.Snapshot;
import org.qcow4j.format.SubclusterType;
import org.qcow4j.io.FileStorage;

/**
 * A read-only consistency check of a qcow2 image that reports what {@code qemu-img check} (QEMU 7.2, no {@code -r})
 * reports, number for number and line for line. Like QEMU's {@code qcow2_check_refcounts} it recomputes every host
 * cluster's refcount from all metadata (header, active and snapshot L1 tables with their L2 tables and data
 * clusters, the snapshot table, refcount table and blocks, bitmap directory, tables and data), compares the result
 * with the stored refcounts, then checks the COPIED flags of the active tables against the stored refcounts.
 *
 * <p>The image is not opened through {@link Qcow2Image}: that refuses L1 entries pointing past the end of the file
 * or into metadata, which are exactly what a check must count instead. What QEMU refuses to open an image for
 * (a bad header, a broken bitmap directory, a missing backing or data file) is refused here too, as an exception.
 *
 * <p>Memory: one counter of the image's refcount width per host cluster (as QEMU), the refcount table (at most
 * 8 MiB), one L1 table at a time (at most 32 MiB), one L2 table and a few MiB of refcount blocks.
 *
 * <p>{@link #repair} is {@code qemu-img check -r leaks|all}, with QEMU's refcount structure rebuild; {@link
 * #repairDirty} is the repair QEMU runs when it opens a dirty (lazy refcounts) image for writing.
 */
public final class Qcow2Check {
    /** QEMU refuses to check files of more clusters than this ({@code nb_clusters > INT_MAX}: EFBIG). */
    private static final long MAX_CLUSTERS = Integer.MAX_VALUE;
    /** QEMU's QCOW_MAX_SNAPSHOTS_SIZE: the snapshot table may not be longer. */
    private static final long MAX_SNAPSHOT_TABLE_BYTES = 1024L * 65536;
    /** v3 snapshot entries must carry at least vm_state_size_large and disk_size as extra data. */
    private static final int V3_MIN_SNAPSHOT_EXTRA_DATA = 16;
    private static final String EIO = "Input/output error";

    private final String filename;
    /** The file, read-only; opened again when a repair has made the file longer (it caches the length). */
    private FileStorage storage;
    /** Whether {@link #storage} was opened by this check (again), so it closes it. */
    private boolean ownsStorage;
    /** The file's length as QEMU sees it: rounded up to whole 512-byte sectors. */
    private long fileLength;
    private final Header header;
    /** Where the refcount table is: the header's, then the one a rebuild wrote. */
    private long refcountTableOffset;
    private final int clusterBits;
    private final long clusterSize;
    private final boolean extendedL2;
    private final boolean hasDataFile;
    private final Consumer<String> report;
    /** One cluster's worth of L2 table, reused for every table read. */
    private final ByteBuffer l2Buffer;
    private final long[] l2Table;

    private long[] activeL1;
    private List<BitmapTable> bitmapTables = List.of();
    private StoredRefcounts stored;
    private RefcountArray computed;
    /** QEMU's nb_clusters: the clusters of the file, plus one a reference may reach into past a partial last cluster. */
    private long nbClusters;
    /** QEMU signals the first corruption it meets while reading refcounts, then stays quiet. */
    private boolean signaledCorruption;
    /**
     * QEMU's {@code rebuild}: the refcount structure is broken beyond fixing single entries (a refcount table entry
     * with reserved bits or unaligned, a refcount block not referenced exactly once, a used cluster with refcount 0).
     */
    private boolean rebuild;

    /** Where repairs are written (positional writes), or null: a read-only check (plain, or a repair's dry run). */
    private FileChannel writer;
    /** QEMU's BDRV_FIX_LEAKS and BDRV_FIX_ERRORS; also set for a repair's dry run, which writes nothing. */
    private boolean fixLeaks;
    private boolean fixErrors;
    private long leaksFixed;
    private long corruptionsFixed;
    /** Findings {@link #repair} does not repair as QEMU would (QEMU repairs them otherwise, or not at all). */
    private long unrepairable;
    private String firstUnrepairable;
    /**
     * During a rebuild, the clusters {@code [knownUsedFrom, knownUsedTo)} all have a computed refcount (the
     * rebuild only ever allocates), so a search for a free cluster starting among them may start at their end.
     */
    private long knownUsedFrom;
    private long knownUsedTo;

    private long checkErrors;
    private long corruptions;
    private long leaks;
    private long allocatedClusters;
    private long fragmentedClusters;
    private long compressedClusters;
    private long imageEndOffset;

    /** The counts QEMU's {@code BdrvCheckResult} holds, saved and restored as {@code qcow2_check_refcounts} does. */
    private record Counts(long checkErrors, long corruptions, long leaks, long corruptionsFixed, long leaksFixed,
                          long unrepairable) {
    }

    /** One snapshot table entry, as far as the check needs it. */
    private record SnapshotEntry(long l1Offset, long l1Size, long extraDataSize, String id, String name) {
    }

    /** The snapshot table: its entries and its length in bytes (unpadded end of the last entry). */
    private record SnapshotTable(List<SnapshotEntry> entries, long size) {
    }

    private Qcow2Check(String filename, FileStorage storage, Header header, Consumer<String> report) {
        this.filename = filename;
        this.storage = storage;
        // QEMU's bdrv_getlength counts whole 512-byte sectors, so a reference may end in the last, partial sector.
        this.fileLength = (storage.length() + 511) & ~511L;
        this.header = header;
        this.refcountTableOffset = header.refcountTableOffset();
        this.clusterBits = header.clusterBits();
        this.clusterSize = header.clusterSize();
        this.extendedL2 = header.has(Feature.EXTENDED_L2);
        this.hasDataFile = header.has(Feature.EXTERNAL_DATA_FILE);
        this.report = report;
        this.l2Buffer = ByteBuffer.allocate((int) clusterSize).order(ByteOrder.BIG_ENDIAN);
        this.l2Table = new long[(int) (clusterSize / 8)];
    }

    /**
     * Checks the qcow2 image {@code image}; the diagnostic lines are collected in the result.
     *
     * @throws FormatException and other {@link QcowException}s when the image cannot be opened (as QEMU would not
     *         open it) or the check cannot complete (qemu-img's "Check failed: ..." with exit code 1)
     */
    public static CheckResult check(Path image) throws IOException {
        List<String> lines = new ArrayList<>();
        CheckResult r = check(image, lines::add);
        return new CheckResult(r.filename(), r.format(), r.checkErrors(), r.corruptions(), r.leaks(),
                r.corruptionsFixed(), r.leaksFixed(), r.imageEndOffset(), r.totalClusters(), r.allocatedClusters(),
                r.fragmentedClusters(), r.compressedClusters(), lines);
    }

    /**
     * Checks the qcow2 image {@code image}, handing each diagnostic line to {@code diagnostics} as it is found (so
     * a badly damaged image's millions of lines need no memory, and lines found before a failure are not lost);
     * the result's diagnostics are then empty.
     */
    public static CheckResult check(Path image, Consumer<String> diagnostics) throws IOException {
        String filename = image.toString();
        try (FileStorage storage = FileStorage.openReadOnly(image)) {
            Qcow2Check check = new Qcow2Check(filename, storage, Qcow2Image.readHeader(storage, filename), diagnostics);
            check.open();
            check.run();
            return check.result();
        }
    }

    /**
     * {@code qemu-img check -r leaks} ({@code fixErrors} false) or {@code -r all} ({@code fixErrors} true), repairing
     * what QEMU 7.2's {@code qcow2_co_check_locked} repairs, in the same way and with the same counts:
     * <ul>
     * <li>stored refcounts higher than the references (leaks) are lowered (a cluster left unreferenced is zeroed,
     *     as QEMU discards it); with {@code -r all} non-zero refcounts lower than the references are raised;
     * <li>with {@code -r all}, a refcount structure QEMU rebuilds (a used cluster with refcount 0, a refcount table
     *     entry with reserved bits or unaligned, a refcount block referenced more than once, e.g. overlapping other
     *     metadata) is rebuilt: "Rebuilding refcount structure", new refcount blocks and table written to free
     *     clusters or at the end of the file, forced to disk, and only then the header switched to them; the old
     *     structure's clusters are then leaks, repaired at once. A refcount block past the end of the file first
     *     has the file grown to it, as QEMU does. With {@code -r leaks} such an image fails as in QEMU ("ERROR need
     *     to rebuild refcount structures", "Check failed: Input/output error"), with nothing written;
     * <li>COPIED flags of the active L1 and L2 tables are set or cleared as QEMU's {@code check_oflag_copied} does;
     * <li>the dirty bit (lazy refcounts) and the corrupt bit are cleared when the repair leaves no corruptions and
     *     no check errors (QEMU's {@code qcow2_mark_clean} and {@code qcow2_mark_consistent}), after everything
     *     else is on disk.
     * </ul>
     * The diagnostics, "Repairing ..." lines included, go to {@code diagnostics} as QEMU prints them; the result
     * counts what was found and fixed. The image is written in place and forced to disk; the caller double-checks
     * it, as qemu-img does.
     *
     * <p>Before anything is written the image is checked read-only; an image needing repairs QEMU makes otherwise
     * (snapshot table fixes, zeroing misaligned preallocated L2 entries) or with corruptions no repair touches
     * (reserved bits in L1/L2 entries, references past the end of the file, ...), or with autoclear features
     * (bitmaps) or an external data file, is refused with a {@link QcowException}, untouched.
     */
    public static CheckResult repair(Path image, boolean fixErrors, Consumer<String> diagnostics) throws IOException {
        String filename = image.toString();
        try (FileStorage storage = FileStorage.openReadOnly(image)) {
            Header header = Qcow2Image.readHeader(storage, filename);
            String refused = header.autoclearFeatures() != 0 ? "the image has autoclear features (bitmaps, raw external data)"
                    : header.has(Feature.EXTERNAL_DATA_FILE) ? "the image has an external data file" : null;
            if (refused != null) {
                throw new QcowException(filename, "cannot repair: " + refused + "; qcow4j repairs only images without them"
                        + " (use qemu-img check -r)");
            }
            // The dry run: the same decisions, nothing written, nothing printed.
            Qcow2Check dry = new Qcow2Check(filename, storage, header, line -> { });
            dry.fixLeaks = true;
            dry.fixErrors = fixErrors;
            dry.open();
            dry.run();
            if (dry.unrepairable > 0) {
                throw new QcowException(filename, "cannot repair (nothing written): " + dry.unrepairable
                        + " problems need repairs qcow4j does not make (use qemu-img check -r all), the first: "
                        + dry.firstUnrepairable);
            }
        }
        FileChannel out;
        try {
            out = FileChannel.open(image, StandardOpenOption.READ, StandardOpenOption.WRITE);
        } catch (IOException e) {
            throw new QcowException(filename, "cannot open for writing: " + describe(e));
        }
        try (out; FileStorage storage = FileStorage.openReadOnly(image)) {
            Qcow2Check check = new Qcow2Check(filename, storage, Qcow2Image.readHeader(storage, filename), diagnostics);
            try {
                check.writer = out;
                check.fixLeaks = true;
                check.fixErrors = fixErrors;
                check.open();
                check.run();
                check.force();
                return check.result();
            } finally {
                if (check.ownsStorage) {
                    check.storage.close(); // opened again after the file grew
                }
            }
        }
    }

    /**
     * The repair QEMU makes when it opens a dirty image (lazy refcounts, not closed cleanly) for writing: {@code
     * check -r all} ({@link #repair}), which clears the dirty bit once the refcounts are right. The read-write opener
     * calls this before it opens a dirty image; the diagnostics ("Repairing ...", "Rebuilding refcount structure")
     * go to {@code diagnostics}, and the result counts what was fixed. On an image that is not dirty it is just
     * {@code check -r all}.
     *
     * @throws QcowException if the image is refused by {@link #repair} (nothing written), or is still dirty after
     *         the repair (QEMU's "Could not repair dirty image")
     */
    public static CheckResult repairDirty(Path image, Consumer<String> diagnostics) throws IOException {
        CheckResult r = repair(image, true, diagnostics);
        if (isDirty(image) && r.checkErrors() > 0 && r.corruptionsFixed() > 0) {
            // QEMU keeps the bit when the repair met check errors (unreadable refcount blocks, replaced by the
            // rebuild); the rebuilt image then checks clean, and a second run clears it.
            r = repair(image, true, diagnostics);
        }
        if (isDirty(image)) {
            throw new QcowException(image.toString(), "could not repair dirty image: " + r.corruptions() + " corruptions, "
                    + r.checkErrors() + " check errors left");
        }
        return r;
    }

    private static boolean isDirty(Path image) throws IOException {
        try (FileStorage storage = FileStorage.openReadOnly(image)) {
            return Qcow2Image.readHeader(storage, image.toString()).has(Feature.DIRTY);
        }
    }

    private void force() throws QcowException {
        try {
            writer.force(true);
        } catch (IOException e) {
            throw new QcowException(filename, "write failed: " + describe(e));
        }
    }

    private static String describe(IOException e) {
        return e.getMessage() == null ? e.getClass().getSimpleName() : e.getClass().getSimpleName() + ": " + e.getMessage();
    }

    /** A positional write of a repair; an I/O error is one clear line. */
    private void write(ByteBuffer src, long pos) throws QcowException {
        try {
            StoredRefcounts.writeFully(writer, src, pos);
        } catch (IOException e) {
            throw new QcowException(filename, "write failed at offset " + pos + ": " + describe(e));
        }
    }

    // ------------------------------------------------------------------ what QEMU checks when it opens the image

    /** Refuses what QEMU's open refuses beyond the header: broken bitmaps, a missing backing or data file. */
    private void open() throws IOException {
        activeL1 = readLongs(header.l1TableOffset(), header.l1Size());
        if (header.bitmaps() != null && header.has(Feature.BITMAPS)) {
            bitmapTables = BitmapTable.readDirectory(header.bitmaps(), storage::read, filename, fileLength,
                    header.virtualSize(), clusterBits);
            for (BitmapTable t : bitmapTables) {
                long[] entries = readBitmapTable(t);
                for (int i = 0; i < entries.length; i++) {
                    if (!BitmapTable.isValidEntry(entries[i], clusterSize)) {
                        throw new FormatException(filename, "entry " + i + " of the table of bitmap '" + t.name() + "'",
                                FormatException.hex(entries[i]), "invalid bitmap table entry");
                    }
                }
            }
        }
        if (header.backingFile() != null) {
            // qemu-img check opens the whole backing chain and fails if it cannot.
            String name = Images.resolveRelative(filename, header.backingFile());
            Images.open(Path.of(name), OpenOptions.defaults().withFormat(header.backingFormat())).close();
        }
        if (hasDataFile) {
            String name = Images.resolveRelative(filename, header.dataFile());
            try {
                FileChannel.open(Path.of(name), StandardOpenOption.READ).close(); // it only has to open
            } catch (NoSuchFileException e) {
                throw new QcowException(name, "no such file (external data file of " + filename + ")");
            } catch (AccessDeniedException e) {
                throw new QcowException(name, "permission denied (external data file of " + filename + ")");
            }
        }
    }

    private long[] readBitmapTable(BitmapTable t) throws IOException {
        long[] entries = readLongs(t.offset(), t.entries());
        if (entries == null) {
            throw new FormatException(filename, "bitmap '" + t.name() + "' table offset", FormatException.hex(t.offset()),
                    "could not read bitmap table: " + EIO);
        }
        return entries;
    }

    // ------------------------------------------------------------------ QEMU's qcow2_co_check_locked

    private void run() throws IOException {
        SnapshotTable snapshots = readSnapshotTable();
        if (header.version() >= 3) {
            for (int i = 0; i < snapshots.entries().size(); i++) {
                if (snapshots.entries().get(i).extraDataSize() < V3_MIN_SNAPSHOT_EXTRA_DATA) {
                    corruption("ERROR snapshot table entry " + i + " is incomplete");
                }
            }
        }

        nbClusters = sizeToClusters(fileLength);
        if (nbClusters > MAX_CLUSTERS) {
            throw checkFailed("File too large (" + nbClusters + " clusters; QEMU checks at most " + MAX_CLUSTERS + ")");
        }
        // A reference may reach less than one cluster past the end of the file (QEMU allows a partial last
        // cluster), so the array can grow by one cluster and never more.
        computed = RefcountArray.allocate(nbClusters + 1, header.refcountOrder(), filename);
        stored = new StoredRefcounts(storage, header);

        calculateRefcounts(snapshots, fixErrors);
        checkRefcounts(snapshots);
        checkCopiedFlags();
        markClean();
    }

    private CheckResult result() {
        return new CheckResult(filename, "qcow2", checkErrors, corruptions, leaks, corruptionsFixed, leaksFixed, imageEndOffset,
                sizeToClusters(header.virtualSize()), allocatedClusters, fragmentedClusters, compressedClusters, List.of());
    }

    /** QEMU's {@code qcow2_do_read_snapshots} without repair: the entries and the table's length. */
    private SnapshotTable readSnapshotTable() throws IOException {
        List<SnapshotEntry> entries = new ArrayList<>();
        long start = header.snapshotsOffset();
        long minBytes = Integer.toUnsignedLong(header.nbSnapshots()) * Snapshot.FIXED_SIZE;
        if (offsetIntoCluster(start) != 0 || start < 0 || start > Long.MAX_VALUE - minBytes) {
            // QEMU's check validates where the table is even when it is empty (qcow2_check_read_snapshot_table).
            throw new FormatException(filename, "snapshots_offset", FormatException.hex(start), "snapshot table offset invalid");
        }
        long offset = start;
        long tableLength = 0;
        for (int i = 0; i < header.nbSnapshots(); i++) {
            tableLength = roundUp8(tableLength);
            offset = roundUp8(offset);
            ByteBuffer h = storage.read(offset, Snapshot.FIXED_SIZE).order(ByteOrder.BIG_ENDIAN);
            offset += Snapshot.FIXED_SIZE;
            int idSize = h.getShort(12) & 0xffff;
            int nameSize = h.getShort(14) & 0xffff;
            long extraDataSize = Integer.toUnsignedLong(h.getInt(36));
            if (extraDataSize > Snapshot.MAX_EXTRA_DATA) {
                throw new FormatException(filename, "snapshot " + i + " extra_data_size", extraDataSize,
                        "too much extra metadata in snapshot table entry (QEMU's limit is " + Snapshot.MAX_EXTRA_DATA + ")");
            }
            offset += extraDataSize;
            String id = cString(storage.read(offset, idSize));
            offset += idSize;
            String name = cString(storage.read(offset, nameSize));
            offset += nameSize;
            tableLength += Snapshot.FIXED_SIZE + extraDataSize + idSize + nameSize;
            if (tableLength > MAX_SNAPSHOT_TABLE_BYTES) {
                throw new FormatException(filename, "nb_snapshots", header.nbSnapshots(), "snapshot table is too big"
                        + " (more than QEMU's limit of " + MAX_SNAPSHOT_TABLE_BYTES + " bytes)");
            }
            entries.add(new SnapshotEntry(h.getLong(0), Integer.toUnsignedLong(h.getInt(8)), extraDataSize, id, name));
        }
        return new SnapshotTable(entries, offset - start);
    }

    /** QEMU prints snapshot ids and names with %s: up to the first NUL byte. */
    private static String cString(ByteBuffer b) {
        String s = new String(b.array(), b.arrayOffset(), b.limit(), StandardCharsets.UTF_8);
        int nul = s.indexOf('\0');
        return nul < 0 ? s : s.substring(0, nul);
    }

    // ------------------------------------------------------------------ QEMU's calculate_refcounts

    /**
     * QEMU's {@code calculate_refcounts}. {@code fix}: a refcount block past the end of the file has the file grown
     * to it (QEMU's BDRV_FIX_ERRORS; a dry run only decides whether it could).
     */
    private void calculateRefcounts(SnapshotTable snapshots, boolean fix) throws IOException {
        addReference(0, clusterSize); // header
        checkL1(header.l1TableOffset(), header.l1Size(), true);

        if (hasDataFile && !snapshots.entries().isEmpty()) {
            corruption("ERROR " + snapshots.entries().size() + " snapshots in image with data file");
        }
        for (SnapshotEntry sn : snapshots.entries()) {
            if (offsetIntoCluster(sn.l1Offset()) != 0) {
                corruption("ERROR snapshot " + sn.id() + " (" + sn.name() + ") l1_offset=" + CFormat.altHex(sn.l1Offset())
                        + ": L1 table is not cluster aligned; snapshot table entry corrupted");
                continue;
            }
            if (sn.l1Size() > L1Entry.MAX_ENTRIES) {
                corruption("ERROR snapshot " + sn.id() + " (" + sn.name() + ") l1_size=" + CFormat.altHex(sn.l1Size())
                        + ": L1 table is too large; snapshot table entry corrupted");
                continue;
            }
            checkL1(sn.l1Offset(), (int) sn.l1Size(), false);
        }
        addReference(header.snapshotsOffset(), snapshots.size());

        addReference(refcountTableOffset, stored.table().length * 8L);

        if (header.bitmaps() != null && header.has(Feature.BITMAPS)) {
            addReference(header.bitmaps().directoryOffset(), header.bitmaps().directorySize());
            for (BitmapTable t : bitmapTables) {
                addReference(t.offset(), (long) t.entries() * BitmapTable.ENTRY_SIZE);
                for (long entry : readBitmapTable(t)) {
                    long offset = BitmapTable.dataOffset(entry);
                    if (offset != 0) {
                        addReference(offset, clusterSize);
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
        if (l1Offset >= fileLength) {
            return; // a table wholly past the end of the file reads as zeros: it maps nothing (no need to read 32 MiB)
        }
        long[] l1 = active ? activeL1 : readLongs(l1Offset, l1Size);
        if (l1 == null) {
            checkError("ERROR: I/O error in check_refcounts_l1");
            throw checkFailed(EIO);
        }
        for (long entry : l1) {
            if (entry == 0) {
                continue;
            }
            if (L1Entry.hasReservedBits(entry)) {
                corruption("ERROR found L1 entry with reserved bits set: " + CFormat.hex(entry));
            }
            long l2Offset = L1Entry.l2Offset(entry);
            addReference(l2Offset, clusterSize);
            if (offsetIntoCluster(l2Offset) != 0) {
                corruption("ERROR l2_offset=" + CFormat.hex(l2Offset) + ": Table is not cluster aligned; L1 entry corrupted");
            }
            checkL2(l2Offset, active);
        }
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
                corruption("ERROR found l2 entry with reserved bits set: " + CFormat.hex(entry));
            }
            switch (type) {
                case COMPRESSED -> {
                    if ((entry & L2Entry.COPIED) != 0) {
                        corruption("ERROR: coffset=0x" + CFormat.hex(L2Entry.compressedOffset(entry, clusterBits))
                                + ": copied flag must never be set for compressed clusters");
                        entry &= ~L2Entry.COPIED;
                    }
                    if (hasDataFile) {
                        corruption("ERROR compressed cluster " + i + " with data file, entry=0x" + CFormat.hex(entry));
                        break;
                    }
                    if (bitmap != 0) {
                        corruption("ERROR compressed cluster " + i + " with non-zero subcluster allocation bitmap, entry=0x"
                                + CFormat.hex(entry));
                        break;
                    }
                    // Every host cluster the sector-rounded stream touches gets a reference.
                    addReference(L2Entry.compressedOffset(entry, clusterBits), L2Entry.compressedSize(entry, clusterBits));
                    if (active) {
                        allocatedClusters++;
                        compressedClusters++;
                        fragmentedClusters++; // QEMU counts every compressed cluster as fragmented
                    }
                }
                case NORMAL, ZERO_ALLOC -> {
                    long offset = L2Entry.hostOffset(entry);
                    if (hasInvalidBitmap(entry, bitmap)) {
                        corruption("ERROR offset=" + CFormat.hex(offset)
                                + ": Allocated cluster has corrupted subcluster allocation bitmap");
                    }
                    if (offsetIntoCluster(offset) != 0) {
                        boolean containsData = extendedL2 ? (bitmap & L2Entry.BITMAP_ALL_ALLOC) != 0
                                : (entry & L2Entry.ZERO) == 0;
                        corruption("ERROR offset=" + CFormat.hex(offset) + (containsData
                                ? ": Data cluster is not properly aligned; L2 entry corrupted."
                                : ": Preallocated cluster is not properly aligned; L2 entry corrupted."));
                    }
                    if (active) {
                        allocatedClusters++;
                        if (nextContiguousOffset != 0 && offset != nextContiguousOffset) {
                            fragmentedClusters++;
                        }
                        nextContiguousOffset = offset + clusterSize;
                    }
                    if (!hasDataFile) {
                        addReference(offset, clusterSize);
                    }
                }
                case UNALLOCATED_PLAIN -> {
                    if (hasInvalidBitmap(entry, bitmap)) {
                        corruption("ERROR: Unallocated cluster has non-zero subcluster allocation map");
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
     * the file to it (QEMU's {@code bdrv_co_truncate}), so that it is a referenced, zeroed cluster.
     */
    private void checkRefcountBlocks(boolean fix) throws IOException {
        long[] table = stored.table();
        for (int i = 0; i < table.length; i++) {
            long offset = table[i] & RefcountBlock.TABLE_OFFSET_MASK;
            long cluster = offset >>> clusterBits;
            if ((table[i] & ~RefcountBlock.TABLE_OFFSET_MASK) != 0) {
                rebuildCorruption("ERROR refcount table entry " + i + " has reserved bits set");
                continue;
            }
            if (offsetIntoCluster(offset) != 0) {
                rebuildCorruption("ERROR refcount block " + i + " is not cluster aligned; refcount table entry corrupted");
                continue;
            }
            if (Long.compareUnsigned(cluster, nbClusters) >= 0) {
                repairableCorruption((fix ? "Repairing" : "ERROR") + " refcount block " + i + " is outside image");
                if (fix) {
                    growFileForRefcountBlock(i, offset);
                }
                continue;
            }
            if (offset != 0) {
                addReference(offset, clusterSize);
                long count = computed.get(cluster);
                if (count != 1) {
                    rebuildCorruption("ERROR refcount block " + i + " refcount=" + Long.toUnsignedString(count));
                }
            }
        }
    }

    /**
     * QEMU's repair of refcount block {@code index} at {@code offset}, past the end of the file: the file grows to
     * end with that cluster, which is then referenced (and, being zeros, leaves the rebuild to QEMU's next steps).
     * If the file cannot grow the structure is rebuilt instead. A dry run only decides whether it could grow.
     */
    private void growFileForRefcountBlock(int index, long offset) throws IOException {
        if (Long.compareUnsigned(offset, Long.MAX_VALUE - clusterSize) > 0) {
            report.accept("ERROR could not resize image: Invalid argument");
            rebuild = true;
            return;
        }
        long newLength = offset + clusterSize;
        if (sizeToClusters(newLength) > MAX_CLUSTERS) {
            // QEMU would grow the file (sparse) and count its clusters; qcow4j does not make such a file.
            unrepairable("refcount block " + index + " is outside image, at offset " + offset + ": qcow4j does not grow"
                    + " the file to " + newLength + " bytes");
            return;
        }
        if (writer == null) {
            corruptions--; // a dry run: the file could grow
            corruptionsFixed++;
            return;
        }
        try {
            StoredRefcounts.writeFully(writer, ByteBuffer.allocate(1), newLength - 1); // sparse up to the block
        } catch (IOException e) {
            report.accept("ERROR could not resize image: " + describe(e));
            rebuild = true;
            return;
        }
        reopenStorage(stored.table().length);
        nbClusters = Math.max(nbClusters, sizeToClusters(fileLength));
        computed.ensureCapacity(nbClusters + 1, filename);
        corruptions--;
        corruptionsFixed++;
        addReference(offset, clusterSize); // a fresh zeroed cluster: its refcount is exactly 1
    }

    /**
     * QEMU's {@code qcow2_inc_refcounts_imrt}: one more reference to every cluster of {@code [offset, offset+size)}.
     * A range reaching a whole cluster or more past the end of the file is a corruption and counts nothing.
     */
    private void addReference(long offset, long size) throws QcowException {
        if (size <= 0) {
            return;
        }
        if (offset + size - fileLength >= clusterSize) { // QEMU's int64_t arithmetic, wrap-around included
            corruption("ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x"
                    + CFormat.hex(offset) + " size 0x" + CFormat.hex(size));
            return;
        }
        long first = offset >>> clusterBits;
        long last = (offset + size - 1) >>> clusterBits; // below 2^55: k++ cannot wrap around
        for (long k = first; Long.compareUnsigned(k, last) <= 0; k++) {
            if (Long.compareUnsigned(k, nbClusters) >= 0) {
                if (Long.compareUnsigned(k, computed.capacity()) >= 0) {
                    // Only an offset with bit 63 set gets here; QEMU fails to allocate an array reaching it.
                    checkErrors++;
                    throw checkFailed("Cannot allocate memory");
                }
                nbClusters = k + 1;
            }
            if (!computed.increment(k)) {
                // Repaired as QEMU repairs it: by a rebuild if the excess reference was a refcount block's (the
                // rebuilt structure has none), else not at all.
                report.accept("ERROR: overflow cluster offset=0x" + CFormat.hex(k << clusterBits));
                repairableCorruption("Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean "
                        + "copy if the image cannot be opened for writing");
            }
        }
    }

    // ------------------------------------------------------------------ QEMU's compare_refcounts and check_oflag_copied

    /**
     * The rest of QEMU's {@code qcow2_check_refcounts}: the computed refcounts are compared with the stored ones;
     * then a repair either rebuilds the refcount structure ({@code -r all}), fails if it needed one ({@code -r
     * leaks}, nothing written), or compares again from the same counts, fixing single entries.
     */
    private void checkRefcounts(SnapshotTable snapshots) throws IOException {
        Counts beforeCompare = counts();
        compareRefcounts(false, false);
        if (writer == null) {
            return;
        }
        if (rebuild && fixErrors) {
            rebuildAndRecount(snapshots);
        } else if (rebuild) {
            report.accept("ERROR need to rebuild refcount structures");
            checkErrors++;
            throw checkFailed(EIO);
        } else if (leaks != 0 || corruptions != 0) {
            restore(beforeCompare);
            compareRefcounts(fixLeaks, fixErrors);
        }
    }

    /**
     * QEMU's rebuild branch of {@code qcow2_check_refcounts}: a new structure is written, the references are counted
     * again against it, and the old structure's clusters (leaks now) are repaired. What the rebuild fixed is the
     * difference between the corruptions and leaks found before and after it; only leaks it made and could not
     * repair count as leaks.
     */
    private void rebuildAndRecount(SnapshotTable snapshots) throws IOException {
        report.accept("Rebuilding refcount structure");
        Counts old = counts();
        rebuildRefcountStructure();

        corruptions = 0;
        leaks = 0;
        // QEMU adds the allocation figures up again in the second count; counting them once keeps them meaningful
        // (qemu-img reports its double check's anyway).
        allocatedClusters = 0;
        fragmentedClusters = 0;
        compressedClusters = 0;
        rebuild = false;
        computed.clear();
        calculateRefcounts(snapshots, false);

        Counts recounted = counts();
        restore(new Counts(0, 0, 0, 0, 0, unrepairable));
        compareRefcounts(true, false);
        if (rebuild) {
            report.accept("ERROR rebuilt refcount structure is still broken");
        }
        long freshLeaks = leaks;
        restore(recounted);
        if (corruptions < old.corruptions()) {
            corruptionsFixed += old.corruptions() - corruptions;
        }
        if (leaks < old.leaks()) {
            leaksFixed += old.leaks() - leaks;
        }
        leaks += freshLeaks;
    }

    private Counts counts() {
        return new Counts(checkErrors, corruptions, leaks, corruptionsFixed, leaksFixed, unrepairable);
    }

    private void restore(Counts c) {
        checkErrors = c.checkErrors();
        corruptions = c.corruptions();
        leaks = c.leaks();
        corruptionsFixed = c.corruptionsFixed();
        leaksFixed = c.leaksFixed();
        unrepairable = c.unrepairable();
    }

    /**
     * QEMU's {@code compare_refcounts}: stored versus computed refcount of every cluster; higher stored is a leak,
     * lower a corruption. {@code repairLeaks} and {@code repairErrors} fix single entries in place; a stored 0 is
     * never fixed so (its refcount block may not even exist) but makes the structure one to rebuild.
     */
    private void compareRefcounts(boolean repairLeaks, boolean repairErrors) throws IOException {
        long highest = 0;
        long perBlock = stored.clustersPerBlock();
        for (long first = 0; first < nbClusters; first += perBlock) {
            long end = Math.min(nbClusters, first + perBlock);
            ByteBuffer block;
            try {
                block = stored.block(first / perBlock);
            } catch (StoredRefcounts.UnreadableRefcount e) {
                signalCorruption(e);
                for (long i = first; i < end; i++) {
                    checkError("Can't get refcount for cluster " + i + ": " + EIO);
                }
                continue;
            }
            for (long i = first; i < end; i++) {
                long storedCount = block == null ? 0 : stored.get(block, i);
                long computedCount = computed.get(i);
                if (storedCount != 0 || computedCount != 0) {
                    highest = i;
                }
                if (storedCount != computedCount) {
                    boolean tooLow = Long.compareUnsigned(storedCount, computedCount) < 0;
                    if (storedCount == 0) {
                        rebuild = true;
                    }
                    boolean repair = storedCount != 0 && (tooLow ? repairErrors : repairLeaks);
                    String line = (repair ? "Repairing" : tooLow ? "ERROR" : "Leaked") + " cluster " + i + " refcount="
                            + Long.toUnsignedString(storedCount) + " reference=" + Long.toUnsignedString(computedCount);
                    if (repair) {
                        report.accept(line);
                        try {
                            stored.set(i, computedCount, writer);
                        } catch (StoredRefcounts.UnreadableRefcount e) {
                            throw new QcowException(filename, "cannot repair the refcount of cluster " + i);
                        } catch (IOException e) {
                            throw new QcowException(filename, "write failed (refcount of cluster " + i + "): " + describe(e));
                        }
                        if (computedCount == 0) {
                            discard(i);
                        }
                        if (tooLow) {
                            corruptionsFixed++;
                        } else {
                            leaksFixed++;
                        }
                    } else if (tooLow) {
                        repairableCorruption(line);
                    } else {
                        report.accept(line);
                        leaks++;
                    }
                }
            }
        }
        imageEndOffset = (highest + 1) * clusterSize;
    }

    /** A leak repair brought the refcount of {@code cluster} to 0: QEMU discards it, so the file reads zeros there. */
    private void discard(long cluster) throws QcowException {
        long offset = cluster << clusterBits;
        long end = Math.min(offset + clusterSize, storage.length()); // a discard does not make the file longer
        if (end > offset) {
            write(ByteBuffer.allocate((int) (end - offset)), offset);
        }
    }

    // ------------------------------------------------------------------ QEMU's rebuild_refcount_structure

    /**
     * QEMU's {@code rebuild_refcount_structure}: writes a new refcount structure holding the computed refcounts and
     * switches the header to it. Each range of clusters with a computed refcount gets a refcount block, allocated
     * among the computed refcounts (so the blocks count themselves) and written as a slice of them; then room for
     * the table is allocated the same way and the blocks covering it written again, until the table stops growing.
     *
     * <p>Crash safety: the clusters taken have no computed refcount, so nothing the check counted is overwritten
     * (guest data, L1 and L2 tables, snapshots, the old refcount table and the blocks it properly names); only a
     * block the old table cannot name (reserved bits, unaligned) may be reused. The blocks and table are forced to
     * disk before the header names them, in one write of its two fields, itself forced: until then the image is as
     * it was, the refcount structure as broken as before.
     */
    private void rebuildRefcountStructure() throws IOException {
        knownUsedFrom = 0;
        knownUsedTo = 0;
        long[] table = writeRefcountBlocks(0, nbClusters, new long[0]);
        long tableOffset;
        int tableClusters;
        int entries;
        do {
            // Each table allocated is left behind when the table grows; the leak repair afterwards frees it.
            entries = table.length;
            tableClusters = (int) sizeToClusters(entries * 8L);
            tableOffset = allocate(tableClusters, 0);
            long first = tableOffset >>> clusterBits;
            table = writeRefcountBlocks(first, first + tableClusters, table);
        } while (table.length != entries);

        ByteBuffer bytes = ByteBuffer.allocate(entries * 8).order(ByteOrder.BIG_ENDIAN);
        bytes.asLongBuffer().put(table);
        write(bytes, tableOffset);
        force();
        write(ByteBuffer.allocate(12).order(ByteOrder.BIG_ENDIAN).putLong(0, tableOffset).putInt(8, tableClusters),
                Header.REFCOUNT_TABLE_AT);
        force();

        refcountTableOffset = tableOffset;
        reopenStorage(entries);
    }

    /**
     * QEMU's {@code rebuild_refcounts_write_refblocks}: writes the refcount block of every block range with a
     * computed refcount from cluster {@code first} to {@code end}, allocating it first where {@code table} names
     * none; returns the table, a longer copy if it had to grow (by whole clusters, as QEMU grows it).
     */
    private long[] writeRefcountBlocks(long first, long end, long[] table) throws IOException {
        int order = header.refcountOrder();
        int blockBits = clusterBits + 3 - order;
        long perBlock = 1L << blockBits;
        ByteBuffer block = ByteBuffer.allocate((int) clusterSize).order(ByteOrder.BIG_ENDIAN);
        long firstFree = 0;
        for (long cluster = first; cluster < end; cluster++) {
            if (computed.getOrZero(cluster) == 0) {
                continue;
            }
            int index = (int) (cluster >>> blockBits); // below 2^25: at most 2^31 clusters, at least 64 per block
            long start = (long) index << blockBits;
            long blockOffset;
            if (index < table.length && table[index] != 0) {
                blockOffset = table[index]; // allocated in an earlier round; its range changed since
            } else {
                // Never in a block range already written: its block would miss the refcount.
                firstFree = Math.max(firstFree, start);
                blockOffset = allocate(1, firstFree);
                firstFree = blockOffset >>> clusterBits;
                if (firstFree >= end) {
                    end = firstFree + 1; // the block counting this one must be written too
                }
                if (index >= table.length) {
                    long entries = (((index + 1) * 8L + clusterSize - 1) & -clusterSize) / 8;
                    if (entries * 8 > Header.MAX_REFTABLE_BYTES) {
                        throw new QcowException(filename, "cannot rebuild the refcount structure: its table would need "
                                + entries * 8 + " bytes, more than QEMU's limit of " + Header.MAX_REFTABLE_BYTES
                                + " (the header still names the old one)");
                    }
                    table = Arrays.copyOf(table, (int) entries);
                }
                table[index] = blockOffset;
            }
            for (int j = 0; j < perBlock; j++) {
                RefcountBlock.set(block, j, order, computed.getOrZero(start + j));
            }
            write(block.clear(), blockOffset);
            cluster = start + perBlock - 1;
        }
        return table;
    }

    /**
     * QEMU's {@code alloc_clusters_imrt}: the first {@code count} contiguous clusters from {@code from} on without a
     * computed refcount (past the end of the file if need be) get refcount 1; returns the offset of the first.
     */
    private long allocate(int count, long from) throws QcowException {
        long cluster = count == 1 && from >= knownUsedFrom && from < knownUsedTo ? knownUsedTo : from;
        int contiguous = 0;
        for (; cluster < nbClusters && contiguous < count; cluster++) {
            contiguous = computed.get(cluster) == 0 ? contiguous + 1 : 0;
        }
        if (contiguous < count) {
            nbClusters = cluster + count - contiguous;
            computed.ensureCapacity(nbClusters + 1, filename);
        }
        cluster -= contiguous;
        for (int i = 0; i < count; i++) {
            computed.set(cluster + i, 1);
        }
        if (count == 1) {
            // Everything from where the search began up to the cluster taken is in use now.
            if (from < knownUsedFrom || from > knownUsedTo) {
                knownUsedFrom = from;
            }
            knownUsedTo = cluster + 1;
        }
        return cluster << clusterBits;
    }

    /**
     * Opens the file again (a repair made it longer, and a {@link FileStorage} keeps the length it was opened with),
     * and with it the stored refcounts, under the current refcount table.
     */
    private void reopenStorage(int tableEntries) throws IOException {
        FileStorage reopened = FileStorage.openReadOnly(storage.path());
        if (ownsStorage) {
            storage.close();
        }
        storage = reopened;
        ownsStorage = true;
        fileLength = (storage.length() + 511) & ~511L;
        stored = new StoredRefcounts(storage, header, refcountTableOffset, tableEntries);
    }

    /**
     * QEMU's {@code qcow2_mark_clean} and {@code qcow2_mark_consistent} at the end of a repair that leaves no
     * corruptions and no check errors: the dirty and corrupt bits are cleared, once all else is on disk.
     */
    private void markClean() throws QcowException {
        long features = header.incompatibleFeatures();
        long clean = features & ~(Feature.DIRTY.mask() | Feature.CORRUPT.mask());
        if (writer == null || checkErrors != 0 || corruptions != 0 || clean == features) {
            return;
        }
        force();
        write(ByteBuffer.allocate(8).order(ByteOrder.BIG_ENDIAN).putLong(0, clean), Header.INCOMPATIBLE_FEATURES_AT);
    }

    /**
     * QEMU's {@code check_oflag_copied}: in the active tables, COPIED must be set exactly on L2 tables and data
     * clusters whose stored refcount is 1 (data in an external data file always counts as refcount 1).
     */
    private void checkCopiedFlags() throws IOException {
        // QEMU: -r all always repairs; -r leaks only if the refcounts are now right (no errors, leaks or corruptions).
        boolean repair = writer != null && (fixErrors || (fixLeaks && checkErrors == 0 && corruptions == 0 && leaks == 0));
        for (int i = 0; i < activeL1.length; i++) {
            long l1Entry = activeL1[i];
            long l2Offset = L1Entry.l2Offset(l1Entry);
            if (l2Offset == 0) {
                continue;
            }
            long refcount;
            try {
                refcount = storedRefcount(l2Offset >>> clusterBits);
            } catch (StoredRefcounts.UnreadableRefcount e) {
                continue; // compareRefcounts reported it
            }
            if ((refcount == 1) != ((l1Entry & L1Entry.COPIED) != 0)) {
                String line = (repair ? "Repairing" : "ERROR") + " OFLAG_COPIED L2 cluster: l1_index=" + i + " l1_entry="
                        + CFormat.hex(l1Entry) + " refcount=" + Long.toUnsignedString(refcount);
                if (repair) {
                    report.accept(line);
                    activeL1[i] = refcount == 1 ? l1Entry | L1Entry.COPIED : l1Entry & ~L1Entry.COPIED;
                    write(ByteBuffer.allocate(8).order(ByteOrder.BIG_ENDIAN).putLong(0, activeL1[i]),
                            header.l1TableOffset() + 8L * i);
                    corruptionsFixed++;
                } else {
                    repairableCorruption(line);
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
                    dataRefcount = hasDataFile ? 1 : storedRefcount(L2Entry.hostOffset(entry) >>> clusterBits);
                } catch (StoredRefcounts.UnreadableRefcount e) {
                    continue;
                }
                if ((dataRefcount == 1) != ((entry & L2Entry.COPIED) != 0)) {
                    String line = (repair ? "Repairing" : "ERROR") + " OFLAG_COPIED data cluster: l2_entry="
                            + CFormat.hex(entry) + " refcount=" + Long.toUnsignedString(dataRefcount);
                    if (repair) {
                        report.accept(line);
                        l2Table[extendedL2 ? 2 * j : j] = dataRefcount == 1 ? entry | L2Entry.COPIED : entry & ~L2Entry.COPIED;
                        l2Dirty++;
                    } else {
                        repairableCorruption(line);
                    }
                }
            }
            if (l2Dirty > 0) {
                // QEMU writes the whole table back (one cluster).
                ByteBuffer b = ByteBuffer.allocate((int) clusterSize).order(ByteOrder.BIG_ENDIAN);
                b.asLongBuffer().put(l2Table);
                write(b, l2Offset);
                corruptionsFixed += l2Dirty;
            }
        }
    }

    private long storedRefcount(long cluster) throws StoredRefcounts.UnreadableRefcount, IOException {
        try {
            return stored.get(cluster);
        } catch (StoredRefcounts.UnreadableRefcount e) {
            signalCorruption(e);
            throw e;
        }
    }

    /** QEMU's {@code qcow2_signal_corruption} on a read-only image: one line, the first time only. */
    private void signalCorruption(StoredRefcounts.UnreadableRefcount e) {
        if (e.corruption() != null && !signaledCorruption) {
            signaledCorruption = true;
            report.accept("qcow2: Image is corrupt: " + e.corruption() + "; further non-fatal corruption events will be suppressed");
        }
    }

    // ------------------------------------------------------------------ L2 tables

    /** Entries per L2 table (QEMU's l2_size). */
    private int l2Entries() {
        return extendedL2 ? l2Table.length / 2 : l2Table.length;
    }

    private long l2Entry(int i) {
        return extendedL2 ? l2Table[2 * i] : l2Table[i];
    }

    /** The extended-L2 subcluster bitmap of entry {@code i}; 0 without extended L2 (as QEMU's get_l2_bitmap). */
    private long l2Bitmap(int i) {
        return extendedL2 ? l2Table[2 * i + 1] : 0;
    }

    /** Reads the L2 table at {@code offset} (which may be unaligned: QEMU reads it anyway) into {@link #l2Table}. */
    private void readL2(long offset) throws IOException {
        l2Buffer.clear();
        storage.readFully(l2Buffer, offset);
        l2Buffer.flip().asLongBuffer().get(l2Table);
    }

    /**
     * QEMU's {@code qcow2_get_cluster_type}: the type of the whole cluster, subcluster bitmap aside. With extended
     * L2 entries bit 0 is no zero flag, so it is masked before {@link L2Entry#classify} is asked.
     */
    private SubclusterType clusterType(long entry) {
        return L2Entry.classify(extendedL2 ? entry & ~L2Entry.ZERO : entry, 0, 0, false, hasDataFile);
    }

    /**
     * Whether an extended-L2 bitmap is one the spec forbids for its entry (both bits of a subcluster set, allocation
     * bits on an unallocated cluster): {@link L2Entry#classify} calls that INVALID whatever the subcluster.
     */
    private boolean hasInvalidBitmap(long entry, long bitmap) {
        return extendedL2 && L2Entry.classify(entry, bitmap, 0, true, hasDataFile) == SubclusterType.INVALID;
    }

    // ------------------------------------------------------------------ helpers

    /**
     * Reads {@code count} u64 at {@code offset} as QEMU's {@code bdrv_pread} would: zeros past the end of the file,
     * null (an I/O error) where QEMU's block layer addresses nothing (offsets with bit 63 set).
     */
    private long[] readLongs(long offset, int count) throws IOException {
        long bytes = count * 8L;
        if (offset < 0 || offset > Long.MAX_VALUE - bytes) {
            return null;
        }
        long[] out = new long[count];
        storage.read(offset, (int) bytes).order(ByteOrder.BIG_ENDIAN).asLongBuffer().get(out);
        return out;
    }

    private long offsetIntoCluster(long offset) {
        return offset & (clusterSize - 1);
    }

    private long sizeToClusters(long bytes) {
        return (bytes + clusterSize - 1) >>> clusterBits;
    }

    private static long roundUp8(long v) {
        return (v + 7) & ~7L;
    }

    /** A corruption {@link #repair} does not repair. */
    private void corruption(String line) {
        repairableCorruption(line);
        unrepairable(line);
    }

    /** A corruption {@code -r all} repairs by rebuilding the refcount structure. */
    private void rebuildCorruption(String line) {
        repairableCorruption(line);
        rebuild = true;
    }

    /**
     * A corruption {@link #repair} handles as QEMU does: repairs it (a refcount too low, a wrong COPIED flag, a
     * refcount block past the end of the file) or, in the modes where QEMU does not, leaves it.
     */
    private void repairableCorruption(String line) {
        report.accept(line);
        corruptions++;
    }

    private void unrepairable(String line) {
        if (unrepairable++ == 0) {
            firstUnrepairable = line;
        }
    }

    /**
     * A check error. Not one {@link #repair} refuses for: the refcounts it cannot read are under refcount table
     * entries that are corruptions themselves, which {@code -r all} rebuilds (the other check errors fail the check).
     */
    private void checkError(String line) {
        report.accept(line);
        checkErrors++;
    }

    /** The check cannot go on: qemu-img prints "Check failed: REASON" and exits 1 without a report. */
    private QcowException checkFailed(String reason) {
        return new QcowException(filename, "Check failed: " + reason);
    }
}
