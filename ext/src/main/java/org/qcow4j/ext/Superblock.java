package org.qcow4j.ext;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.FormatException;
import org.qcow4j.UnsupportedFeatureException;

/**
 * The ext2/3/4 superblock (e2fsprogs' {@code struct ext2_super_block}, 1024 bytes, little-endian), reduced to the
 * fields that decide where metadata lives. The primary copy is at byte 1024 of the filesystem; backups start the
 * first block of some groups. Byte offsets of the fields read:
 * <pre>
 * 0x000 s_inodes_count        0x004 s_blocks_count (lo)   0x014 s_first_data_block   0x018 s_log_block_size
 * 0x01C s_log_cluster_size    0x020 s_blocks_per_group    0x024 s_clusters_per_group 0x028 s_inodes_per_group
 * 0x038 s_magic (u16 0xEF53)  0x048 s_creator_os          0x04C s_rev_level          0x058 s_inode_size (u16)
 * 0x05C s_feature_compat      0x060 s_feature_incompat    0x064 s_feature_ro_compat  0x0E0 s_journal_inum
 * 0x0FE s_desc_size (u16)     0x104 s_first_meta_bg       0x150 s_blocks_count_hi    0x168 s_mmp_block (u64)
 * 0x24C s_backup_bgs[2]       0x26C s_prj_quota_inum      0x280 s_orphan_file_inum
 * </pre>
 * {@link #parse} only decodes; {@link #validate} ports the consistency checks of e2fsprogs' {@code ext2fs_open2}
 * (which {@code e2image} relies on), so every count derived here is bounded before anything is sized from it.
 */
record Superblock(
        long inodesCount,
        long blocksCount,
        long firstDataBlock,
        long logBlockSize,
        long logClusterSize,
        long blocksPerGroup,
        long clustersPerGroup,
        long inodesPerGroup,
        int magic,
        long creatorOs,
        long revLevel,
        int rawInodeSize,
        int featureCompat,
        int featureIncompat,
        int featureRoCompat,
        long journalInum,
        int rawDescSize,
        long firstMetaBg,
        long mmpBlock,
        long backupBg0,
        long backupBg1,
        long prjQuotaInum,
        long orphanFileInum) {

    /** Bytes of the superblock structure, and its byte offset in the filesystem (primary copy). */
    static final int SIZE = 1024;
    static final int PRIMARY_OFFSET = 1024;
    static final int MAGIC = 0xEF53;

    static final int COMPAT_SPARSE_SUPER2 = 0x0200;

    static final int INCOMPAT_COMPRESSION = 0x0001;
    static final int INCOMPAT_FILETYPE = 0x0002;
    static final int INCOMPAT_RECOVER = 0x0004;
    static final int INCOMPAT_JOURNAL_DEV = 0x0008;
    static final int INCOMPAT_META_BG = 0x0010;
    static final int INCOMPAT_EXTENTS = 0x0040;
    static final int INCOMPAT_64BIT = 0x0080;
    static final int INCOMPAT_MMP = 0x0100;
    static final int INCOMPAT_FLEX_BG = 0x0200;
    static final int INCOMPAT_EA_INODE = 0x0400;
    static final int INCOMPAT_DIRDATA = 0x1000;
    static final int INCOMPAT_CSUM_SEED = 0x2000;
    static final int INCOMPAT_LARGEDIR = 0x4000;
    static final int INCOMPAT_INLINE_DATA = 0x8000;
    static final int INCOMPAT_ENCRYPT = 0x10000;
    static final int INCOMPAT_CASEFOLD = 0x20000;
    /** e2fsprogs 1.47's EXT2_LIB_FEATURE_INCOMPAT_SUPP: what ext2fs_open2 accepts. None of these moves metadata
     *  anywhere this parser does not look (journal_dev has no group descriptors and is refused separately). */
    static final int INCOMPAT_SUPPORTED = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_JOURNAL_DEV
            | INCOMPAT_META_BG | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_MMP | INCOMPAT_FLEX_BG
            | INCOMPAT_EA_INODE | INCOMPAT_CSUM_SEED | INCOMPAT_LARGEDIR | INCOMPAT_INLINE_DATA | INCOMPAT_ENCRYPT
            | INCOMPAT_CASEFOLD;

    static final int RO_COMPAT_SPARSE_SUPER = 0x0001;
    static final int RO_COMPAT_GDT_CSUM = 0x0010;
    static final int RO_COMPAT_BIGALLOC = 0x0200;
    static final int RO_COMPAT_METADATA_CSUM = 0x0400;

    /** s_creator_os of GNU Hurd, whose inodes may name a translator block. */
    static final long OS_HURD = 1;
    /** EXT2_DYNAMIC_REV, the highest revision e2fsprogs knows; revision 0 has fixed 128-byte inodes. */
    static final long DYNAMIC_REV = 1;
    static final int GOOD_OLD_INODE_SIZE = 128;
    /** Group descriptor sizes: 32 bytes without 64bit, at least 64 with it (EXT2_MIN_DESC_SIZE_64BIT). */
    static final int DESC_SIZE = 32;
    static final int MIN_DESC_SIZE_64BIT = 64;
    /** EXT2_MAX_BLOCK_LOG_SIZE - EXT2_MIN_BLOCK_LOG_SIZE: blocks are 1 KiB to 64 KiB. */
    static final int MAX_LOG_BLOCK_SIZE = 6;
    /** EXT2_MAX_CLUSTER_LOG_SIZE - EXT2_MIN_BLOCK_LOG_SIZE: clusters are at most 512 MiB. */
    static final int MAX_LOG_CLUSTER_SIZE = 19;

    /** Decodes the 1024 superblock bytes at {@code buf}'s position; nothing is checked. */
    static Superblock parse(ByteBuffer buf) {
        ByteBuffer b = buf.slice().order(ByteOrder.LITTLE_ENDIAN);
        return new Superblock(
                u32(b, 0x000), u32(b, 0x004), u32(b, 0x014), u32(b, 0x018), u32(b, 0x01C), u32(b, 0x020),
                u32(b, 0x024), u32(b, 0x028), u16(b, 0x038), u32(b, 0x048), u32(b, 0x04C), u16(b, 0x058),
                b.getInt(0x05C), b.getInt(0x060), b.getInt(0x064), u32(b, 0x0E0), u16(b, 0x0FE), u32(b, 0x104),
                b.getLong(0x168), u32(b, 0x24C), u32(b, 0x250), u32(b, 0x26C), u32(b, 0x280))
                .withBlocksHi(u32(b, 0x150));
    }

    /** s_blocks_count_hi only counts with the 64bit feature (ext2fs_blocks_count). */
    private Superblock withBlocksHi(long hi) {
        if (!hasIncompat(INCOMPAT_64BIT) || hi == 0) {
            return this;
        }
        return new Superblock(inodesCount, blocksCount | (hi << 32), firstDataBlock, logBlockSize,
                logClusterSize, blocksPerGroup, clustersPerGroup, inodesPerGroup, magic, creatorOs, revLevel,
                rawInodeSize, featureCompat, featureIncompat, featureRoCompat, journalInum, rawDescSize, firstMetaBg,
                mmpBlock, backupBg0, backupBg1, prjQuotaInum, orphanFileInum);
    }

    /**
     * The checks of {@code ext2fs_open2}, in its order, so a filesystem e2image refuses is refused here too, and
     * every derived count ({@link #groupCount}, {@link #descriptorBlocks}, ...) is bounded afterwards.
     *
     * @param expectedBlockSize e2image's {@code -B}, or 0 when not given
     */
    void validate(String file, int expectedBlockSize) throws FormatException, UnsupportedFeatureException {
        if (magic != MAGIC) {
            throw new FormatException(file, "s_magic", FormatException.hex(magic),
                    "bad superblock magic (not an ext2/3/4 filesystem; expected 0xef53)");
        }
        if (revLevel > DYNAMIC_REV) {
            throw new UnsupportedFeatureException(file, "ext2 revision level " + revLevel);
        }
        int unsupported = featureIncompat & ~INCOMPAT_SUPPORTED;
        if (unsupported != 0) {
            throw new UnsupportedFeatureException(file, String.join(", ", incompatNames(unsupported))
                    + " (Filesystem has unsupported feature(s))");
        }
        if (hasIncompat(INCOMPAT_JOURNAL_DEV)) {
            // An external journal device has a superblock but no groups: nothing for e2image to walk.
            throw new UnsupportedFeatureException(file, "journal_dev (Filesystem has unsupported feature(s))");
        }
        if (logBlockSize > MAX_LOG_BLOCK_SIZE) {
            throw new FormatException(file, "s_log_block_size", logBlockSize,
                    "blocks of 2^(10 + " + logBlockSize + ") bytes; at most " + MAX_LOG_BLOCK_SIZE + " (64 KiB)");
        }
        if (blocksCount < 0 || blocksCount > Long.MAX_VALUE >> (10 + logBlockSize)) {
            // Byte offsets of blocks must fit in 63 bits; no real filesystem comes near (ext4 stops at 2^48 blocks).
            throw new FormatException(file, "s_blocks_count", Long.toUnsignedString(blocksCount),
                    "filesystem larger than 8 EiB");
        }
        if (!hasRoCompat(RO_COMPAT_BIGALLOC) && logClusterSize != logBlockSize) {
            throw new FormatException(file, "s_log_cluster_size", logClusterSize,
                    "differs from s_log_block_size " + logBlockSize + " without bigalloc");
        }
        if (logClusterSize < logBlockSize || logClusterSize > MAX_LOG_CLUSTER_SIZE) {
            throw new FormatException(file, "s_log_cluster_size", logClusterSize,
                    "clusters must be 1 to 2^" + (MAX_LOG_CLUSTER_SIZE - logBlockSize) + " blocks of 2^"
                            + (10 + logBlockSize) + " bytes");
        }
        int inodeSize = inodeSize();
        if (inodeSize < GOOD_OLD_INODE_SIZE || inodeSize > blockSize() || Integer.bitCount(inodeSize) != 1) {
            throw new FormatException(file, "s_inode_size", inodeSize,
                    "must be a power of two from 128 to the block size " + blockSize());
        }
        if (hasIncompat(INCOMPAT_64BIT)
                && (rawDescSize < MIN_DESC_SIZE_64BIT || rawDescSize > blockSize() || Integer.bitCount(rawDescSize) != 1)) {
            // e2fsprogs checks the lower bound only; a size that is not a power of two would split descriptors
            // across blocks, which neither mke2fs nor the kernel allows.
            throw new FormatException(file, "s_desc_size", rawDescSize,
                    "64bit group descriptors must be a power of two from 64 to the block size " + blockSize());
        }
        if (blocksPerGroup != clustersPerGroup << clusterRatioBits()) {
            throw new FormatException(file, "s_clusters_per_group", clustersPerGroup,
                    "times the cluster ratio " + (1L << clusterRatioBits()) + " is not s_blocks_per_group "
                            + blocksPerGroup);
        }
        if (expectedBlockSize != 0 && expectedBlockSize != blockSize()) {
            throw new FormatException(file, "s_log_block_size", logBlockSize,
                    "block size " + blockSize() + " is not the " + expectedBlockSize + " given");
        }
        if (inodesPerGroup == 0) {
            throw new FormatException(file, "s_inodes_per_group", 0, "no inodes in a group");
        }
        if (blocksPerGroup == 0 || blocksPerGroup > maxBlocksPerGroup()) {
            throw new FormatException(file, "s_blocks_per_group", blocksPerGroup,
                    "must be 1 to " + maxBlocksPerGroup());
        }
        // e2fsprogs compares the inode table's blocks with EXT2_MAX_INODES_PER_GROUP (an inode count) as is.
        if (inodeBlocksPerGroup() > (1L << 16) - inodesPerBlock()) {
            throw new FormatException(file, "s_inodes_per_group", inodesPerGroup,
                    "inode table of " + inodeBlocksPerGroup() + " blocks per group is too large");
        }
        if (firstDataBlock >= blocksCount) {
            throw new FormatException(file, "s_first_data_block", firstDataBlock,
                    "not below s_blocks_count " + blocksCount);
        }
        if (groupCount() >> 32 != 0) {
            throw new FormatException(file, "s_blocks_count", blocksCount,
                    groupCount() + " block groups (more than 2^32)");
        }
        if (groupCount() * inodesPerGroup != inodesCount) {
            throw new FormatException(file, "s_inodes_count", inodesCount,
                    "is not " + groupCount() + " groups * s_inodes_per_group " + inodesPerGroup);
        }
    }

    /** Names of incompatible feature bits, as e2fsprogs prints them (unknown ones as FEATURE_In). */
    static List<String> incompatNames(int bits) {
        String[] known = {"compression", "filetype", "needs_recovery", "journal_dev", "meta_bg", "FEATURE_I5",
                "extent", "64bit", "mmp", "flex_bg", "ea_inode", "FEATURE_I11", "dirdata", "metadata_csum_seed",
                "large_dir", "inline_data", "encrypt", "casefold"};
        List<String> names = new ArrayList<>();
        for (int bit = 0; bit < 32; bit++) {
            if ((bits & (1 << bit)) != 0) {
                names.add(bit < known.length ? known[bit] : "FEATURE_I" + bit);
            }
        }
        return names;
    }

    boolean hasIncompat(int bit) {
        return (featureIncompat & bit) != 0;
    }

    boolean hasRoCompat(int bit) {
        return (featureRoCompat & bit) != 0;
    }

    boolean hasCompat(int bit) {
        return (featureCompat & bit) != 0;
    }

    boolean is64bit() {
        return hasIncompat(INCOMPAT_64BIT);
    }

    int blockSize() {
        return 1024 << (int) logBlockSize;
    }

    /** log2(blocks per cluster): 0 unless bigalloc. */
    int clusterRatioBits() {
        return (int) (logClusterSize - logBlockSize);
    }

    int inodeSize() {
        return revLevel == 0 ? GOOD_OLD_INODE_SIZE : rawInodeSize;
    }

    int descriptorSize() {
        return is64bit() ? rawDescSize : DESC_SIZE;
    }

    int descriptorsPerBlock() {
        return blockSize() / descriptorSize();
    }

    int inodesPerBlock() {
        return blockSize() / inodeSize();
    }

    /** fs->inode_blocks_per_group: blocks of a whole inode table. */
    long inodeBlocksPerGroup() {
        return (inodesPerGroup * inodeSize() + blockSize() - 1) / blockSize();
    }

    /** EXT2_MAX_BLOCKS_PER_GROUP: 65528 clusters. */
    long maxBlocksPerGroup() {
        return ((1L << 16) - 8) << clusterRatioBits();
    }

    long groupCount() {
        return Math.floorDiv(blocksCount - firstDataBlock + blocksPerGroup - 1, blocksPerGroup);
    }

    /** fs->desc_blocks: blocks of one copy of the group descriptor table. */
    long descriptorBlocks() {
        return (groupCount() + descriptorsPerBlock() - 1) / descriptorsPerBlock();
    }

    /** ext2fs_has_group_desc_csum: uninit_bg or metadata_csum, which make bg_flags and bg_itable_unused count. */
    boolean hasGroupDescriptorChecksums() {
        return hasRoCompat(RO_COMPAT_GDT_CSUM) || hasRoCompat(RO_COMPAT_METADATA_CSUM);
    }

    long groupFirstBlock(long group) {
        return firstDataBlock + group * blocksPerGroup;
    }

    /** ext2fs_bg_has_super: whether {@code group} starts with a superblock and descriptor backup. */
    boolean groupHasSuperblock(long group) {
        if (group == 0) {
            return true;
        }
        if (hasCompat(COMPAT_SPARSE_SUPER2)) {
            return group == backupBg0 || group == backupBg1;
        }
        if (group <= 1 || !hasRoCompat(RO_COMPAT_SPARSE_SUPER)) {
            return true;
        }
        if ((group & 1) == 0) {
            return false;
        }
        return isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
    }

    private static boolean isPowerOf(long a, long b) {
        while (true) {
            if (a < b) {
                return false;
            }
            if (a == b) {
                return true;
            }
            if (a % b != 0) {
                return false;
            }
            a /= b;
        }
    }

    /**
     * ext2fs_descriptor_block_loc2: where block {@code i} of the descriptor table that belongs to the superblock at
     * {@code groupBlock} lives. Without meta_bg (and below s_first_meta_bg) the table follows the superblock; with
     * meta_bg, block i sits in the first group of meta group i (or, for a backup superblock, in the second).
     * The bigalloc 1 KiB-block adjustment applies to i = 0 only, as in e2fsprogs.
     */
    long descriptorBlock(long groupBlock, long i) {
        int groupZeroAdjust = (i == 0 && blockSize() == 1024 && clusterRatioBits() > 0) ? 1 : 0;
        if (!hasIncompat(INCOMPAT_META_BG) || i < firstMetaBg) {
            return groupBlock + i + 1 + groupZeroAdjust;
        }
        long group = descriptorsPerBlock() * i;
        int hasSuper = groupHasSuperblock(group) ? 1 : 0;
        long block = groupFirstBlock(group);
        if (groupBlock != firstDataBlock && block + hasSuper + blocksPerGroup < blocksCount) {
            block += blocksPerGroup;
            hasSuper = groupHasSuperblock(group + 1) ? 1 : 0;
        }
        return block + hasSuper + groupZeroAdjust;
    }

    private static long u32(ByteBuffer b, int offset) {
        return Integer.toUnsignedLong(b.getInt(offset));
    }

    private static int u16(ByteBuffer b, int offset) {
        return Short.toUnsignedInt(b.getShort(offset));
    }
}
