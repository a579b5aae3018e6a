package org.qcow4j.ext;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import org.qcow4j.FormatException;

/**
 * Reads whole filesystem blocks from the file (or device) holding the filesystem, starting {@code byteOffset}
 * bytes in. Every block number is checked against {@code s_blocks_count} and the file's length before it is read,
 * so a bad pointer becomes a {@link FormatException} naming the field that holds it, never a read elsewhere.
 */
final class BlockDevice {
    private final FileChannel channel;
    private final String file;
    private final long byteOffset;
    private final long fileSize;
    private final int blockSize;
    private final long blocksCount;

    BlockDevice(FileChannel channel, String file, long byteOffset, long fileSize, int blockSize, long blocksCount) {
        this.channel = channel;
        this.file = file;
        this.byteOffset = byteOffset;
        this.fileSize = fileSize;
        this.blockSize = blockSize;
        this.blocksCount = blocksCount;
    }

    String file() {
        return file;
    }

    int blockSize() {
        return blockSize;
    }

    long blocksCount() {
        return blocksCount;
    }

    /** Blocks the file actually holds from the filesystem's start: a bound for anything sized from the disk. */
    long blocksInFile() {
        return Math.max(0, fileSize - byteOffset) / blockSize;
    }

    /** Whether {@code block} lies inside the filesystem: {@link #checkBlock} passes. */
    boolean contains(long block) {
        return block >= 0 && block < blocksCount;
    }

    /** Whether {@link #readBlocks} would find blocks {@code [block, block + count)} inside the filesystem and the file. */
    boolean canRead(long block, int count) {
        return contains(block) && contains(block + count - 1) && byteOffset + (block + count) * blockSize <= fileSize;
    }

    /** Fails unless {@code block} lies inside the filesystem. {@code field} names where the number came from. */
    void checkBlock(long block, String field) throws FormatException {
        if (block < 0 || block >= blocksCount) {
            throw new FormatException(file, field, Long.toUnsignedString(block),
                    "outside the filesystem (s_blocks_count " + blocksCount + ")");
        }
    }

    /** Reads {@code count} blocks from {@code block} on into a new buffer, after checking them. */
    ByteBuffer readBlocks(long block, int count, String field) throws IOException {
        return readBlocks(block, count, field, ByteBuffer.allocate(Math.multiplyExact(count, blockSize)));
    }

    /**
     * As {@link #readBlocks(long, int, String)}, into {@code buf} (cleared first; it must hold the blocks): a scan
     * reading table after table reuses one buffer instead of allocating and zeroing a fresh one each time.
     */
    ByteBuffer readBlocks(long block, int count, String field, ByteBuffer buf) throws IOException {
        checkBlock(block, field);
        checkBlock(block + count - 1, field);
        buf.clear().limit(Math.multiplyExact(count, blockSize));
        long end = byteOffset + (block + count) * blockSize;
        if (end > fileSize) {
            throw new FormatException(file, field, block, "block lies past the end of the file (" + fileSize
                    + " bytes, the block ends at " + end + ")");
        }
        readFully(buf, block * blockSize, field);
        return buf.flip();
    }

    /**
     * Reads {@code dst.remaining()} bytes at filesystem byte {@code position}; {@code what} names the data in the
     * message if the file ends first.
     */
    void readFully(ByteBuffer dst, long position, String what) throws IOException {
        readFully(channel, file, fileSize, byteOffset + position, dst, what);
    }

    /** Reads {@code dst.remaining()} bytes at byte {@code position} of the file, which is {@code fileSize} long. */
    static void readFully(FileChannel channel, String file, long fileSize, long position, ByteBuffer dst, String what)
            throws IOException {
        if (position + dst.remaining() > fileSize) {
            throw new FormatException(file, what, "bytes " + position + "-" + (position + dst.remaining() - 1),
                    "past the end of the file (" + fileSize + " bytes)");
        }
        long at = position;
        while (dst.hasRemaining()) {
            int n = channel.read(dst, at);
            if (n < 0) {
                throw new FormatException(file, what, "byte " + at, "the file ended while reading it");
            }
            at += n;
        }
    }
}
