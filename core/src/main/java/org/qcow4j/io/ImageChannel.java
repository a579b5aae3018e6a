package org.qcow4j.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SeekableByteChannel;
import org.qcow4j.WritableImage;

/**
 * A {@link SeekableByteChannel} over a writable image's guest bytes. Reads stop at the end of the disk (-1 there);
 * writes past the end fail, as the disk does not grow by writing; {@code truncate} shrinks it. Closing the channel
 * does not close the image. Not safe for concurrent use (it has a position); the image underneath is.
 */
public final class ImageChannel implements SeekableByteChannel {
    private final WritableImage image;
    private long position;
    private boolean open = true;

    public ImageChannel(WritableImage image) {
        this.image = image;
    }

    @Override
    public int read(ByteBuffer dst) throws IOException {
        ensureOpen();
        long left = image.size() - position;
        if (left <= 0) {
            return dst.hasRemaining() ? -1 : 0;
        }
        int n = (int) Math.min(dst.remaining(), left);
        image.read(dst.slice(dst.position(), n), position);
        dst.position(dst.position() + n);
        position += n;
        return n;
    }

    @Override
    public int write(ByteBuffer src) throws IOException {
        ensureOpen();
        int n = src.remaining();
        image.write(src, position);
        position += n;
        return n;
    }

    @Override
    public long position() throws IOException {
        ensureOpen();
        return position;
    }

    @Override
    public SeekableByteChannel position(long newPosition) throws IOException {
        ensureOpen();
        if (newPosition < 0) {
            throw new IllegalArgumentException("negative position " + newPosition);
        }
        position = newPosition;
        return this;
    }

    @Override
    public long size() throws IOException {
        ensureOpen();
        return image.size();
    }

    @Override
    public SeekableByteChannel truncate(long size) throws IOException {
        ensureOpen();
        if (size < 0) {
            throw new IllegalArgumentException("negative size " + size);
        }
        if (size < image.size()) {
            image.resize(size);
        }
        position = Math.min(position, size);
        return this;
    }

    @Override
    public boolean isOpen() {
        return open;
    }

    @Override
    public void close() {
        open = false;
    }

    private void ensureOpen() throws ClosedChannelException {
        if (!open) {
            throw new ClosedChannelException();
        }
    }
}
