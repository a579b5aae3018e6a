package org.qcow4j.ext;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One block group descriptor (e2fsprogs' {@code struct ext4_group_desc}, little-endian): 32 bytes, or
 * {@code s_desc_size} (at least 64) with the 64bit feature, when the {@code _hi} halves count.
 * <pre>
 * 0x00 bg_block_bitmap (lo)   0x04 bg_inode_bitmap (lo)   0x08 bg_inode_table (lo)
 * 0x12 bg_flags (u16: 1 INODE_UNINIT, 2 BLOCK_UNINIT, 4 ITABLE_ZEROED)   0x1C bg_itable_unused (lo u16)
 * -- 64bit only --
 * 0x20 bg_block_bitmap_hi     0x24 bg_inode_bitmap_hi     0x28 bg_inode_table_hi   0x32 bg_itable_unused_hi (u16)
 * </pre>
 * A location of 0 means "none" (e2image skips it).
 */
record GroupDescriptor(long blockBitmap, long inodeBitmap, long inodeTable, int flags, long itableUnused) {

    static final int INODE_UNINIT = 0x1;
    static final int BLOCK_UNINIT = 0x2;

    /** Decodes the descriptor at {@code offset} of {@code table}. */
    static GroupDescriptor parse(ByteBuffer table, int offset, boolean is64bit) {
        ByteBuffer b = table.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        long blockBitmap = u32(b, offset);
        long inodeBitmap = u32(b, offset + 0x04);
        long inodeTable = u32(b, offset + 0x08);
        int flags = Short.toUnsignedInt(b.getShort(offset + 0x12));
        long itableUnused = Short.toUnsignedInt(b.getShort(offset + 0x1C));
        if (is64bit) {
            blockBitmap |= u32(b, offset + 0x20) << 32;
            inodeBitmap |= u32(b, offset + 0x24) << 32;
            inodeTable |= u32(b, offset + 0x28) << 32;
            itableUnused |= (long) Short.toUnsignedInt(b.getShort(offset + 0x32)) << 16;
        }
        return new GroupDescriptor(blockBitmap, inodeBitmap, inodeTable, flags, itableUnused);
    }

    boolean hasFlag(int flag) {
        return (flags & flag) != 0;
    }

    /**
     * As {@code ext2fs_open2} leaves a group when the filesystem is opened from a backup superblock with group
     * descriptor checksums: the backup descriptors are stale, so no group is trusted to be uninitialized.
     */
    GroupDescriptor withoutUninit() {
        return new GroupDescriptor(blockBitmap, inodeBitmap, inodeTable, flags & ~(INODE_UNINIT | BLOCK_UNINIT), 0);
    }

    private static long u32(ByteBuffer b, int offset) {
        return Integer.toUnsignedLong(b.getInt(offset));
    }
}
