package org.qcow4j.ext;

import java.nio.ByteBuffer;
import org.qcow4j.FormatException;

/**
 * {@code e2image -s}: hides the names in directory blocks, as e2image's {@code scramble_dir_block} does. Each
 * directory entry ({@code struct ext2_dir_entry_2}, little-endian)
 * <pre>
 * 0x0 inode   0x4 rec_len (u16)   0x6 name_len (u8)   0x7 file_type (u8)   0x8 name[name_len]
 * </pre>
 * keeps its inode, lengths and type; its name becomes {@code name_len} 'A's with a base-26 counter added from the
 * first character on (one counter per name length, so equal-length names stay distinct), and the bytes after the
 * name up to {@code rec_len} are zeroed. "." and ".." are kept. Entries starting in the last 8 bytes are not
 * looked at. As in e2image, this also wipes htree index data and checksum tails, which hide in such slack.
 *
 * <p>The counters run on from block to block, so to match e2image byte for byte a filesystem's directory blocks
 * ({@link ExtFilesystem#directoryBlocks()}) must go through one scrambler in ascending block order. Where e2image
 * patches a corrupt {@code rec_len} or {@code name_len} and goes on, this refuses the block with a
 * {@link FormatException}, before changing any of it.
 */
public final class DirectoryScrambler {
    /** EXT4_MAX_REC_LEN: with 0, the on-disk way to say "the whole block" (64 KiB blocks need it). */
    private static final int MAX_REC_LEN = 0xFFFF;
    private static final int HEADER = 8;

    private final String file;
    private final int blockSize;
    private final int[] nameIds = new int[256];

    /** A scrambler for blocks of {@code blockSize} bytes (1 KiB to 64 KiB, a power of two). */
    public DirectoryScrambler(int blockSize) {
        this("directory block", blockSize);
    }

    /** As {@link #DirectoryScrambler(int)}; {@code file} names the filesystem in error messages. */
    public DirectoryScrambler(String file, int blockSize) {
        if (blockSize < 1024 || blockSize > 65536 || Integer.bitCount(blockSize) != 1) {
            throw new IllegalArgumentException("block size " + blockSize);
        }
        this.file = file;
        this.blockSize = blockSize;
    }

    /**
     * Scrambles the block between {@code block}'s position and limit in place (the buffer's position, limit and
     * byte order are left alone).
     *
     * @throws FormatException          an entry's {@code rec_len} or {@code name_len} does not fit the block
     * @throws IllegalArgumentException {@code block.remaining()} is not the block size
     */
    public void scramble(ByteBuffer block) throws FormatException {
        if (block.remaining() != blockSize) {
            throw new IllegalArgumentException(block.remaining() + " bytes, not one " + blockSize + "-byte block");
        }
        int base = block.position();
        checkEntries(block, base);
        for (int p = 0; p < blockSize - HEADER; p += recLen(block, base + p)) {
            int entry = base + p;
            int recLen = recLen(block, entry);
            int nameLen = Byte.toUnsignedInt(block.get(entry + 6));
            int name = entry + HEADER;
            for (int i = name + nameLen; i < entry + recLen; i++) {
                block.put(i, (byte) 0);
            }
            if (nameLen == 1 && block.get(name) == '.'
                    || nameLen == 2 && block.get(name) == '.' && block.get(name + 1) == '.') {
                continue;
            }
            for (int i = 0; i < nameLen; i++) {
                block.put(name + i, (byte) 'A');
            }
            int id = nameIds[nameLen]++;
            for (int i = 0; i < nameLen && id > 0; i++, id /= 26) {
                block.put(name + i, (byte) ('A' + id % 26));
            }
        }
    }

    /** The checks after which e2image prints "Corrupt directory block", done before anything is changed. */
    private void checkEntries(ByteBuffer block, int base) throws FormatException {
        for (int p = 0; p < blockSize - HEADER;) {
            int recLen = recLen(block, base + p);
            if (recLen < HEADER || recLen % 4 != 0 || p + recLen > blockSize) {
                int raw = rawRecLen(block, base + p);
                throw new FormatException(file, "rec_len of the directory entry at byte " + p, raw,
                        (raw != recLen ? "a length of " + recLen + "; " : "") + "must be a multiple of 4 from 8 to the "
                                + (blockSize - p) + " bytes left in the " + blockSize + "-byte block");
            }
            int nameLen = Byte.toUnsignedInt(block.get(base + p + 6));
            if (nameLen + HEADER > recLen) {
                throw new FormatException(file, "name_len of the directory entry at byte " + p, nameLen,
                        "longer than the entry (rec_len " + recLen + ")");
            }
            p += recLen;
        }
    }

    /** The entry's length as ext2fs_get_rec_len decodes it: 0 and 65535 mean the block size, and the two low
     *  bits (always 0 in a length) carry bits 16-17 for blocks over 64 KiB. */
    private int recLen(ByteBuffer block, int entry) {
        int raw = rawRecLen(block, entry);
        if (raw == MAX_REC_LEN || raw == 0) {
            return blockSize;
        }
        return (raw & 0xFFFC) | (raw & 3) << 16;
    }

    private static int rawRecLen(ByteBuffer block, int entry) {
        return Byte.toUnsignedInt(block.get(entry + 4)) | Byte.toUnsignedInt(block.get(entry + 5)) << 8;
    }
}
