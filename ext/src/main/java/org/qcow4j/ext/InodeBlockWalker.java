package org.qcow4j.ext;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.qcow4j.FormatException;

/**
 * Lists an inode's blocks as e2fsprogs' {@code ext2fs_block_iterate3(..., BLOCK_FLAG_READ_ONLY, ...)} does, for
 * both block-mapping schemes: the indirect one (12 direct pointers, then single, double and triple indirect
 * blocks of 32-bit pointers, 0 meaning a hole) and the extent tree.
 *
 * <p>Hostile input cannot make it loop or run long: every mapping block must lie inside the filesystem and the
 * file, may be walked only once per filesystem ({@link VisitedBlocks}; sound filesystems never share one), and
 * extent trees are at most {@value ExtentHeader#MAX_DEPTH} deep with each node exactly one level below its parent.
 * So the walk reads each block of the file at most once.
 */
final class InodeBlockWalker {
    private final BlockDevice device;
    private final Superblock superblock;
    private final VisitedBlocks visited = new VisitedBlocks();

    InodeBlockWalker(BlockDevice device, Superblock superblock) {
        this.device = device;
        this.superblock = superblock;
    }

    /**
     * Reports every block of inode {@code ino} to {@code visitor}; data blocks only if it wants them, in which case
     * they are checked against the filesystem's size too.
     */
    void walk(long ino, Inode inode, BlockVisitor visitor) throws IOException {
        if ((inode.flags() & Inode.INLINE_DATA_FL) != 0) {
            return; // the block iterator refuses these; the caller never asks (they have no valid blocks)
        }
        if (superblock.creatorOs() == Superblock.OS_HURD && inode.translator() != 0) {
            // Hurd's translator block is iterated first, with blockcnt BLOCK_COUNT_TRANSLATOR (-4).
            device.checkBlock(inode.translator(), "i_translator of inode " + ino);
            visitor.mappingBlock(inode.translator());
        }
        if (inode.usesExtents()) {
            walkExtentTree(ino, inode, visitor);
        } else {
            walkIndirect(ino, inode, visitor);
        }
    }

    // ---------------------------------------------------------------------------------------------- extents

    private void walkExtentTree(long ino, Inode inode, BlockVisitor visitor) throws IOException {
        ByteBuffer root = inode.blockArea();
        if (isAllZero(root)) {
            return; // ext2fs_extent_open2 takes an all-zero i_block for an empty tree
        }
        String what = "extent tree root of inode " + ino;
        ExtentHeader header = ExtentHeader.parse(root);
        header.verify(device.file(), what, Inode.BLOCK_AREA_SIZE);
        if (header.depth() > ExtentHeader.MAX_DEPTH) {
            throw new FormatException(device.file(), "eh_depth in the " + what, header.depth(),
                    "deeper than ext4's limit of " + ExtentHeader.MAX_DEPTH);
        }
        new ExtentWalk(ino, visitor).node(root, header, what);
    }

    /** One inode's walk, depth first and in entry order, like e2fsprogs' extent handle with EXTENT_NEXT. */
    private final class ExtentWalk {
        private final long ino;
        private final BlockVisitor visitor;
        /** The block iterator's {@code blockcnt}: the logical block after the last extent reported. */
        private long nextLogical;

        ExtentWalk(long ino, BlockVisitor visitor) {
            this.ino = ino;
            this.visitor = visitor;
        }

        void node(ByteBuffer node, ExtentHeader header, String what) throws IOException {
            if (header.depth() == 0) {
                leaves(node, header, what);
                return;
            }
            for (int i = 0; i < header.entries(); i++) {
                ExtentIndex index = ExtentIndex.parse(node, ExtentHeader.entryOffset(i));
                String field = "ei_leaf of index " + i + " in the " + what;
                long child = index.child();
                device.checkBlock(child, field);
                if (!visited.add(child)) {
                    throw new FormatException(device.file(), field, child,
                            "extent tree block reached twice (a loop or a cross-linked tree)");
                }
                // e2fsprogs reports an index entry's child (blockcnt -1) before descending into it.
                visitor.mappingBlock(child);
                ByteBuffer childNode = device.readBlocks(child, 1, field).order(ByteOrder.LITTLE_ENDIAN);
                String childWhat = "extent block " + child + " of inode " + ino;
                ExtentHeader childHeader = ExtentHeader.parse(childNode);
                childHeader.verify(device.file(), childWhat, device.blockSize());
                if (childHeader.depth() != header.depth() - 1) {
                    throw new FormatException(device.file(), "eh_depth in the " + childWhat, childHeader.depth(),
                            "expected " + (header.depth() - 1) + " below a node of depth " + header.depth()
                                    + " (an extent tree loop or a corrupt tree)");
                }
                node(childNode, childHeader, childWhat);
            }
        }

        /**
         * Leaf extents, with the block iterator's handling of extents that overlap what came before: one that
         * ends at or before {@code blockcnt} is skipped, and so is the entry after it in the same leaf (e2fsprogs
         * has already fetched that one as "next" and fetches again); one that starts before {@code blockcnt} is
         * reported from {@code blockcnt - start} blocks further on, for its full length.
         */
        private void leaves(ByteBuffer node, ExtentHeader header, String what) throws IOException {
            if (!visitor.wantsData()) {
                return;
            }
            boolean skipNext = false;
            for (int i = 0; i < header.entries(); i++) {
                if (skipNext) {
                    skipNext = false;
                    continue;
                }
                LeafExtent extent = LeafExtent.parse(node, ExtentHeader.entryOffset(i));
                long end = extent.logicalBlock() + extent.length();
                if (end <= nextLogical) {
                    skipNext = true;
                    continue;
                }
                long skipped = Math.max(0, nextLogical - extent.logicalBlock());
                long first = extent.physicalBlock() + skipped;
                if (extent.length() > 0) {
                    String field = "ee_start of extent " + i + " in the " + what;
                    device.checkBlock(first, field);
                    device.checkBlock(first + extent.length() - 1, field);
                    visitor.dataBlocks(first, extent.length());
                }
                nextLogical = end;
            }
        }
    }

    // ---------------------------------------------------------------------------------------------- indirect

    private static final String[] LEVEL_NAMES = {"", "indirect", "double indirect", "triple indirect"};

    private void walkIndirect(long ino, Inode inode, BlockVisitor visitor) throws IOException {
        DataRuns runs = new DataRuns(visitor);
        if (visitor.wantsData()) {
            for (int i = 0; i < Inode.DIRECT_BLOCKS; i++) {
                long block = inode.blockPointer(i);
                if (block != 0) {
                    device.checkBlock(block, "i_block[" + i + "] of inode " + ino);
                    runs.add(block);
                }
            }
            runs.flush();
        }
        for (int level = 1; level <= 3; level++) {
            int slot = Inode.IND_BLOCK + level - 1;
            long block = inode.blockPointer(slot);
            if (block != 0) {
                indirect(block, level, "i_block[" + slot + "] of inode " + ino, ino, visitor, runs);
            }
        }
        runs.flush();
    }

    /** An indirect block of the given level (1 = its entries are data blocks), reached through {@code field}. */
    private void indirect(long block, int level, String field, long ino, BlockVisitor visitor, DataRuns runs)
            throws IOException {
        if (block < superblock.firstDataBlock() || block >= device.blocksCount()) {
            // e2fsprogs' EXT2_ET_BAD_IND_BLOCK / BAD_DIND_BLOCK / BAD_TIND_BLOCK
            throw new FormatException(device.file(), field, block, "the " + LEVEL_NAMES[level]
                    + " block lies outside the filesystem (blocks " + superblock.firstDataBlock() + " to "
                    + (device.blocksCount() - 1) + ")");
        }
        if (block >= device.blocksInFile()) {
            throw new FormatException(device.file(), field, block, "the " + LEVEL_NAMES[level]
                    + " block lies past the end of the file (" + device.blocksInFile() + " blocks)");
        }
        if (!visited.add(block)) {
            throw new FormatException(device.file(), field, block, "the " + LEVEL_NAMES[level]
                    + " block is reached twice (an indirect block loop or a cross-linked file)");
        }
        visitor.mappingBlock(block);
        if (level == 1 && !visitor.wantsData()) {
            return; // its entries are all data
        }
        ByteBuffer entries = device.readBlocks(block, 1, field).order(ByteOrder.LITTLE_ENDIAN);
        int limit = device.blockSize() / 4;
        for (int i = 0; i < limit; i++) {
            long entry = Integer.toUnsignedLong(entries.getInt(i * 4));
            if (entry == 0) {
                continue; // a hole
            }
            if (level == 1) {
                if (entry >= device.blocksCount()) {
                    device.checkBlock(entry, entryName(i, block, level, ino));
                }
                runs.add(entry);
            } else {
                runs.flush();
                indirect(entry, level - 1, entryName(i, block, level, ino), ino, visitor, runs);
            }
        }
    }

    private static String entryName(int i, long block, int level, long ino) {
        return "entry " + i + " of " + LEVEL_NAMES[level] + " block " + block + " (inode " + ino + ")";
    }

    /** Coalesces consecutive data blocks into runs, so a contiguous file is one call, not one per block. */
    private static final class DataRuns {
        private final BlockVisitor visitor;
        private long start = -1;
        private long count;

        DataRuns(BlockVisitor visitor) {
            this.visitor = visitor;
        }

        void add(long block) throws IOException {
            if (count > 0 && block == start + count) {
                count++;
                return;
            }
            flush();
            start = block;
            count = 1;
        }

        void flush() throws IOException {
            if (count > 0) {
                visitor.dataBlocks(start, count);
                count = 0;
            }
        }
    }

    private static boolean isAllZero(ByteBuffer b) {
        for (int i = b.position(); i < b.limit(); i++) {
            if (b.get(i) != 0) {
                return false;
            }
        }
        return true;
    }
}
