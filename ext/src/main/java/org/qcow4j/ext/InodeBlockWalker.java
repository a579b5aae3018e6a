package org.qcow4j.ext;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.qcow4j.FormatException;

/**
 * Lists an inode's blocks as e2fsprogs' {@code ext2fs_block_iterate3(..., BLOCK_FLAG_READ_ONLY, ...)} does, for
 * both block-mapping schemes: the indirect one (12 direct pointers, then single, double and triple indirect
 * blocks of 32-bit pointers, 0 meaning a hole) and the extent tree. The blocks go to {@code metadata}: mapping
 * blocks (blockcnt &lt; 0: indirect blocks, extent tree nodes, the Hurd translator) always, data blocks
 * (blockcnt &ge; 0) only if the walk wants them, and then a directory's to {@code directories} too.
 *
 * <p>Hostile input cannot make it loop or run long: every mapping block must lie inside the filesystem and the
 * file, may be walked only once per filesystem ({@link VisitedBlocks}; sound filesystems never share one), and
 * extent trees are at most {@value ExtentHeader#MAX_DEPTH} deep with each node exactly one level below its parent.
 * So the walk reads each block of the file at most once.
 *
 * <p>It runs on every inode in use, so its common path (an extent tree held whole in the inode) allocates nothing
 * and names nothing: the text naming a bad field is only built when it is thrown. Not thread-safe.
 */
final class InodeBlockWalker {
    private static final String[] LEVEL_NAMES = {"", "indirect", "double indirect", "triple indirect"};
    private static final String[] BLOCK_NAMES = {"", "indirect block", "double indirect block", "triple indirect block"};
    private static final long ROOT = -1;

    private final BlockDevice device;
    private final String file;
    private final int blockSize;
    private final long blocksCount;
    private final long firstDataBlock;
    private final boolean hurd;
    private final BlockRangesBuilder metadata;
    private final BlockRangesBuilder directories;
    private final VisitedBlocks visited = new VisitedBlocks();
    /** A walk holds at most one node per level of a tree below the root, one indirect block per level: the
     *  buffers they are read into, made on first use. */
    private final ByteBuffer[] extentNodes = new ByteBuffer[ExtentHeader.MAX_DEPTH];
    private final ByteBuffer[] indirectBlocks = new ByteBuffer[4];

    // The current walk.
    private long ino;
    private boolean wantsData;
    private boolean directory;
    /** The extent iterator's {@code blockcnt}: the logical block after the last extent reported. */
    private long nextLogical;
    /** Data blocks of the indirect scheme, coalesced into a run so a contiguous file is one add, not one a block. */
    private long runStart;
    private long runCount;

    InodeBlockWalker(BlockDevice device, Superblock superblock, BlockRangesBuilder metadata,
            BlockRangesBuilder directories) {
        this.device = device;
        this.file = device.file();
        this.blockSize = device.blockSize();
        this.blocksCount = device.blocksCount();
        this.firstDataBlock = superblock.firstDataBlock();
        this.hurd = superblock.creatorOs() == Superblock.OS_HURD;
        this.metadata = metadata;
        this.directories = directories;
    }

    /**
     * Adds the blocks of inode {@code ino}, at byte {@code o} of {@code t}; its data blocks only if
     * {@code wantsData}, in which case they are checked against the filesystem's size too, and are directory blocks
     * as well if {@code directory}.
     */
    void walk(long ino, byte[] t, int o, boolean wantsData, boolean directory) throws IOException {
        int flags = Inode.flags(t, o);
        if ((flags & Inode.INLINE_DATA_FL) != 0) {
            return; // the block iterator refuses these; the caller never asks (they have no valid blocks)
        }
        this.ino = ino;
        this.wantsData = wantsData;
        this.directory = directory;
        if (hurd) {
            long translator = Inode.translator(t, o);
            if (translator != 0) {
                // Hurd's translator block is iterated first, with blockcnt BLOCK_COUNT_TRANSLATOR (-4).
                device.checkBlock(translator, "i_translator of inode " + ino);
                metadata.add(translator);
            }
        }
        if ((flags & Inode.EXTENTS_FL) != 0) {
            walkExtentTree(t, o + Inode.BLOCK_AREA_OFFSET);
        } else {
            walkIndirect(t, o);
        }
    }

    private void data(long first, long count) {
        metadata.add(first, first + count);
        if (directory) {
            directories.add(first, first + count);
        }
    }

    // ---------------------------------------------------------------------------------------------- extents

    private void walkExtentTree(byte[] t, int root) throws IOException {
        if (isAllZero(t, root, root + Inode.BLOCK_AREA_SIZE)) {
            return; // ext2fs_extent_open2 takes an all-zero i_block for an empty tree
        }
        if (!ExtentHeader.isValid(t, root, Inode.BLOCK_AREA_SIZE)) {
            ExtentHeader.verify(file, what(ROOT), t, root, Inode.BLOCK_AREA_SIZE);
        }
        int depth = ExtentHeader.depth(t, root);
        if (depth > ExtentHeader.MAX_DEPTH) {
            throw new FormatException(file, "eh_depth in the " + what(ROOT), depth,
                    "deeper than ext4's limit of " + ExtentHeader.MAX_DEPTH);
        }
        nextLogical = 0;
        if (depth == 0) {
            leaves(t, root, ROOT);
        } else {
            node(t, root, depth, ROOT);
        }
    }

    /** Names the node at {@code block} ({@link #ROOT}: the one in the inode) for messages. */
    private String what(long block) {
        return block == ROOT ? "extent tree root of inode " + ino : "extent block " + block + " of inode " + ino;
    }

    /**
     * An index node of {@code depth > 0} at byte {@code at} of {@code n}, walked depth first and in entry order,
     * like e2fsprogs' extent handle with EXTENT_NEXT.
     */
    private void node(byte[] n, int at, int depth, long block) throws IOException {
        int entries = ExtentHeader.entries(n, at);
        for (int i = 0; i < entries; i++) {
            long child = ExtentIndex.child(n, at + ExtentHeader.entryOffset(i));
            if (!device.contains(child)) {
                device.checkBlock(child, indexField(i, block));
            }
            if (!visited.add(child)) {
                throw new FormatException(file, indexField(i, block), child,
                        "extent tree block reached twice (a loop or a cross-linked tree)");
            }
            // e2fsprogs reports an index entry's child (blockcnt -1) before descending into it.
            metadata.add(child);
            ByteBuffer buf = extentNodes[depth - 1];
            if (buf == null) {
                buf = ByteBuffer.allocate(blockSize);
                extentNodes[depth - 1] = buf;
            }
            // the field is named only if the read is refused (the file may still end early: shrunk meanwhile)
            String field = device.canRead(child, 1) ? "extent tree block" : indexField(i, block);
            byte[] c = device.readBlocks(child, 1, field, buf).array();
            if (!ExtentHeader.isValid(c, 0, blockSize)) {
                ExtentHeader.verify(file, what(child), c, 0, blockSize);
            }
            int childDepth = ExtentHeader.depth(c, 0);
            if (childDepth != depth - 1) {
                throw new FormatException(file, "eh_depth in the " + what(child), childDepth,
                        "expected " + (depth - 1) + " below a node of depth " + depth
                                + " (an extent tree loop or a corrupt tree)");
            }
            if (childDepth == 0) {
                leaves(c, 0, child);
            } else {
                node(c, 0, childDepth, child);
            }
        }
    }

    private String indexField(int i, long block) {
        return "ei_leaf of index " + i + " in the " + what(block);
    }

    /**
     * Leaf extents, with the block iterator's handling of extents that overlap what came before: one that
     * ends at or before {@code blockcnt} is skipped, and so is the entry after it in the same leaf (e2fsprogs
     * has already fetched that one as "next" and fetches again); one that starts before {@code blockcnt} is
     * reported from {@code blockcnt - start} blocks further on, for its full length.
     */
    private void leaves(byte[] n, int at, long block) throws IOException {
        if (!wantsData) {
            return;
        }
        int entries = ExtentHeader.entries(n, at);
        boolean skipNext = false;
        for (int i = 0; i < entries; i++) {
            if (skipNext) {
                skipNext = false;
                continue;
            }
            int e = at + ExtentHeader.entryOffset(i);
            long logical = LeafExtent.logicalBlock(n, e);
            int length = LeafExtent.length(n, e);
            long end = logical + length;
            if (end <= nextLogical) {
                skipNext = true;
                continue;
            }
            long first = LeafExtent.physicalBlock(n, e) + Math.max(0, nextLogical - logical);
            if (length > 0) {
                long last = first + length - 1;
                if (!device.contains(first) || !device.contains(last)) {
                    String field = "ee_start of extent " + i + " in the " + what(block);
                    device.checkBlock(first, field);
                    device.checkBlock(last, field);
                }
                data(first, length);
            }
            nextLogical = end;
        }
    }

    // ---------------------------------------------------------------------------------------------- indirect

    private void walkIndirect(byte[] t, int o) throws IOException {
        runCount = 0;
        if (wantsData) {
            for (int i = 0; i < Inode.DIRECT_BLOCKS; i++) {
                long block = Inode.blockPointer(t, o, i);
                if (block != 0) {
                    if (!device.contains(block)) {
                        device.checkBlock(block, "i_block[" + i + "] of inode " + ino);
                    }
                    addRun(block);
                }
            }
            flushRun();
        }
        for (int level = 1; level <= 3; level++) {
            int slot = Inode.IND_BLOCK + level - 1;
            long block = Inode.blockPointer(t, o, slot);
            if (block != 0) {
                indirect(block, level, slot, ROOT, 0);
            }
        }
        flushRun();
    }

    /**
     * An indirect block of the given level (1 = its entries are data blocks), reached through entry {@code index}
     * of the indirect block {@code parent} of level {@code parentLevel}, or ({@code parent} {@link #ROOT}) through
     * the inode's i_block[{@code index}].
     */
    private void indirect(long block, int level, int index, long parent, int parentLevel) throws IOException {
        if (block < firstDataBlock || block >= blocksCount) {
            // e2fsprogs' EXT2_ET_BAD_IND_BLOCK / BAD_DIND_BLOCK / BAD_TIND_BLOCK
            throw new FormatException(file, indirectField(index, parent, parentLevel), block, "the "
                    + LEVEL_NAMES[level] + " block lies outside the filesystem (blocks " + firstDataBlock + " to "
                    + (blocksCount - 1) + ")");
        }
        if (block >= device.blocksInFile()) {
            throw new FormatException(file, indirectField(index, parent, parentLevel), block, "the "
                    + LEVEL_NAMES[level] + " block lies past the end of the file (" + device.blocksInFile()
                    + " blocks)");
        }
        if (!visited.add(block)) {
            throw new FormatException(file, indirectField(index, parent, parentLevel), block, "the "
                    + LEVEL_NAMES[level] + " block is reached twice (an indirect block loop or a cross-linked file)");
        }
        metadata.add(block);
        if (level == 1 && !wantsData) {
            return; // its entries are all data
        }
        ByteBuffer buf = indirectBlocks[level];
        if (buf == null) {
            buf = ByteBuffer.allocate(blockSize);
            indirectBlocks[level] = buf;
        }
        String field = device.canRead(block, 1) ? BLOCK_NAMES[level] : indirectField(index, parent, parentLevel);
        byte[] entries = device.readBlocks(block, 1, field, buf).array();
        int limit = blockSize / 4;
        for (int i = 0; i < limit; i++) {
            long entry = Le.u32(entries, i * 4);
            if (entry == 0) {
                continue; // a hole
            }
            if (level == 1) {
                if (entry >= blocksCount) {
                    device.checkBlock(entry, indirectField(i, block, level));
                }
                addRun(entry);
            } else {
                flushRun();
                indirect(entry, level - 1, i, block, level);
            }
        }
    }

    private String indirectField(int index, long parent, int parentLevel) {
        return parent == ROOT ? "i_block[" + index + "] of inode " + ino
                : "entry " + index + " of " + LEVEL_NAMES[parentLevel] + " block " + parent + " (inode " + ino + ")";
    }

    private void addRun(long block) {
        if (runCount > 0 && block == runStart + runCount) {
            runCount++;
            return;
        }
        flushRun();
        runStart = block;
        runCount = 1;
    }

    private void flushRun() {
        if (runCount > 0) {
            data(runStart, runCount);
            runCount = 0;
        }
    }

    private static boolean isAllZero(byte[] b, int from, int to) {
        for (int i = from; i < to; i++) {
            if (b[i] != 0) {
                return false;
            }
        }
        return true;
    }
}
