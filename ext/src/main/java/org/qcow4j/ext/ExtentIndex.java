package org.qcow4j.ext;

/**
 * An index entry of an extent tree node of depth > 0 ({@code struct ext3_extent_idx}, 12 bytes, little-endian):
 * the child node covering logical blocks from {@code ei_block} on.
 * <pre>
 * 0x0 ei_block (first logical block)   0x4 ei_leaf (child block, lo)   0x8 ei_leaf_hi (u16)   0xA unused
 * </pre>
 * Decoders of the entry at byte {@code at} of {@code n}.
 */
final class ExtentIndex {
    private ExtentIndex() {
    }

    static long logicalBlock(byte[] n, int at) {
        return Le.u32(n, at);
    }

    static long child(byte[] n, int at) {
        return Le.u32(n, at + 4) | (long) Le.u16(n, at + 8) << 32;
    }
}
