package org.qcow4j.format;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.FormatException;

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

    /** Reads the snapshot table named by the header, checking each entry against the file and QEMU's limits. */
    public static List<Snapshot> readTable(Header h, Reader reader, String file, long fileLength) throws IOException {
        List<Snapshot> list = new ArrayList<>();
        long pos = h.snapshotsOffset();
        long end = h.snapshotsOffset() + MAX_TABLE_BYTES;
        for (int i = 0; i < h.nbSnapshots(); i++) {
            String field = "snapshot " + i;
            if (pos + FIXED_SIZE > fileLength || pos + FIXED_SIZE > end) {
                throw new FormatException(file, field + " offset", FormatException.hex(pos), "snapshot table runs past the end of the file");
            }
            ByteBuffer f = reader.read(pos, FIXED_SIZE).order(ByteOrder.BIG_ENDIAN);
            long l1Offset = f.getLong(0);
            int l1Size = f.getInt(8);
            int idSize = f.getShort(12) & 0xffff;
            int nameSize = f.getShort(14) & 0xffff;
            long dateSec = Integer.toUnsignedLong(f.getInt(16));
            long dateNsec = Integer.toUnsignedLong(f.getInt(20));
            long vmClock = f.getLong(24);
            long vmState = Integer.toUnsignedLong(f.getInt(32));
            long extraSize = Integer.toUnsignedLong(f.getInt(36));
            if (extraSize > MAX_EXTRA_DATA) {
                throw new FormatException(file, field + " extra_data_size", extraSize, "more than QEMU's limit of 1024");
            }
            long varSize = extraSize + idSize + nameSize;
            if (pos + FIXED_SIZE + varSize > fileLength || pos + FIXED_SIZE + varSize > end) {
                throw new FormatException(file, field + " size", FIXED_SIZE + varSize, "snapshot entry runs past the end of the file");
            }
            ByteBuffer v = reader.read(pos + FIXED_SIZE, (int) varSize).order(ByteOrder.BIG_ENDIAN);
            long diskSize = -1;
            long icount = -1;
            if (extraSize >= 8) {
                vmState = v.getLong(0);
            }
            if (extraSize >= 16) {
                diskSize = v.getLong(8);
            }
            if (extraSize >= 24) {
                icount = v.getLong(16);
            }
            String id = text(v, (int) extraSize, idSize);
            String name = text(v, (int) extraSize + idSize, nameSize);
            if (Integer.toUnsignedLong(l1Size) > L1Entry.MAX_ENTRIES) {
                throw new FormatException(file, field + " l1_size", Integer.toUnsignedString(l1Size), "snapshot L1 table too large");
            }
            list.add(new Snapshot(l1Offset, l1Size, id, name, dateSec, dateNsec, vmClock, vmState, diskSize, icount));
            pos += (FIXED_SIZE + varSize + 7) & ~7L;
        }
        return List.copyOf(list);
    }

    private static String text(ByteBuffer b, int at, int len) {
        byte[] bytes = new byte[len];
        b.get(at, bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }
}
