package org.qcow4j.ext;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The first 128 bytes of an on-disk inode (e2fsprogs' {@code struct ext2_inode}, little-endian), which is all
 * e2image looks at. Larger inodes only add fields after these.
 * <pre>
 * 0x00 i_mode (u16)     0x04 i_size (lo)      0x1A i_links_count (u16)   0x1C i_blocks (lo)
 * 0x20 i_flags          0x24 osd1 (Hurd: i_translator)                   0x28 i_block[15] (60 bytes)
 * 0x68 i_file_acl (lo)  0x76 l_i_file_acl_high (u16, 64bit only)
 * </pre>
 * {@code i_block} holds 12 direct, one indirect, one double- and one triple-indirect block number, or with
 * {@code EXT4_EXTENTS_FL} the root of the extent tree, or with {@code EXT4_INLINE_DATA_FL} file bytes, or for a
 * fast symlink the target itself.
 */
record Inode(int mode, long sizeLo, int linksCount, long blocksLo, int flags, long translator, ByteBuffer blockArea,
        long fileAcl) {

    static final int SIZE = 128;
    static final int BLOCK_AREA_OFFSET = 0x28;
    static final int BLOCK_AREA_SIZE = 60;
    /** i_block slots: EXT2_NDIR_BLOCKS direct ones, then EXT2_IND_BLOCK, EXT2_DIND_BLOCK, EXT2_TIND_BLOCK. */
    static final int DIRECT_BLOCKS = 12;
    static final int IND_BLOCK = 12;
    static final int DIND_BLOCK = 13;
    static final int TIND_BLOCK = 14;

    static final int EXTENTS_FL = 0x0008_0000;
    static final int INLINE_DATA_FL = 0x1000_0000;

    private static final int S_IFMT = 0xF000;
    private static final int S_IFDIR = 0x4000;
    private static final int S_IFREG = 0x8000;
    private static final int S_IFLNK = 0xA000;

    /** Decodes the inode at {@code offset} of {@code table}; {@code i_file_acl_high} counts with 64bit only. */
    static Inode parse(ByteBuffer table, int offset, boolean is64bit) {
        // the scan hands little-endian tables: no view is made for them (this runs once per inode in use)
        ByteBuffer b = table.order() == ByteOrder.LITTLE_ENDIAN ? table : table.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        byte[] area = new byte[BLOCK_AREA_SIZE];
        b.get(offset + BLOCK_AREA_OFFSET, area);
        ByteBuffer blockArea = ByteBuffer.wrap(area);
        long fileAcl = u32(b, offset + 0x68);
        if (is64bit) {
            fileAcl |= (long) Short.toUnsignedInt(b.getShort(offset + 0x76)) << 32;
        }
        return new Inode(Short.toUnsignedInt(b.getShort(offset)), u32(b, offset + 0x04),
                Short.toUnsignedInt(b.getShort(offset + 0x1A)), u32(b, offset + 0x1C), b.getInt(offset + 0x20),
                u32(b, offset + 0x24), blockArea.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN), fileAcl);
    }

    boolean isDirectory() {
        return (mode & S_IFMT) == S_IFDIR;
    }

    boolean isRegularFile() {
        return (mode & S_IFMT) == S_IFREG;
    }

    boolean isSymlink() {
        return (mode & S_IFMT) == S_IFLNK;
    }

    boolean usesExtents() {
        return (flags & EXTENTS_FL) != 0;
    }

    /** i_block[index] as the unsigned 32-bit block number it is in the indirect scheme. */
    long blockPointer(int index) {
        return Integer.toUnsignedLong(blockArea.getInt(index * 4));
    }

    /**
     * ext2fs_inode_has_valid_blocks2 (e2fsprogs 1.47): whether i_block holds block numbers at all. Only
     * directories, regular files and symlinks can; a symlink without an EA block has them iff i_blocks != 0; with
     * an EA block, i_blocks counts that block too, so the size and the shape of i_block decide ("probably fast");
     * inline data never has them.
     */
    boolean hasValidBlocks() {
        if (!isDirectory() && !isRegularFile() && !isSymlink()) {
            return false;
        }
        if (isSymlink()) {
            if (fileAcl == 0) {
                if (blocksLo == 0) {
                    return false;
                }
            } else {
                if (sizeLo >= BLOCK_AREA_SIZE) {
                    return true; // definitely using i_block[]
                }
                if (sizeLo > 4 && blockPointer(1) == 0) {
                    return true; // definitely using i_block[]
                }
                return false; // probably a fast symlink
            }
        }
        return (flags & INLINE_DATA_FL) == 0;
    }

    private static long u32(ByteBuffer b, int offset) {
        return Integer.toUnsignedLong(b.getInt(offset));
    }
}
