package org.qcow4j.ext;

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
 *
 * <p>Decoders of the inode at byte {@code o} of an inode table read into {@code t}, never an object per inode: the
 * scan runs them on every inode in use.
 */
final class Inode {
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

    static final int S_IFMT = 0xF000;
    static final int S_IFDIR = 0x4000;
    static final int S_IFREG = 0x8000;
    static final int S_IFLNK = 0xA000;

    private Inode() {
    }

    static int mode(byte[] t, int o) {
        return Le.u16(t, o);
    }

    static long sizeLo(byte[] t, int o) {
        return Le.u32(t, o + 0x04);
    }

    static int linksCount(byte[] t, int o) {
        return Le.u16(t, o + 0x1A);
    }

    static long blocksLo(byte[] t, int o) {
        return Le.u32(t, o + 0x1C);
    }

    static int flags(byte[] t, int o) {
        return Le.i32(t, o + 0x20);
    }

    static long translator(byte[] t, int o) {
        return Le.u32(t, o + 0x24);
    }

    /** i_file_acl; {@code l_i_file_acl_high} counts with 64bit only. */
    static long fileAcl(byte[] t, int o, boolean is64bit) {
        long acl = Le.u32(t, o + 0x68);
        return is64bit ? acl | (long) Le.u16(t, o + 0x76) << 32 : acl;
    }

    /** i_block[index] as the unsigned 32-bit block number it is in the indirect scheme. */
    static long blockPointer(byte[] t, int o, int index) {
        return Le.u32(t, o + BLOCK_AREA_OFFSET + index * 4);
    }

    /**
     * ext2fs_inode_has_valid_blocks2 (e2fsprogs 1.47): whether i_block holds block numbers at all. Only
     * directories, regular files and symlinks can; a symlink without an EA block has them iff i_blocks != 0; with
     * an EA block, i_blocks counts that block too, so the size and the shape of i_block decide ("probably fast");
     * inline data never has them. {@code mode}, {@code flags} and {@code fileAcl} are the inode's, already decoded.
     */
    static boolean hasValidBlocks(byte[] t, int o, int mode, int flags, long fileAcl) {
        int type = mode & S_IFMT;
        if (type == S_IFLNK) {
            if (fileAcl == 0) {
                if (blocksLo(t, o) == 0) {
                    return false;
                }
            } else {
                long size = sizeLo(t, o);
                if (size >= BLOCK_AREA_SIZE) {
                    return true; // definitely using i_block[]
                }
                if (size > 4 && blockPointer(t, o, 1) == 0) {
                    return true; // definitely using i_block[]
                }
                return false; // probably a fast symlink
            }
        } else if (type != S_IFDIR && type != S_IFREG) {
            return false;
        }
        return (flags & INLINE_DATA_FL) == 0;
    }
}
