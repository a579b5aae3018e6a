package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.CheckFailedException;
import org.qcow4j.OpenOptions;
import org.qcow4j.format.Header;
import org.qcow4j.format.Snapshot;
import org.qcow4j.format.SnapshotTable;
import org.qcow4j.io.Access;
import org.qcow4j.io.FileStorage;

/**
 * The snapshot table as {@link Qcow2Check} reads and repairs it: QEMU 7.2's {@code qcow2_check_read_snapshot_table}
 * (with {@code qcow2_do_read_snapshots} in its repair mode) and {@code qcow2_check_fix_snapshot_table}
 * (block/qcow2-snapshot.c). With {@code -r all} (BDRV_FIX_ERRORS):
 * <ul>
 * <li>more than 65536 snapshots, or entries past QEMU's 64 MiB table limit, are dropped off the end ("Discarding N
 *     overhanging snapshots"), and the header's {@code nb_snapshots} is written at once: their clusters become
 *     leaks, which the refcount check then repairs; these count as corruptions fixed;
 * <li>an entry's extra data beyond QEMU's 1024 bytes is cut to 1024 ("Discarding too much extra metadata"), and a
 *     version 3 entry without the 16 bytes of extra data the version needs is reported ("Repairing snapshot table
 *     entry N is incomplete"): these corruptions are fixed after the refcount check by writing the whole table
 *     anew, as {@code qcow2_write_snapshots} writes it (every entry with at least 24 bytes of extra data).
 * </ul>
 * Without it the same problems fail the check (the table cannot be read: "Check failed: File too large") or, for
 * incomplete entries, count as corruptions. The counts are QEMU's {@code snapshot_res}, kept apart from the refcount
 * check's until it is done ({@link #fix}), as QEMU adds them up.
 */
final class CheckSnapshotTable {
    /** QEMU's QCOW_MAX_SNAPSHOTS_SIZE: the snapshot table may not be longer. */
    private static final long MAX_SNAPSHOT_TABLE_BYTES = Snapshot.MAX_TABLE_BYTES;
    /** v3 snapshot entries must carry at least vm_state_size_large and disk_size as extra data. */
    private static final int V3_MIN_SNAPSHOT_EXTRA_DATA = 16;
    /** Past this QEMU's block layer refuses a read (BDRV_MAX_LENGTH): the table cannot be read. */
    private static final long MAX_READ_END = Long.MAX_VALUE - Integer.MAX_VALUE;

    /** One snapshot table entry, as far as the refcount check needs it. */
    record Entry(long l1Offset, long l1Size, long extraDataSize, String id, String name) {
    }

    private final List<Entry> entries;
    /** The entries as QEMU keeps them in memory (extra data cut to 1024 bytes), to write them anew. */
    private final List<SnapshotTable.Entry> table;
    private final long size;
    /** QEMU's {@code snapshot_res}. */
    private long corruptions;
    private long corruptionsFixed;

    private CheckSnapshotTable(List<Entry> entries, List<SnapshotTable.Entry> table, long size) {
        this.entries = entries;
        this.table = table;
        this.size = size;
    }

    /** The entries the refcount check counts (those left after dropping overhanging ones). */
    List<Entry> entries() {
        return entries;
    }

    /** QEMU's {@code s->snapshots_size}: the table's bytes as stored, to the unpadded end of the last entry kept. */
    long size() {
        return size;
    }

    /**
     * QEMU's {@code qcow2_check_read_snapshot_table}. In a repair ({@code c.writer} set, {@code c.fixErrors}) a
     * reduced snapshot count is written to the header at once.
     *
     * @throws CheckFailedException where QEMU's check fails: the table's count or offset invalid, or (without {@code
     *         -r all}) an entry with too much extra data or a table too big
     */
    static CheckSnapshotTable read(CheckContext c) throws IOException {
        Header header = c.header;
        boolean repair = c.fixErrors;
        long nb = Integer.toUnsignedLong(header.nbSnapshots());
        long start = header.snapshotsOffset();
        long reduced = 0;
        long dropped = 0;

        if (nb > Header.MAX_SNAPSHOTS && repair) {
            c.report.accept("Discarding " + (nb - Header.MAX_SNAPSHOTS) + " overhanging snapshots");
            reduced += nb - Header.MAX_SNAPSHOTS;
            nb = Header.MAX_SNAPSHOTS;
        }
        // qcow2_validate_table(..., "snapshot table"), which QEMU's open skips in check mode
        if (nb > Header.MAX_SNAPSHOTS) {
            throw failed(c, CheckContext.EFBIG, "ERROR snapshot table too large\nYou can force-remove all "
                    + (nb - Header.MAX_SNAPSHOTS) + " overhanging snapshots with qemu-img check -r all");
        }
        if (start < 0 || Long.MAX_VALUE - nb * Snapshot.FIXED_SIZE < start || c.offsetIntoCluster(start) != 0) {
            throw failed(c, CheckContext.EINVAL, "ERROR snapshot table offset invalid");
        }

        // qcow2_do_read_snapshots
        long imageSize = header.virtualSize() / 512 * 512; // bs->total_sectors * BDRV_SECTOR_SIZE
        List<Entry> entries = new ArrayList<>();
        List<SnapshotTable.Entry> table = new ArrayList<>();
        long offset = start;
        long tableLength = 0;
        for (int i = 0; i < nb; i++) {
            long preOffset = offset;
            tableLength = roundUp8(tableLength);
            offset = roundUp8(offset);
            ByteBuffer h = read(c, offset, Snapshot.FIXED_SIZE);
            offset += Snapshot.FIXED_SIZE;
            long l1Offset = h.getLong(0);
            int l1Size = h.getInt(8);
            int idSize = h.getShort(12) & 0xffff;
            int nameSize = h.getShort(14) & 0xffff;
            long dateSec = Integer.toUnsignedLong(h.getInt(16));
            long dateNsec = Integer.toUnsignedLong(h.getInt(20));
            long vmClock = h.getLong(24);
            long vmState = Integer.toUnsignedLong(h.getInt(32));
            long extraDataSize = Integer.toUnsignedLong(h.getInt(36));
            boolean truncate = false;
            if (extraDataSize > Snapshot.MAX_EXTRA_DATA) {
                if (!repair) {
                    throw failed(c, CheckContext.EFBIG, "ERROR failed to read the snapshot table: Too much extra metadata"
                            + " in snapshot table entry " + i
                            + "\nYou can force-remove this extra metadata with qemu-img check -r all");
                }
                c.report.accept("Discarding too much extra metadata in snapshot table entry " + i + " ("
                        + extraDataSize + " > " + Snapshot.MAX_EXTRA_DATA + ")");
                dropped++;
                truncate = true;
            }
            int known = (int) Math.min(SnapshotTable.KNOWN_EXTRA, extraDataSize);
            ByteBuffer extra = ByteBuffer.allocate(SnapshotTable.KNOWN_EXTRA).order(ByteOrder.BIG_ENDIAN);
            extra.put(0, read(c, offset, known), 0, known);
            offset += known;
            if (extraDataSize >= 8) {
                vmState = extra.getLong(0);
            }
            long diskSize = extraDataSize >= 16 ? extra.getLong(8) : imageSize;
            long icount = extraDataSize >= 24 ? extra.getLong(16) : -1;
            byte[] unknown = new byte[0];
            if (extraDataSize > SnapshotTable.KNOWN_EXTRA) {
                long extraEnd = offset + extraDataSize - SnapshotTable.KNOWN_EXTRA;
                if (truncate) {
                    extraDataSize = Snapshot.MAX_EXTRA_DATA;
                }
                unknown = new byte[(int) extraDataSize - SnapshotTable.KNOWN_EXTRA];
                read(c, offset, unknown.length).get(0, unknown);
                offset = extraEnd;
            }
            String id = cString(read(c, offset, idSize));
            offset += idSize;
            String name = cString(read(c, offset, nameSize));
            offset += nameSize;

            // (the extra data may have been cut)
            tableLength += Snapshot.FIXED_SIZE + extraDataSize + idSize + nameSize;
            if (tableLength > MAX_SNAPSHOT_TABLE_BYTES || offset - start > Integer.MAX_VALUE) {
                if (!repair) {
                    throw failed(c, CheckContext.EFBIG, "ERROR failed to read the snapshot table: Snapshot table is too big"
                            + "\nYou can force-remove all " + (nb - i) + " overhanging snapshots with qemu-img check -r all");
                }
                c.report.accept("Discarding " + (nb - i) + " overhanging snapshots (snapshot table is too big)");
                reduced += nb - i;
                offset = preOffset;
                break;
            }
            entries.add(new Entry(l1Offset, Integer.toUnsignedLong(l1Size), extraDataSize, id, name));
            table.add(new SnapshotTable.Entry(l1Offset, l1Size, id, name, dateSec, dateNsec, vmClock, vmState, diskSize,
                    icount, (int) extraDataSize, unknown));
        }
        CheckSnapshotTable snapshots = new CheckSnapshotTable(entries, table, offset - start);

        snapshots.corruptions += reduced + dropped;
        if (reduced > 0) {
            // "Update image header now": the refcount check relies on the header's count; the clusters leak
            if (c.writer != null) {
                c.write(ByteBuffer.allocate(4).putInt(0, entries.size()), Header.NB_SNAPSHOTS_AT);
                c.force();
            }
            snapshots.corruptionsFixed += reduced;
            snapshots.corruptions -= reduced;
        }
        if (header.version() >= 3) {
            for (int i = 0; i < entries.size(); i++) {
                if (entries.get(i).extraDataSize() < V3_MIN_SNAPSHOT_EXTRA_DATA) {
                    snapshots.corruptions++;
                    c.report.accept((repair ? "Repairing" : "ERROR") + " snapshot table entry " + i + " is incomplete");
                }
            }
        }
        return snapshots;
    }

    /**
     * QEMU's {@code qcow2_check_fix_snapshot_table}, then its result added to the check's: with {@code -r all} a
     * table that had corruptions is written anew (after the refcount repair, which makes allocating safe).
     */
    void fix(CheckContext c) throws IOException {
        if (corruptions > 0 && c.fixErrors) {
            if (!SnapshotTable.fits(table)) {
                // qcow2_write_snapshots: -EFBIG before it allocates anything
                c.report.accept("ERROR failed to update snapshot table: " + CheckContext.EFBIG);
                c.checkErrors++;
                throw c.checkFailed(CheckContext.EFBIG);
            }
            if (c.writer != null) {
                writeSnapshots(c);
            }
            corruptionsFixed += corruptions;
            corruptions = 0;
        }
        c.corruptions += corruptions;
        c.corruptionsFixed += corruptionsFixed;
    }

    /**
     * QEMU's {@code qcow2_write_snapshots} at the end of a repair, through the allocator an image opened for writing
     * uses ({@link RefcountTable}, over the refcounts the repair left): the table in new clusters (their refcounts
     * on disk first), forced, then the header's count and offset in one forced write, then the old table freed
     * (punched, as QEMU's snapshot discards are).
     */
    private void writeSnapshots(CheckContext c) throws IOException {
        c.force();
        try (FileStorage file = FileStorage.open(Path.of(c.filename), Access.WRITE)) {
            Header h = Qcow2Image.readHeaderForCheck(file, c.filename);
            RefcountTable refcounts = new RefcountTable(c.filename, file, h, OpenOptions.DEFAULT_REFCOUNT_CACHE_BYTES);
            int bytes = SnapshotTable.size(table);
            long offset = refcounts.allocate((bytes + c.clusterSize - 1) >>> c.clusterBits);
            writeRefcounts(refcounts, file);
            if (bytes > 0) {
                // QEMU writes each entry and leaves the padding between them as the clusters held it
                file.writeFully(SnapshotTable.encode(table, file.read(offset, bytes)), offset);
            }
            file.force();
            file.writeFully(ByteBuffer.allocate(12).putInt(table.size()).putLong(offset).flip(), Header.NB_SNAPSHOTS_AT);
            file.force();
            refcounts.free(h.snapshotsOffset(), size, RefcountTable.Discard.SNAPSHOT);
            refcounts.applyFrees();
            writeRefcounts(refcounts, file);
            refcounts.processDiscards();
            file.force();
        }
    }

    private static void writeRefcounts(RefcountTable refcounts, FileStorage file) throws IOException {
        if (refcounts.hasDirtyBlocks()) {
            refcounts.writeBlocks();
            file.force();
        }
        if (refcounts.hasDirtyEntries()) {
            refcounts.writeEntries();
            file.force();
        }
    }

    /** A read of the table: zeros past the end of the file; where QEMU's block layer addresses nothing, a failure. */
    private static ByteBuffer read(CheckContext c, long offset, int length) throws IOException {
        if (offset < 0 || offset > MAX_READ_END - length) {
            throw failed(c, CheckContext.EIO, "ERROR failed to read the snapshot table: Failed to read snapshot table: "
                    + CheckContext.EIO);
        }
        return c.storage.read(offset, length).order(ByteOrder.BIG_ENDIAN);
    }

    private static CheckFailedException failed(CheckContext c, String reason, String error) {
        c.checkErrors++;
        return new CheckFailedException(c.filename, reason, List.of(error));
    }

    /** QEMU keeps snapshot ids and names as C strings: up to the first NUL byte. */
    private static String cString(ByteBuffer b) {
        String s = new String(b.array(), b.arrayOffset(), b.limit(), StandardCharsets.UTF_8);
        int nul = s.indexOf('\0');
        return nul < 0 ? s : s.substring(0, nul);
    }

    private static long roundUp8(long v) {
        return (v + 7) & ~7L;
    }
}
