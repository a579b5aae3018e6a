package org.qcow4j.ext;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A leaf entry of an extent tree ({@code struct ext3_extent}, 12 bytes, little-endian): {@code length} logical
 * blocks from {@code logicalBlock} on are stored at {@code physicalBlock} on.
 * <pre>
 * 0x0 ee_block (first logical block)   0x4 ee_len (u16)   0x6 ee_start_hi (u16)   0x8 ee_start (lo)
 * </pre>
 * An {@code ee_len} above 32768 marks an uninitialized (preallocated) extent of {@code ee_len - 32768} blocks;
 * its blocks still belong to the file, and e2image copies them like any others.
 */
record LeafExtent(long logicalBlock, int length, boolean uninitialized, long physicalBlock) {

    /** EXT_INIT_MAX_LEN. */
    static final int INIT_MAX_LEN = 32768;

    static LeafExtent parse(ByteBuffer node, int offset) {
        ByteBuffer b = node.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        int len = Short.toUnsignedInt(b.getShort(offset + 4));
        boolean uninit = len > INIT_MAX_LEN;
        long start = Integer.toUnsignedLong(b.getInt(offset + 8)) | (long) Short.toUnsignedInt(b.getShort(offset + 6)) << 32;
        return new LeafExtent(Integer.toUnsignedLong(b.getInt(offset)), uninit ? len - INIT_MAX_LEN : len, uninit, start);
    }
}
