package org.qcow4j.ext;

import java.io.IOException;

/**
 * Receives an inode's blocks from {@link InodeBlockWalker}, split the way e2fsprogs' block iterator splits them
 * with its {@code blockcnt} argument: mapping blocks (blockcnt &lt; 0: indirect blocks, extent tree nodes, the
 * Hurd translator) and data blocks (blockcnt &ge; 0, the file's contents; for a directory, its entries).
 */
interface BlockVisitor {
    void mappingBlock(long block) throws IOException;

    /** {@code count} data blocks stored contiguously from {@code physicalBlock} on. */
    void dataBlocks(long physicalBlock, long count) throws IOException;

    /**
     * False if data blocks are of no interest (e2image -Q without -a, for regular files): the walker then
     * neither reports nor checks them, and skips reading blocks that hold nothing but data pointers.
     */
    default boolean wantsData() {
        return true;
    }
}
