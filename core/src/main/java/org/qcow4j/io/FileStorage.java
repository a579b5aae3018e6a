package org.qcow4j.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;

/**
 * An image file with positional reads and writes (no shared file position, so threads never contend).
 * Reads past the end of the file return zeros, as QEMU's block layer does. Opened through {@link OpenFiles}, with the
 * locks its {@link Access} takes.
 */
public final class FileStorage implements AutoCloseable {
    private final Path path;
    private final OpenFile file;
    private final FileChannel channel;
    private volatile long length;

    private FileStorage(Path path, OpenFile file) throws IOException {
        this.path = path;
        this.file = file;
        this.channel = file.channel();
        this.length = channel.size();
    }

    /**
     * Opens {@code path} as {@code access} says.
     *
     * @throws org.qcow4j.ImageLockedException when another process holds the image in a way {@code access} cannot
     *         share
     */
    public static FileStorage open(Path path, Access access) throws IOException {
        OpenFile f = OpenFiles.open(path, access, path.toString());
        try {
            return new FileStorage(path, f);
        } catch (IOException | RuntimeException e) {
            f.close();
            throw e;
        }
    }

    public Path path() {
        return path;
    }

    public long length() {
        return length;
    }

    /** Fills {@code dst} from {@code pos}; the part past end of file is zero-filled. */
    public void readFully(ByteBuffer dst, long pos) throws IOException {
        while (dst.hasRemaining()) {
            if (pos >= length) {
                Zeros.fill(dst);
                return;
            }
            int n = channel.read(dst, pos);
            if (n < 0) {
                Zeros.fill(dst);
                return;
            }
            pos += n;
        }
    }

    /** Writes all of {@code src} at {@code pos}, growing the file if need be. */
    public void writeFully(ByteBuffer src, long pos) throws IOException {
        long end = pos + src.remaining();
        while (src.hasRemaining()) {
            pos += channel.write(src, pos);
        }
        if (end > length) {
            synchronized (this) {
                length = Math.max(length, end);
            }
        }
    }

    /** Makes the file at least {@code size} bytes long (the new part reads as zeros). */
    public void extendTo(long size) throws IOException {
        if (size > length && size > channel.size()) {
            writeFully(ByteBuffer.allocate(1), size - 1);
        }
    }

    /** Forces written data (and the file's length) to the disk. */
    public void force() throws IOException {
        channel.force(true);
    }

    /** Reads {@code len} bytes at {@code pos} into a new heap buffer; {@code len} must already be bounded. */
    public ByteBuffer read(long pos, int len) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(len);
        readFully(b, pos);
        return b.flip();
    }

    @Override
    public void close() throws IOException {
        file.close();
    }
}
