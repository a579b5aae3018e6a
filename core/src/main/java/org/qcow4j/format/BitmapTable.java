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
 * {@link Bitmap} is what {@code info} shows of a bitmap; this is the whole directory entry, as refcount checking and
 * the writer need it. The bitmap data each table entry names is one cluster of bits, granule {@code g} of the entry's
 * range in bit {@code g % 8} (least significant first) of byte {@code g / 8}: QEMU's serialization of its dirty bitmaps
 * (little-endian 64-bit words), so one cluster covers {@code 8 * cluster_size} granules.
 *
 * @param name            the bitmap's name
 * @param offset          where the bitmap table starts (cluster aligned; 0 only for a bitmap not stored yet)
 * @param entries         how many u64 entries the table has
 * @param flags           {@link Bitmap#FLAG_IN_USE}, {@link Bitmap#FLAG_AUTO}
 * @param granularityBits log2 of the bytes one bit stands for
 */
public record BitmapTable(String name, long offset, int entries, int flags, int granularityBits) {
    public static final long OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    public static final long RESERVED_MASK = 0xff00_0000_0000_01feL;
    public static final long ALL_ONES = 1L;
    public static final int ENTRY_SIZE = 8;

    // QEMU's constraints on directory entries (block/qcow2-bitmap.c, check_dir_entry).
    private static final int DIR_ENTRY_FIXED_SIZE = 24;
    public static final long MAX_TABLE_ENTRIES = 0x800_0000L;
    /** QEMU's BME_MAX_PHYS_SIZE: the bytes of one bitmap's data. */
    public static final long MAX_PHYS_BYTES = 0x2000_0000L;
    public static final int MIN_GRANULARITY_BITS = 9;
    public static final int MAX_GRANULARITY_BITS = 31;
    public static final int MAX_NAME_SIZE = 1023;
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
            tables.add(new BitmapTable(name, tableOffset, (int) tableEntries, flags, granularityBits));
            pos += (int) entrySize;
        }
        if (tables.size() != ext.count()) {
            throw new FormatException(file, "nb_bitmaps", ext.count(), "fewer bitmaps in the directory than the header says ("
                    + tables.size() + ")");
        }
        return List.copyOf(tables);
    }

    /** The same entry with another table and flags. */
    public BitmapTable with(long tableOffset, int tableEntries, int newFlags) {
        return new BitmapTable(name, tableOffset, tableEntries, newFlags, granularityBits);
    }

    /** QEMU's {@code calc_dir_entry_size}: the fixed part and the name, padded to 8 bytes. */
    public static long directoryEntrySize(String name) {
        return (DIR_ENTRY_FIXED_SIZE + name.getBytes(StandardCharsets.UTF_8).length + 7) & ~7L;
    }

    /** The bytes of a bitmap directory holding {@code entries}, in order. */
    public static long directorySize(List<BitmapTable> entries) {
        long size = 0;
        for (BitmapTable t : entries) {
            size += directoryEntrySize(t.name());
        }
        return size;
    }

    /** QEMU's {@code bitmap_list_store}: the directory's bytes, entries in order, type 1, no extra data. */
    public static ByteBuffer encodeDirectory(List<BitmapTable> entries) {
        long size = directorySize(entries);
        if (size > BitmapsExtension.MAX_DIRECTORY_SIZE) {
            throw new IllegalArgumentException("bitmap directory of " + size + " bytes");
        }
        ByteBuffer b = ByteBuffer.allocate((int) size).order(ByteOrder.BIG_ENDIAN);
        for (BitmapTable t : entries) {
            int at = b.position();
            byte[] name = t.name().getBytes(StandardCharsets.UTF_8);
            b.putLong(t.offset()).putInt(t.entries()).putInt(t.flags()).put((byte) TYPE_DIRTY_TRACKING)
                    .put((byte) t.granularityBits()).putShort((short) name.length).putInt(0).put(name);
            b.position(at + (int) directoryEntrySize(t.name()));
        }
        return b.flip();
    }

    /**
     * The bitmap table entries a bitmap of a disk of {@code virtualSize} bytes has: its bits rounded up to 64-bit
     * words (QEMU's serialization size), in clusters.
     */
    public static long tableEntriesFor(long virtualSize, int granularityBits, int clusterBits) {
        long granules = granules(virtualSize, granularityBits);
        long bytes = (granules + 63) / 64 * 8;
        return (bytes + (1L << clusterBits) - 1) >>> clusterBits;
    }

    /** The granules (bits) of a bitmap over {@code virtualSize} bytes. */
    public static long granules(long virtualSize, int granularityBits) {
        return (virtualSize + (1L << granularityBits) - 1) >>> granularityBits;
    }

    /** The granules one bitmap data cluster covers. */
    public static long granulesPerCluster(int clusterBits) {
        return 8L << clusterBits;
    }
}
