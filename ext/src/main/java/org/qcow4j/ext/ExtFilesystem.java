package org.qcow4j.ext;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import org.qcow4j.FormatException;

/**
 * A read-only ext2/3/4 filesystem, opened the way e2fsprogs' {@code e2image} opens it, to list the blocks
 * {@code e2image -Q} (or {@code -r}) copies. Nothing is written and no checksum is verified (e2image ignores them
 * too). Damaged or hostile metadata is refused with a {@link FormatException} naming the field and its value;
 * every block number is checked before it is read, and every walk is bounded by the size of the file.
 *
 * <p>The channel is not closed here and must stay open while the object is used. Not thread-safe.
 */
public final class ExtFilesystem {
    private final BlockDevice device;
    private final Superblock sb;
    private final List<GroupDescriptor> groups;
    private final long backupSuperblock;
    private MetadataScan.Result metadataOnly;
    private MetadataScan.Result withData;

    private ExtFilesystem(BlockDevice device, Superblock sb, List<GroupDescriptor> groups, long backupSuperblock) {
        this.device = device;
        this.sb = sb;
        this.groups = groups;
        this.backupSuperblock = backupSuperblock;
    }

    /**
     * Reads and validates the superblock and group descriptors of the filesystem at {@code byteOffset} in
     * {@code dev}.
     *
     * @param name       the file's name, for messages
     * @param superblock 0 for the primary superblock; else e2image's {@code -b SUPERBLOCK}: the block number of a
     *                   backup superblock, in units of {@code blockSize}
     * @param blockSize  0, or e2image's {@code -B BLOCKSIZE} (required with {@code superblock}); the filesystem's
     *                   block size must match it
     * @throws FormatException                     the metadata is malformed
     * @throws org.qcow4j.UnsupportedFeatureException the filesystem uses a feature that changes the layout in a way
     *                                             not handled here (e.g. an external journal device)
     */
    public static ExtFilesystem open(FileChannel dev, String name, long byteOffset, long superblock, int blockSize)
            throws IOException {
        if (byteOffset < 0 || superblock < 0 || blockSize < 0) {
            throw new IllegalArgumentException("negative offset, superblock or block size");
        }
        if (superblock != 0 && blockSize == 0) {
            throw new IllegalArgumentException("a backup superblock (-b) needs the block size (-B)");
        }
        if (superblock != 0 && superblock > (Long.MAX_VALUE - byteOffset) / blockSize) {
            throw new IllegalArgumentException("superblock " + superblock + " * block size " + blockSize
                    + " is past any file");
        }
        long fileSize = dev.size();
        long superblockOffset = superblock == 0 ? Superblock.PRIMARY_OFFSET : superblock * blockSize;
        ByteBuffer raw = ByteBuffer.allocate(Superblock.SIZE);
        BlockDevice.readFully(dev, name, fileSize, byteOffset + superblockOffset, raw,
                superblock == 0 ? "superblock" : "superblock at block " + superblock);
        Superblock sb = Superblock.parse(raw.flip());
        sb.validate(name, blockSize);
        BlockDevice device = new BlockDevice(dev, name, byteOffset, fileSize, sb.blockSize(), sb.blocksCount());
        List<GroupDescriptor> groups = readGroupDescriptors(device, sb, superblock);
        validateGroups(device, sb, groups);
        return new ExtFilesystem(device, sb, groups, superblock);
    }

    public int blockSize() {
        return sb.blockSize();
    }

    public long blocksCount() {
        return sb.blocksCount();
    }

    /**
     * The blocks {@code e2image -Q} ({@code allData = false}) or {@code -Qa} ({@code allData = true}) writes, before
     * it skips the all-zero ones, as sorted ranges: the primary superblock and group descriptors (and those of a
     * {@code -b} backup), the MMP block, bitmaps and the used part of each inode table, every xattr block, all
     * blocks of directories, slow symlinks, the journal, the quota and orphan files, and the block-mapping blocks
     * (indirect blocks, extent tree nodes) of other files, whose data only comes with {@code allData}.
     */
    public BlockRanges metadataBlocks(boolean allData) throws IOException {
        return scan(allData).metadata();
    }

    /** Directory data blocks (blockcnt &ge; 0 of directory inodes): the blocks {@code e2image -s} scrambles. */
    public BlockRanges directoryBlocks() throws IOException {
        return scan(withData != null).directories();
    }

    private MetadataScan.Result scan(boolean allData) throws IOException {
        if (allData) {
            if (withData == null) {
                withData = MetadataScan.run(device, sb, groups, backupSuperblock, true);
            }
            return withData;
        }
        if (metadataOnly == null) {
            metadataOnly = MetadataScan.run(device, sb, groups, backupSuperblock, false);
        }
        return metadataOnly;
    }

    /**
     * Reads the descriptor table that belongs to the superblock read, as ext2fs_open2 does: the blocks after it
     * (below s_first_meta_bg), then one block per meta group with meta_bg. From a backup superblock with group
     * descriptor checksums, every group is then taken as initialized, since the backup's flags are stale.
     */
    private static List<GroupDescriptor> readGroupDescriptors(BlockDevice device, Superblock sb, long superblock)
            throws IOException {
        long descriptorBlocks = sb.descriptorBlocks();
        if (descriptorBlocks > device.blocksInFile()) {
            throw new FormatException(device.file(), "s_blocks_count", sb.blocksCount(), sb.groupCount()
                    + " groups need " + descriptorBlocks + " group descriptor blocks, more than the "
                    + device.blocksInFile() + " blocks in the file");
        }
        if (sb.groupCount() > Integer.MAX_VALUE - 8) {
            throw new FormatException(device.file(), "s_blocks_count", sb.blocksCount(),
                    sb.groupCount() + " block groups; at most 2^31 are supported");
        }
        long groupBlock = superblock != 0 ? superblock : sb.firstDataBlock();
        // With 1 KiB blocks and s_first_data_block 0 (bigalloc), block 0 is the boot block: the table starts at 2.
        long groupZeroAdjust = superblock == 0 && groupBlock == 0 && sb.blockSize() == 1024 ? 1 : 0;
        long firstMetaBg = sb.hasIncompat(Superblock.INCOMPAT_META_BG)
                ? Math.min(sb.firstMetaBg(), descriptorBlocks) : descriptorBlocks;
        int perBlock = sb.descriptorsPerBlock();
        int groupCount = (int) sb.groupCount();
        List<GroupDescriptor> groups = new ArrayList<>(groupCount);
        for (long i = 0; i < descriptorBlocks; i++) {
            long block = i < firstMetaBg ? groupBlock + groupZeroAdjust + 1 + i : sb.descriptorBlock(groupBlock, i);
            ByteBuffer table = device.readBlocks(block, 1, "group descriptor block " + i);
            for (int j = 0; j < perBlock && groups.size() < groupCount; j++) {
                GroupDescriptor group = GroupDescriptor.parse(table, j * sb.descriptorSize(), sb.is64bit());
                if (superblock > 1 && sb.hasGroupDescriptorChecksums()) {
                    group = group.withoutUninit();
                }
                groups.add(group);
            }
        }
        return Collections.unmodifiableList(groups);
    }

    /**
     * What e2image needs of each descriptor before anything is marked or read: bitmaps inside the filesystem, the
     * inode table whole inside it (e2fsprogs' EXT2_ET_GDESC_BAD_INODE_TABLE), bg_itable_unused no more than a
     * group's inodes, and no two inode tables overlapping, which bounds the inode scan by the file's size.
     */
    private static void validateGroups(BlockDevice device, Superblock sb, List<GroupDescriptor> groups)
            throws FormatException {
        long tableBlocks = sb.inodeBlocksPerGroup();
        long[] tables = new long[groups.size()];
        int tableCount = 0;
        for (int g = 0; g < groups.size(); g++) {
            GroupDescriptor group = groups.get(g);
            if (group.blockBitmap() != 0) {
                device.checkBlock(group.blockBitmap(), "bg_block_bitmap of group " + g);
            }
            if (group.inodeBitmap() != 0) {
                device.checkBlock(group.inodeBitmap(), "bg_inode_bitmap of group " + g);
            }
            long table = group.inodeTable();
            if (table != 0) {
                if (table < sb.firstDataBlock() || table > sb.blocksCount() - tableBlocks) {
                    throw new FormatException(device.file(), "bg_inode_table of group " + g, table,
                            "the " + tableBlocks + "-block inode table lies outside the filesystem (blocks "
                                    + sb.firstDataBlock() + " to " + (sb.blocksCount() - 1) + ")");
                }
                tables[tableCount++] = table;
            }
            if (sb.hasGroupDescriptorChecksums() && group.itableUnused() > sb.inodesPerGroup()) {
                throw new FormatException(device.file(), "bg_itable_unused of group " + g, group.itableUnused(),
                        "more than the group's " + sb.inodesPerGroup() + " inodes");
            }
        }
        Arrays.sort(tables, 0, tableCount);
        for (int i = 1; i < tableCount; i++) {
            if (tables[i] < tables[i - 1] + tableBlocks) {
                throw new FormatException(device.file(), "bg_inode_table of group " + groupOf(groups, tables[i], true),
                        tables[i], "overlaps the inode table of group " + groupOf(groups, tables[i - 1], false)
                                + " at block " + tables[i - 1] + " (" + tableBlocks + " blocks each)");
            }
        }
    }

    /** The last (or first) group whose inode table starts at {@code inodeTable}, for messages. */
    private static int groupOf(List<GroupDescriptor> groups, long inodeTable, boolean last) {
        for (int i = 0; i < groups.size(); i++) {
            int g = last ? groups.size() - 1 - i : i;
            if (groups.get(g).inodeTable() == inodeTable) {
                return g;
            }
        }
        return -1;
    }
}
