package org.qcow4j.format;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.FormatException;

/**
 * The snapshot table as QEMU 7.2 keeps it in memory and writes it back (block/qcow2-snapshot.c,
 * {@code qcow2_read_snapshots} and {@code qcow2_write_snapshots}); {@link Snapshot} is the read-only view of an
 * entry. Entries start on 8-byte boundaries, the last one is not padded:
 * <pre>
 *  0 u64 l1_table_offset   8 u32 l1_size   12 u16 id_str_size   14 u16 name_size
 * 16 u32 date_sec         20 u32 date_nsec 24 u64 vm_clock_nsec 32 u32 vm_state_size (0 if it needs 64 bits)
 * 36 u32 extra_data_size  40 extra data: u64 vm_state_size_large, u64 disk_size, u64 icount, then unknown bytes
 *    then id_str, then name (no NUL)
 * </pre>
 * QEMU writes at least the 24 bytes of extra data it knows (an entry read with less gets the image's size as its
 * disk size and -1 as its icount), and keeps unknown extra data as it was.
 */
public final class SnapshotTable {
    /** QEMU's {@code sizeof(QCowSnapshotExtraData)}. */
    public static final int KNOWN_EXTRA = 24;

    private SnapshotTable() {
    }

    /**
     * One entry as QEMU holds it ({@code QCowSnapshot}).
     *
     * @param extraDataSize the extra data size as read (at least {@link #KNOWN_EXTRA} for a new entry)
     * @param unknownExtra the extra data past the known 24 bytes, kept as read
     */
    public record Entry(long l1TableOffset, int l1Size, String id, String name, long dateSec, long dateNsec,
                        long vmClockNsec, long vmStateSize, long diskSize, long icount, int extraDataSize,
                        byte[] unknownExtra) {
        /** The API's view of the entry. */
        public Snapshot snapshot() {
            return new Snapshot(l1TableOffset, l1Size, id, name, dateSec, dateNsec, vmClockNsec, vmStateSize, diskSize,
                    icount);
        }

        /** The entry with another L1 table (a snapshot of the same guest state elsewhere). */
        public Entry withL1(long offset, int size) {
            return new Entry(offset, size, id, name, dateSec, dateNsec, vmClockNsec, vmStateSize, diskSize, icount,
                    extraDataSize, unknownExtra);
        }
    }

    /**
     * Reads the table named by the header as {@code qcow2_read_snapshots} does; {@code imageSize} is the disk size
     * QEMU gives an entry without one.
     */
    public static List<Entry> read(Header h, Snapshot.Reader reader, String file, long fileLength, long imageSize)
            throws IOException {
        List<Entry> list = new ArrayList<>();
        long pos = h.snapshotsOffset();
        long end = h.snapshotsOffset() + Snapshot.MAX_TABLE_BYTES;
        for (int i = 0; i < h.nbSnapshots(); i++) {
            pos = (pos + 7) & ~7L;
            String field = "snapshot " + i;
            ByteBuffer f = reader.read(pos, Snapshot.FIXED_SIZE).order(ByteOrder.BIG_ENDIAN);
            long l1Offset = f.getLong(0);
            int l1Size = f.getInt(8);
            int idSize = f.getShort(12) & 0xffff;
            int nameSize = f.getShort(14) & 0xffff;
            long dateSec = Integer.toUnsignedLong(f.getInt(16));
            long dateNsec = Integer.toUnsignedLong(f.getInt(20));
            long vmClock = f.getLong(24);
            long vmState = Integer.toUnsignedLong(f.getInt(32));
            long extraSize = Integer.toUnsignedLong(f.getInt(36));
            if (extraSize > Snapshot.MAX_EXTRA_DATA) {
                throw new FormatException(file, field + " extra_data_size", extraSize, "more than QEMU's limit of 1024",
                        "Too much extra metadata in snapshot table entry " + i
                                + "\nYou can force-remove this extra metadata with qemu-img check -r all");
            }
            long varSize = extraSize + idSize + nameSize;
            if (pos + Snapshot.FIXED_SIZE + varSize > end) {
                throw new FormatException(file, field + " size", Snapshot.FIXED_SIZE + varSize, "the snapshot table would"
                        + " exceed QEMU's limit of " + Snapshot.MAX_TABLE_BYTES + " bytes", "Snapshot table is too big"
                        + "\nYou can force-remove all " + (Integer.toUnsignedLong(h.nbSnapshots()) - i)
                        + " overhanging snapshots with qemu-img check -r all");
            }
            ByteBuffer v = reader.read(pos + Snapshot.FIXED_SIZE, (int) varSize).order(ByteOrder.BIG_ENDIAN);
            long diskSize = extraSize >= 16 ? v.getLong(8) : imageSize;
            long icount = extraSize >= 24 ? v.getLong(16) : -1;
            if (extraSize >= 8) {
                vmState = v.getLong(0);
            }
            byte[] unknown = new byte[(int) Math.max(0, extraSize - KNOWN_EXTRA)];
            if (unknown.length > 0) { // a shorter entry's buffer may end before byte 24
                v.get(KNOWN_EXTRA, unknown);
            }
            String id = text(v, (int) extraSize, idSize);
            String name = text(v, (int) extraSize + idSize, nameSize);
            list.add(new Entry(l1Offset, l1Size, id, name, dateSec, dateNsec, vmClock, vmState, diskSize, icount,
                    (int) extraSize, unknown));
            pos += Snapshot.FIXED_SIZE + varSize;
        }
        return list;
    }

    /** The bytes {@code qcow2_write_snapshots} writes for {@code entries}: its {@code snapshots_size}. */
    public static int size(List<Entry> entries) {
        return (int) bytes(entries);
    }

    /** Whether the table for {@code entries} stays within QEMU's {@code QCOW_MAX_SNAPSHOTS_SIZE}. */
    public static boolean fits(List<Entry> entries) {
        return bytes(entries) <= Snapshot.MAX_TABLE_BYTES;
    }

    private static long bytes(List<Entry> entries) {
        long offset = 0;
        for (Entry e : entries) {
            offset = (offset + 7) & ~7L;
            offset += Snapshot.FIXED_SIZE + Math.max(KNOWN_EXTRA, e.extraDataSize()) + utf8(e.id()).length
                    + utf8(e.name()).length;
        }
        return offset;
    }

    /**
     * The table as QEMU writes it, {@link #size} bytes; the padding between entries, which QEMU does not write,
     * is taken from {@code previous} (what the clusters held), so the bytes match QEMU's file.
     */
    public static ByteBuffer encode(List<Entry> entries, ByteBuffer previous) {
        ByteBuffer out = ByteBuffer.allocate(size(entries)).order(ByteOrder.BIG_ENDIAN);
        out.put(0, previous, 0, Math.min(previous.remaining(), out.capacity()));
        int offset = 0;
        for (Entry e : entries) {
            offset = (offset + 7) & ~7;
            byte[] id = utf8(e.id());
            byte[] name = utf8(e.name());
            out.putLong(offset, e.l1TableOffset());
            out.putInt(offset + 8, e.l1Size());
            out.putShort(offset + 12, (short) id.length);
            out.putShort(offset + 14, (short) name.length);
            out.putInt(offset + 16, (int) e.dateSec());
            out.putInt(offset + 20, (int) e.dateNsec());
            out.putLong(offset + 24, e.vmClockNsec());
            out.putInt(offset + 32, e.vmStateSize() <= 0xffff_ffffL ? (int) e.vmStateSize() : 0);
            int extra = Math.max(KNOWN_EXTRA, e.extraDataSize());
            out.putInt(offset + 36, extra);
            offset += Snapshot.FIXED_SIZE;
            out.putLong(offset, e.vmStateSize());
            out.putLong(offset + 8, e.diskSize());
            out.putLong(offset + 16, e.icount());
            out.put(offset + KNOWN_EXTRA, e.unknownExtra());
            offset += extra;
            out.put(offset, id);
            offset += id.length;
            out.put(offset, name);
            offset += name.length;
        }
        return out;
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** An id or name as QEMU keeps it: a C string, up to the first NUL byte. */
    private static String text(ByteBuffer b, int at, int len) {
        int n = 0;
        while (n < len && b.get(at + n) != 0) {
            n++;
        }
        byte[] bytes = new byte[n];
        b.get(at, bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }

    /**
     * QEMU's {@code s->snapshots_size} after {@code qcow2_read_snapshots}: the bytes of the table {@link #read} read,
     * to the unpadded end of its last entry as stored (ids and names at their stored sizes, NUL bytes and all).
     */
    public static long storedSize(Header h, Snapshot.Reader reader) throws IOException {
        long pos = h.snapshotsOffset();
        for (int i = 0; i < h.nbSnapshots(); i++) {
            pos = (pos + 7) & ~7L;
            ByteBuffer f = reader.read(pos, Snapshot.FIXED_SIZE).order(ByteOrder.BIG_ENDIAN);
            pos += Snapshot.FIXED_SIZE + Integer.toUnsignedLong(f.getInt(36)) + (f.getShort(12) & 0xffff)
                    + (f.getShort(14) & 0xffff);
        }
        return pos - h.snapshotsOffset();
    }
}
