package org.qcow4j.ext;

/**
 * A leaf entry of an extent tree ({@code struct ext3_extent}, 12 bytes, little-endian): {@code length} logical
 * blocks from {@code logicalBlock} on are stored at {@code physicalBlock} on.
 * <pre>
 * 0x0 ee_block (first logical block)   0x4 ee_len (u16)   0x6 ee_start_hi (u16)   0x8 ee_start (lo)
 * </pre>
 * An {@code ee_len} above 32768 marks an uninitialized (preallocated) extent of {@code ee_len - 32768} blocks;
 * its blocks still belong to the file, and e2image copies them like any others. Decoders of the entry at byte
 * {@code at} of {@code n}.
 */
final class LeafExtent {
    /** EXT_INIT_MAX_LEN. */
    static final int INIT_MAX_LEN = 32768;

    private LeafExtent() {
    }

    static long logicalBlock(byte[] n, int at) {
        return Le.u32(n, at);
    }

    /** The number of blocks, initialized or not. */
    static int length(byte[] n, int at) {
        int len = Le.u16(n, at + 4);
        return len > INIT_MAX_LEN ? len - INIT_MAX_LEN : len;
    }

    static long physicalBlock(byte[] n, int at) {
        return Le.u32(n, at + 8) | (long) Le.u16(n, at + 6) << 32;
    }
}
