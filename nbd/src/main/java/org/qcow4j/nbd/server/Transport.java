package org.qcow4j.nbd.server;

import java.io.Closeable;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

/**
 * One client's byte stream: a blocking socket channel. Reads come from the connection's own thread only; writes are
 * serialised by {@link Replies}, so one reply's bytes are never interleaved with another's.
 */
class Transport implements Closeable {
    /** The most bytes handed to the socket at once: the JDK copies heap buffers through a per-thread direct buffer. */
    private static final int WRITE_SLICE = 1 << 20;

    private final SocketChannel channel;

    Transport(SocketChannel channel) {
        this.channel = channel;
    }

    /** Fills {@code dst}; an end of stream before the first byte returns false, after it throws. */
    boolean readFullyOrEof(ByteBuffer dst) throws IOException {
        boolean first = true;
        while (dst.hasRemaining()) {
            int n = channel.read(dst);
            if (n < 0) {
                if (first) {
                    return false;
                }
                throw new EOFException("unexpected end of stream");
            }
            first = false;
        }
        return true;
    }

    /** Fills {@code dst} or throws {@link EOFException}. */
    void readFully(ByteBuffer dst) throws IOException {
        if (!readFullyOrEof(dst) && dst.capacity() > 0) {
            throw new EOFException("unexpected end of stream");
        }
    }

    /** Writes every byte of {@code buffers}, in order. */
    void write(ByteBuffer... buffers) throws IOException {
        long total = 0;
        for (ByteBuffer b : buffers) {
            total += b.remaining();
        }
        if (total <= WRITE_SLICE) {
            while (total > 0) {
                total -= channel.write(buffers);
            }
            return;
        }
        for (ByteBuffer b : buffers) {
            while (b.hasRemaining()) {
                if (b.remaining() > WRITE_SLICE && !b.isDirect()) {
                    ByteBuffer slice = b.slice(b.position(), WRITE_SLICE);
                    while (slice.hasRemaining()) {
                        channel.write(slice);
                    }
                    b.position(b.position() + WRITE_SLICE);
                } else {
                    channel.write(b);
                }
            }
        }
    }

    /** Ends the input side: a read blocked on it returns the end of the stream; replies can still be sent. */
    void shutdownInput() {
        try {
            channel.shutdownInput();
        } catch (IOException e) {
            // not connected any more: nothing to wake
        }
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
