package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.FormatException;
import org.qcow4j.format.Header;
import org.qcow4j.format.Snapshot;

/**
 * The snapshot table as {@link Qcow2Check} reads it (QEMU's {@code qcow2_check_read_snapshot_table}, no repairs):
 * each entry as far as the check needs it, and the table's length in bytes (unpadded end of the last entry). What
 * QEMU refuses to open the image for is refused with a {@link FormatException}.
 */
record CheckSnapshotTable(List<CheckSnapshotTable.Entry> entries, long size) {
    /** QEMU's QCOW_MAX_SNAPSHOTS_SIZE: the snapshot table may not be longer. */
    private static final long MAX_SNAPSHOT_TABLE_BYTES = 1024L * 65536;
    /** v3 snapshot entries must carry at least vm_state_size_large and disk_size as extra data. */
    private static final int V3_MIN_SNAPSHOT_EXTRA_DATA = 16;

    /** One snapshot table entry, as far as the check needs it. */
    record Entry(long l1Offset, long l1Size, long extraDataSize, String id, String name) {
    }

    /**
     * QEMU's {@code qcow2_do_read_snapshots} without repair: the entries and the table's length. A v3 entry without
     * its mandatory extra data is a corruption, reported to {@code c}.
     */
    static CheckSnapshotTable read(CheckContext c) throws IOException {
        CheckSnapshotTable snapshots = readTable(c);
        if (c.header.version() >= 3) {
            for (int i = 0; i < snapshots.entries().size(); i++) {
                if (snapshots.entries().get(i).extraDataSize() < V3_MIN_SNAPSHOT_EXTRA_DATA) {
                    c.corruption("ERROR snapshot table entry " + i + " is incomplete");
                }
            }
        }
        return snapshots;
    }

    private static CheckSnapshotTable readTable(CheckContext c) throws IOException {
        Header header = c.header;
        String filename = c.filename;
        List<Entry> entries = new ArrayList<>();
        long start = header.snapshotsOffset();
        long minBytes = Integer.toUnsignedLong(header.nbSnapshots()) * Snapshot.FIXED_SIZE;
        if (c.offsetIntoCluster(start) != 0 || start < 0 || start > Long.MAX_VALUE - minBytes) {
            // QEMU's check validates where the table is even when it is empty (qcow2_check_read_snapshot_table).
            throw new FormatException(filename, "snapshots_offset", FormatException.hex(start), "snapshot table offset invalid");
        }
        long offset = start;
        long tableLength = 0;
        for (int i = 0; i < header.nbSnapshots(); i++) {
            tableLength = roundUp8(tableLength);
            offset = roundUp8(offset);
            ByteBuffer h = c.storage.read(offset, Snapshot.FIXED_SIZE).order(ByteOrder.BIG_ENDIAN);
            offset += Snapshot.FIXED_SIZE;
            int idSize = h.getShort(12) & 0xffff;
            int nameSize = h.getShort(14) & 0xffff;
            long extraDataSize = Integer.toUnsignedLong(h.getInt(36));
            if (extraDataSize > Snapshot.MAX_EXTRA_DATA) {
                throw new FormatException(filename, "snapshot " + i + " extra_data_size", extraDataSize,
                        "too much extra metadata in snapshot table entry (QEMU's limit is " + Snapshot.MAX_EXTRA_DATA + ")");
            }
            offset += extraDataSize;
            String id = cString(c.storage.read(offset, idSize));
            offset += idSize;
            String name = cString(c.storage.read(offset, nameSize));
            offset += nameSize;
            tableLength += Snapshot.FIXED_SIZE + extraDataSize + idSize + nameSize;
            if (tableLength > MAX_SNAPSHOT_TABLE_BYTES) {
                throw new FormatException(filename, "nb_snapshots", header.nbSnapshots(), "snapshot table is too big"
                        + " (more than QEMU's limit of " + MAX_SNAPSHOT_TABLE_BYTES + " bytes)");
            }
            entries.add(new Entry(h.getLong(0), Integer.toUnsignedLong(h.getInt(8)), extraDataSize, id, name));
        }
        return new CheckSnapshotTable(entries, offset - start);
    }

    /** QEMU prints snapshot ids and names with %s: up to the first NUL byte. */
    private static String cString(ByteBuffer b) {
        String s = new String(b.array(), b.arrayOffset(), b.limit(), StandardCharsets.UTF_8);
        int nul = s.indexOf('\0');
        return nul < 0 ? s : s.substring(0, nul);
    }

    private static long roundUp8(long v) {
        return (v + 7) & ~7L;
    }
}
