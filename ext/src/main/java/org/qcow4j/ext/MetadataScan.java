package org.qcow4j.ext;

import java.io.IOException;
import java.util.List;

/**
 * The block selection of e2image's {@code write_raw_image_file} (shared by {@code -r} and {@code -Q}):
 * {@code mark_table_blocks} for the fixed metadata, then one inode scan marking what each inode needs. The result
 * is e2image's {@code meta_block_map} (and, for {@code -s}, its {@code scramble_block_map}) before the all-zero
 * blocks are dropped at write time.
 */
final class MetadataScan implements InodeScanner.InodeConsumer {
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
    private final InodeBlockWalker walker;
    // Read once, not once an inode.
    private final boolean is64bit;
    private final long journalIno;
    private final long projectQuotaIno;
    private final long orphanFileIno;
    private final boolean hurd;

    record Result(BlockRanges metadata, BlockRanges directories) {
    }

    private MetadataScan(BlockDevice device, Superblock sb, List<GroupDescriptor> groups, long backupSuperblock,
            boolean allData) {
        this.device = device;
        this.sb = sb;
        this.groups = groups;
        this.backupSuperblock = backupSuperblock;
        this.allData = allData;
        this.walker = new InodeBlockWalker(device, sb, metadata, directories);
        this.is64bit = sb.is64bit();
        this.journalIno = sb.journalInum();
        this.projectQuotaIno = sb.prjQuotaInum();
        this.orphanFileIno = sb.orphanFileInum();
        this.hurd = sb.creatorOs() == Superblock.OS_HURD;
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
        InodeScanner.scan(device, sb, groups, scan);
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

    /** What e2image marks for the inode {@code ino} in use, at byte {@code o} of {@code t}. */
    @Override
    public void accept(long ino, byte[] t, int o) throws IOException {
        long fileAcl = Inode.fileAcl(t, o, is64bit);
        if (fileAcl != 0) {
            if (!device.contains(fileAcl)) {
                device.checkBlock(fileAcl, "i_file_acl of inode " + ino);
            }
            metadata.add(fileAcl);
        }
        int mode = Inode.mode(t, o);
        int flags = Inode.flags(t, o);
        if (!Inode.hasValidBlocks(t, o, mode, flags, fileAcl)) {
            return; // devices, fifos, sockets, fast symlinks, inline data
        }
        int type = mode & Inode.S_IFMT;
        if (type == Inode.S_IFDIR || type == Inode.S_IFLNK || ino == journalIno || ino == USER_QUOTA_INO
                || ino == GROUP_QUOTA_INO || ino == projectQuotaIno || ino == orphanFileIno) {
            // Directories, slow symlinks, the journal, quota and orphan files: all their blocks.
            walker.walk(ino, t, o, true, type == Inode.S_IFDIR);
        } else if ((flags & Inode.EXTENTS_FL) != 0) {
            // Most inodes: a regular file whose extent tree is all in the inode (a sound root of depth 0) has no
            // mapping block, so without -a there is nothing to mark and no need to walk it.
            int root = o + Inode.BLOCK_AREA_OFFSET;
            if (allData || hurd || ExtentHeader.depth(t, root) != 0
                    || !ExtentHeader.isValid(t, root, Inode.BLOCK_AREA_SIZE)) {
                walker.walk(ino, t, o, allData, false);
            }
        } else if (Inode.blockPointer(t, o, Inode.IND_BLOCK) != 0 || Inode.blockPointer(t, o, Inode.DIND_BLOCK) != 0
                || Inode.blockPointer(t, o, Inode.TIND_BLOCK) != 0 || allData) {
            // Other regular files: their mapping blocks, and their data only with -a. This is also how the resize
            // inode (7) brings in the primary reserved GDT blocks (its indirect blocks) but not the backups.
            walker.walk(ino, t, o, allData, false);
        }
    }

    private void mark(long block, String field) throws IOException {
        device.checkBlock(block, field);
        metadata.add(block);
    }
}
