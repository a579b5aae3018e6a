package org.qcow4j.ext;

import java.io.IOException;
import java.util.List;

/**
 * The block selection of e2image's {@code write_raw_image_file} (shared by {@code -r} and {@code -Q}):
 * {@code mark_table_blocks} for the fixed metadata, then one inode scan marking what each inode needs. The result
 * is e2image's {@code meta_block_map} (and, for {@code -s}, its {@code scramble_block_map}) before the all-zero
 * blocks are dropped at write time.
 */
final class MetadataScan {
    /** Inodes e2image copies whole, besides directories and symlinks: the quota files (EXT4_USR_QUOTA_INO,
     *  EXT4_GRP_QUOTA_INO; the project one is named by the superblock). */
    private static final long USER_QUOTA_INO = 3;
    private static final long GROUP_QUOTA_INO = 4;

    private final BlockDevice device;
    private final Superblock sb;
    private final List<GroupDescriptor> groups;
    private final long backupSuperblock;
    private final boolean allData;
    private final BlockRangesBuilder metadata = new BlockRangesBuilder();
    private final BlockRangesBuilder directories = new BlockRangesBuilder();

    record Result(BlockRanges metadata, BlockRanges directories) {
    }

    private MetadataScan(BlockDevice device, Superblock sb, List<GroupDescriptor> groups, long backupSuperblock,
            boolean allData) {
        this.device = device;
        this.sb = sb;
        this.groups = groups;
        this.backupSuperblock = backupSuperblock;
        this.allData = allData;
    }

    /**
     * @param backupSuperblock e2image's {@code -b}: that superblock and its descriptor table are written as well;
     *                         0 for none
     * @param allData          e2image's {@code -a}: regular files' data too
     */
    static Result run(BlockDevice device, Superblock sb, List<GroupDescriptor> groups, long backupSuperblock,
            boolean allData) throws IOException {
        MetadataScan scan = new MetadataScan(device, sb, groups, backupSuperblock, allData);
        scan.markTables();
        InodeBlockWalker walker = new InodeBlockWalker(device, sb);
        InodeScanner.scan(device, sb, groups, (ino, inode) -> scan.markInode(walker, ino, inode));
        int clusterBits = sb.clusterRatioBits();
        long from = sb.firstDataBlock();
        long to = sb.blocksCount();
        return new Result(scan.metadata.build(clusterBits, from, to), scan.directories.build(clusterBits, from, to));
    }

    /** mark_table_blocks, preceded by the {@code -b} superblock and its descriptors. */
    private void markTables() throws IOException {
        long descriptorBlocks = sb.descriptorBlocks();
        if (backupSuperblock != 0) {
            mark(backupSuperblock, "-b superblock");
            for (long j = 0; j < descriptorBlocks; j++) {
                mark(sb.descriptorBlock(backupSuperblock, j), "backup group descriptor block " + j);
            }
        }
        long first = sb.firstDataBlock();
        mark(first, "s_first_data_block");
        for (long j = 0; j < descriptorBlocks; j++) {
            mark(sb.descriptorBlock(first, j), "group descriptor block " + j);
        }
        if (sb.hasIncompat(Superblock.INCOMPAT_MMP)) {
            mark(sb.mmpBlock(), "s_mmp_block");
        }
        boolean csum = sb.hasGroupDescriptorChecksums();
        for (int g = 0; g < groups.size(); g++) {
            GroupDescriptor group = groups.get(g);
            if (!group.hasFlag(GroupDescriptor.INODE_UNINIT) && group.inodeTable() != 0) {
                long used = sb.inodeBlocksPerGroup();
                if (csum) {
                    // Only the blocks holding initialized inodes (bg_itable_unused counts the rest; validated <= ipg).
                    used -= group.itableUnused() / sb.inodesPerBlock();
                }
                metadata.add(group.inodeTable(), group.inodeTable() + used); // range checked by ExtFilesystem
            }
            if (!group.hasFlag(GroupDescriptor.BLOCK_UNINIT) && group.blockBitmap() != 0) {
                metadata.add(group.blockBitmap());
            }
            if (!group.hasFlag(GroupDescriptor.INODE_UNINIT) && group.inodeBitmap() != 0) {
                metadata.add(group.inodeBitmap());
            }
        }
    }

    private void markInode(InodeBlockWalker walker, long ino, Inode inode) throws IOException {
        if (inode.fileAcl() != 0) {
            mark(inode.fileAcl(), "i_file_acl of inode " + ino);
        }
        if (!inode.hasValidBlocks()) {
            return; // devices, fifos, sockets, fast symlinks, inline data
        }
        if (inode.isDirectory() || inode.isSymlink() || ino == sb.journalInum() || ino == USER_QUOTA_INO
                || ino == GROUP_QUOTA_INO || ino == sb.prjQuotaInum() || ino == sb.orphanFileInum()) {
            markBlocks(walker, ino, inode, inode.isDirectory(), true);
        } else if (inode.usesExtents() || inode.blockPointer(Inode.IND_BLOCK) != 0
                || inode.blockPointer(Inode.DIND_BLOCK) != 0 || inode.blockPointer(Inode.TIND_BLOCK) != 0
                || allData) {
            // Other regular files: their mapping blocks, and their data only with -a. This is also how the resize
            // inode (7) brings in the primary reserved GDT blocks (its indirect blocks) but not the backups.
            markBlocks(walker, ino, inode, false, allData);
        }
    }

    /** Marks an inode's mapping blocks and, if {@code withData}, its data blocks (also as directory blocks). */
    private void markBlocks(InodeBlockWalker walker, long ino, Inode inode, boolean directory, boolean withData)
            throws IOException {
        walker.walk(ino, inode, new BlockVisitor() {
            @Override
            public void mappingBlock(long block) {
                metadata.add(block);
            }

            @Override
            public void dataBlocks(long physicalBlock, long count) {
                metadata.add(physicalBlock, physicalBlock + count);
                if (directory) {
                    directories.add(physicalBlock, physicalBlock + count);
                }
            }

            @Override
            public boolean wantsData() {
                return withData;
            }
        });
    }

    private void mark(long block, String field) throws IOException {
        device.checkBlock(block, field);
        metadata.add(block);
    }
}
