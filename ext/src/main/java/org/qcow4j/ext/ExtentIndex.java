package org.qcow4j.ext;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * An index entry of an extent tree node of depth > 0 ({@code struct ext3_extent_idx}, 12 bytes, little-endian):
 * the child node covering logical blocks from {@code ei_block} on.
 * <pre>
 * 0x0 ei_block (first logical block)   0x4 ei_leaf (child block, lo)   0x8 ei_leaf_hi (u16)   0xA unused
 * </pre>
 */
record ExtentIndex(long logicalBlock, long child) {

    static ExtentIndex parse(ByteBuffer node, int offset) {
        ByteBuffer b = node.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        return new ExtentIndex(Integer.toUnsignedLong(b.getInt(offset)),
                Integer.toUnsignedLong(b.getInt(offset + 4)) | (long) Short.toUnsignedInt(b.getShort(offset + 8)) << 32);
    }
}
