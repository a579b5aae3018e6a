package org.qcow4j.format;

/**
 * The bitmaps header extension (type 0x23852875, 24 bytes):
 * {@code u32 nb_bitmaps, u32 reserved, u64 bitmap_directory_size, u64 bitmap_directory_offset}.
 */
public record BitmapsExtension(int count, long directorySize, long directoryOffset) {
    public static final int SIZE = 24;
    /** QEMU's QCOW2_MAX_BITMAPS. */
    public static final int MAX_BITMAPS = 65535;
    /** QEMU's QCOW2_MAX_BITMAP_DIRECTORY_SIZE. */
    public static final long MAX_DIRECTORY_SIZE = 1024L * 1024 * 64;
}
