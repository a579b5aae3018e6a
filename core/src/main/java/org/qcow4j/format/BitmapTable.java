package org.qcow4j.format;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.FormatException;

/**
 * Where a persistent bitmap's clusters are (qcow2.txt "Bitmap directory" and "Bitmap table"): the bitmap table a
 * directory entry points to, {@code entries} u64 words, each naming one data cluster:
 * <pre>
 *  bit  0     : with offset 0, the whole range reads as ones (else zeros); reserved when an offset is given
 *  bits 1 - 8 : reserved (0)
 *  bits 9 - 55: data cluster offset, cluster aligned; 0 = no cluster
 *  bits 56- 63: reserved (0)
 * </pre>
 * {@link Bitmap} is what {@code info} shows of a bitmap; this is what refcount checking needs of it.
 *
 * @param name    the bitmap's name, for messages
 * @param offset  where the bitmap table starts (cluster aligned)
 * @param entries how many u64 entries the table has
 */
public record BitmapTable(String name, long offset, int entries) {
    public static final long OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    public static final long RESERVED_MASK = 0xff00_0000_0000_01feL;
    public static final long ALL_ONES = 1L;
    public static final int ENTRY_SIZE = 8;

    // QEMU's constraints on directory entries (block/qcow2-bitmap.c, check_dir_entry).
    private static final int DIR_ENTRY_FIXED_SIZE = 24;
    private static final long MAX_TABLE_ENTRIES = 0x800_0000L;
    private static final long MAX_PHYS_BYTES = 0x2000_0000L;
    private static final int MIN_GRANULARITY_BITS = 9;
    private static final int MAX_GRANULARITY_BITS = 31;
    private static final int MAX_NAME_SIZE = 1023;
    private static final int RESERVED_FLAGS = 0xffff_fffc;
    private static final int TYPE_DIRTY_TRACKING = 1;

    /** The data cluster an entry names, 0 for none. */
    public static long dataOffset(long entry) {
        return entry & OFFSET_MASK;
    }

    /** QEMU's {@code check_table_entry}: no reserved bits, and an offset given is aligned and has no all-ones flag. */
    public static boolean isValidEntry(long entry, long clusterSize) {
        if ((entry & RESERVED_MASK) != 0) {
            return false;
        }
        long offset = dataOffset(entry);
        return offset == 0 || ((entry & ALL_ONES) == 0 && (offset & (clusterSize - 1)) == 0);
    }

    /**
     * Reads the bitmap directory named by a bitmaps extension and returns each bitmap's table, refusing the
     * directories and entries QEMU refuses to open an image with ({@code bitmap_list_load}, {@code check_dir_entry}).
     *
     * @param virtualSize the image's virtual size, which a bitmap not marked in use must cover
     */
    public static List<BitmapTable> readDirectory(BitmapsExtension ext, Snapshot.Reader reader, String file,
                                                  long fileLength, long virtualSize, int clusterBits) throws IOException {
        long dirOffset = ext.directoryOffset();
        long dirSize = ext.directorySize();
        if (dirSize == 0) {
            throw new FormatException(file, "bitmap_directory_size", 0, "bitmap directory is empty");
        }
        if ((dirOffset & ((1L << clusterBits) - 1)) != 0) {
            throw new FormatException(file, "bitmap_directory_offset", FormatException.hex(dirOffset), "not cluster aligned");
        }
        if (dirOffset < 0 || dirOffset > fileLength || dirSize > fileLength - dirOffset) {
            throw new FormatException(file, "bitmap_directory_offset", FormatException.hex(dirOffset),
                    "bitmap directory runs past the end of the file");
        }
        ByteBuffer dir = reader.read(dirOffset, (int) dirSize).order(ByteOrder.BIG_ENDIAN);
        List<BitmapTable> tables = new ArrayList<>();
        int pos = 0;
        while (pos < dir.limit()) {
            String field = "bitmap " + tables.size();
            if (pos + DIR_ENTRY_FIXED_SIZE > dir.limit()) {
                throw new FormatException(file, field, pos, "broken bitmap directory (entry runs past its end)");
            }
            if (tables.size() >= ext.count()) {
                throw new FormatException(file, "nb_bitmaps", ext.count(), "more bitmaps in the directory than the header says");
            }
            long tableOffset = dir.getLong(pos);
            long tableEntries = Integer.toUnsignedLong(dir.getInt(pos + 8));
            int flags = dir.getInt(pos + 12);
            int type = dir.get(pos + 16) & 0xff;
            int granularityBits = dir.get(pos + 17) & 0xff;
            int nameSize = dir.getShort(pos + 18) & 0xffff;
            long extraSize = Integer.toUnsignedLong(dir.getInt(pos + 20));
            long entrySize = (DIR_ENTRY_FIXED_SIZE + nameSize + extraSize + 7) & ~7L;
            if (pos + entrySize > dir.limit()) {
                throw new FormatException(file, field, pos, "broken bitmap directory (entry runs past its end)");
            }
            if (extraSize != 0) {
                throw new FormatException(file, field + " extra_data_size", extraSize, "bitmap extra data is not supported");
            }
            byte[] nameBytes = new byte[nameSize];
            dir.get(pos + DIR_ENTRY_FIXED_SIZE, nameBytes);
            String name = new String(nameBytes, StandardCharsets.UTF_8);
            long physBytes = tableEntries << clusterBits;
            boolean valid = tableEntries != 0 && tableOffset != 0 && (tableOffset & ((1L << clusterBits) - 1)) == 0
                    && tableEntries <= MAX_TABLE_ENTRIES && granularityBits >= MIN_GRANULARITY_BITS
                    && granularityBits <= MAX_GRANULARITY_BITS && (flags & RESERVED_FLAGS) == 0
                    && nameSize <= MAX_NAME_SIZE && type == TYPE_DIRTY_TRACKING && physBytes <= MAX_PHYS_BYTES
                    && ((flags & Bitmap.FLAG_IN_USE) != 0
                        || Long.compareUnsigned(virtualSize, (physBytes * 8) << granularityBits) <= 0);
            if (!valid) {
                throw new FormatException(file, field + " '" + name + "'", FormatException.hex(tableOffset),
                        "bitmap doesn't satisfy QEMU's constraints (table of " + tableEntries + " entries, granularity bits "
                        + granularityBits + ", flags " + FormatException.hex(flags & 0xffffffffL) + ", type " + type + ")");
            }
            tables.add(new BitmapTable(name, tableOffset, (int) tableEntries));
            pos += (int) entrySize;
        }
        if (tables.size() != ext.count()) {
            throw new FormatException(file, "nb_bitmaps", ext.count(), "fewer bitmaps in the directory than the header says ("
                    + tables.size() + ")");
        }
        return List.copyOf(tables);
    }
}
