package org.qcow4j.ext;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.qcow4j.FormatException;

/**
 * The 12-byte header of an extent tree node ({@code struct ext3_extent_header}, little-endian), at the start of
 * the inode's i_block (the root, 60 bytes) or of a tree block. It is followed by {@code eh_entries} 12-byte
 * entries: {@link ExtentIndex}es when {@code eh_depth > 0}, {@link LeafExtent}s when it is 0.
 * <pre>
 * 0x0 eh_magic (u16 0xF30A)   0x2 eh_entries (u16)   0x4 eh_max (u16)   0x6 eh_depth (u16)   0x8 eh_generation
 * </pre>
 */
record ExtentHeader(int magic, int entries, int max, int depth) {

    static final int SIZE = 12;
    static final int ENTRY_SIZE = 12;
    static final int MAGIC = 0xF30A;
    /** The kernel's EXT4_MAX_EXTENT_DEPTH: 4 index levels above the leaves cover 2^32 blocks with room to spare. */
    static final int MAX_DEPTH = 5;

    static ExtentHeader parse(ByteBuffer node) {
        ByteBuffer b = node.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        return new ExtentHeader(Short.toUnsignedInt(b.getShort(0)), Short.toUnsignedInt(b.getShort(2)),
                Short.toUnsignedInt(b.getShort(4)), Short.toUnsignedInt(b.getShort(6)));
    }

    /**
     * ext2fs_extent_header_verify: the magic, entries within eh_max, and eh_max what a node of {@code nodeSize}
     * bytes holds (or up to two entries fewer, room e2fsprogs keeps for a checksum tail).
     *
     * @param what names the node in messages, e.g. "extent header of inode 12"
     */
    void verify(String file, String what, int nodeSize) throws FormatException {
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
