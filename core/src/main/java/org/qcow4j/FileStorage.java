package org.qcow4j;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A read-only image file with positional reads (no shared file position, so threads never contend).
 * Reads past the end of the file return zeros, as QEMU's block layer does.
 */
final class FileStorage implements AutoCloseable {
    private final Path path;
    private final FileChannel channel;
    private final long length;

    private FileStorage(Path path, FileChannel channel) throws IOException {
        this.path = path;
        this.channel = channel;
        this.length = channel.size();
    }

    static FileStorage openReadOnly(Path path) throws IOException {
        return new FileStorage(path, FileChannel.open(path, StandardOpenOption.READ));
    }

    Path path() {
        return path;
    }

    long length() {
        return length;
    }

    /** Fills {@code dst} from {@code pos}; the part past end of file is zero-filled. */
    void readFully(ByteBuffer dst, long pos) throws IOException {
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

    /** Reads {@code len} bytes at {@code pos} into a new heap buffer; {@code len} must already be bounded. */
    ByteBuffer read(long pos, int len) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(len);
        readFully(b, pos);
        return b.flip();
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
