package org.qcow4j.nbd.server;

import java.io.Closeable;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import javax.net.ssl.SSLEngine;
import org.qcow4j.nbd.TlsCredentials;

/**
 * One client's byte stream: a blocking socket channel, and after STARTTLS the TLS session over it
 * ({@link TlsChannel}). Reads come from the connection's own thread only; writes are serialised by {@link Replies},
 * so one reply's bytes are never interleaved with another's.
 */
class Transport implements Closeable {
    /** The most bytes handed to the socket at once: the JDK copies heap buffers through a per-thread direct buffer. */
    private static final int WRITE_SLICE = 1 << 20;

    private final SocketChannel channel;
    /** The TLS session once STARTTLS succeeded; set by the reading thread before any reply is written. */
    private volatile TlsChannel tls;

    Transport(SocketChannel channel) {
        this.channel = channel;
    }

    /** Whether the stream is encrypted now. */
    boolean tls() {
        return tls != null;
    }

    /**
     * Runs a server-side TLS handshake on the socket; from then on every byte goes through it. A client that fails
     * the handshake (it does not trust our certificate, or has no certificate of its own when one is required)
     * throws here; the connection is then dropped.
     */
    void startTls(TlsCredentials credentials) throws IOException {
        SSLEngine engine = credentials.context().createSSLEngine();
        engine.setUseClientMode(false);
        engine.setNeedClientAuth(credentials.verifyPeer());
        TlsChannel t = new TlsChannel(channel, engine);
        t.handshake();
        tls = t;
    }

    private int read(ByteBuffer dst) throws IOException {
        TlsChannel t = tls;
        return t == null ? channel.read(dst) : t.read(dst);
    }

    /** Fills {@code dst}; an end of stream before the first byte returns false, after it throws. */
    boolean readFullyOrEof(ByteBuffer dst) throws IOException {
        boolean first = true;
        while (dst.hasRemaining()) {
            int n = read(dst);
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
        TlsChannel t = tls;
        if (t != null) {
            t.write(buffers); // records of at most 16 KiB: no large slices reach the socket
            return;
        }
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
        TlsChannel t = tls;
        if (t != null && channel.isOpen()) {
            t.closeOutbound();
        }
        channel.close();
    }
}
