package org.qcow4j.ext;

import org.qcow4j.FormatException;

/**
 * The 12-byte header of an extent tree node ({@code struct ext3_extent_header}, little-endian), at the start of
 * the inode's i_block (the root, 60 bytes) or of a tree block. It is followed by {@code eh_entries} 12-byte
 * entries: {@link ExtentIndex}es when {@code eh_depth > 0}, {@link LeafExtent}s when it is 0.
 * <pre>
 * 0x0 eh_magic (u16 0xF30A)   0x2 eh_entries (u16)   0x4 eh_max (u16)   0x6 eh_depth (u16)   0x8 eh_generation
 * </pre>
 * Decoders of the node at byte {@code at} of {@code n}.
 */
final class ExtentHeader {
    static final int SIZE = 12;
    static final int ENTRY_SIZE = 12;
    static final int MAGIC = 0xF30A;
    /** The kernel's EXT4_MAX_EXTENT_DEPTH: 4 index levels above the leaves cover 2^32 blocks with room to spare. */
    static final int MAX_DEPTH = 5;

    private ExtentHeader() {
    }

    static int magic(byte[] n, int at) {
        return Le.u16(n, at);
    }

    static int entries(byte[] n, int at) {
        return Le.u16(n, at + 2);
    }

    static int max(byte[] n, int at) {
        return Le.u16(n, at + 4);
    }

    static int depth(byte[] n, int at) {
        return Le.u16(n, at + 6);
    }

    /** Whether {@link #verify} passes: the check alone, so the caller names the node only when it fails. */
    static boolean isValid(byte[] n, int at, int nodeSize) {
        int max = max(n, at);
        int fits = (nodeSize - SIZE) / ENTRY_SIZE;
        return magic(n, at) == MAGIC && entries(n, at) <= max && max <= fits && max >= fits - 2;
    }

    /**
     * ext2fs_extent_header_verify: the magic, entries within eh_max, and eh_max what a node of {@code nodeSize}
     * bytes holds (or up to two entries fewer, room e2fsprogs keeps for a checksum tail).
     *
     * @param what names the node in messages, e.g. "extent tree root of inode 12"
     */
    static void verify(String file, String what, byte[] n, int at, int nodeSize) throws FormatException {
        int magic = magic(n, at);
        int entries = entries(n, at);
        int max = max(n, at);
        if (magic != MAGIC) {
            throw new FormatException(file, "eh_magic in the " + what, FormatException.hex(magic),
                    "not an extent tree node (expected 0xf30a)");
        }
        if (entries > max) {
            throw new FormatException(file, "eh_entries in the " + what, entries, "more than eh_max " + max);
        }
        int fits = (nodeSize - SIZE) / ENTRY_SIZE;
        if (max > fits || max < fits - 2) {
            throw new FormatException(file, "eh_max in the " + what, max,
                    "a " + nodeSize + "-byte node holds " + fits + " entries");
        }
    }

    /** Byte offset of entry {@code i} in the node. */
    static int entryOffset(int i) {
        return SIZE + i * ENTRY_SIZE;
    }
}
