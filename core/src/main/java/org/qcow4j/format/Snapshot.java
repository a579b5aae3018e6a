package org.qcow4j.format;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * An internal snapshot (qcow2.txt "Snapshots"). Table entries, each padded to 8 bytes:
 * <pre>
 *  0 u64 l1_table_offset   8 u32 l1_size   12 u16 id_str_size   14 u16 name_size
 * 16 u32 date_sec         20 u32 date_nsec 24 u64 vm_clock_nsec 32 u32 vm_state_size
 * 36 u32 extra_data_size  40 extra data: u64 vm_state_size_large, u64 disk_size, u64 icount
 *    then id_str, then name (no NUL)
 * </pre>
 *
 * @param icount -1 when the entry does not record it
 */
public record Snapshot(long l1TableOffset, int l1Size, String id, String name, long dateSec, long dateNsec,
                       long vmClockNsec, long vmStateSize, long diskSize, long icount) {
    public static final int FIXED_SIZE = 40;
    /** QEMU refuses more extra data than this per entry. */
    public static final int MAX_EXTRA_DATA = 1024;
    /** QEMU's QCOW_MAX_SNAPSHOTS_SIZE: the whole table. */
    public static final long MAX_TABLE_BYTES = 1024L * 65536;

    /** Positional reads of the image file, bounded by the caller. */
    @FunctionalInterface
    public interface Reader {
        ByteBuffer read(long offset, int length) throws IOException;
    }

    /**
     * Reads the snapshot table named by the header, checking each entry against the file and QEMU's limits
     * ({@link SnapshotTable#read}, which parses it); an entry without a disk size in its extra data has -1.
     */
    public static List<Snapshot> readTable(Header h, Reader reader, String file, long fileLength) throws IOException {
        List<SnapshotTable.Entry> entries = SnapshotTable.read(h, reader, file, fileLength, -1);
        Snapshot[] snapshots = new Snapshot[entries.size()];
        for (int i = 0; i < snapshots.length; i++) {
            snapshots[i] = entries.get(i).snapshot(); // a loop, not a stream: info's start-up (see Qcow2Image.open)
        }
        return List.of(snapshots);
    }
}
