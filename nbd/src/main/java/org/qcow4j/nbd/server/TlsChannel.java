package org.qcow4j.nbd.server;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.util.concurrent.locks.ReentrantLock;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLHandshakeException;

/**
 * TLS over a blocking socket channel with the JDK's {@link SSLEngine}, server side. One thread reads (the
 * connection's), others write under {@link #writeLock}: an engine allows one {@code unwrap} and one {@code wrap} at
 * a time, concurrently. What the reader must send itself (a TLS 1.3 KeyUpdate answer) goes out under the same lock.
 */
final class TlsChannel {
    private final SocketChannel socket;
    private final SSLEngine engine;
    private final ReentrantLock writeLock = new ReentrantLock();
    /** Received TLS records not unwrapped yet (write mode). */
    private ByteBuffer netIn;
    /** Unwrapped application bytes not handed out yet (read mode). */
    private ByteBuffer appIn;
    /** Wrapped records to send; used under {@link #writeLock} only. */
    private ByteBuffer netOut;
    private boolean inputClosed;
    /** Set once the handshake ended: from then on, what the engine wants to send the reader sends. */
    private boolean established;

    TlsChannel(SocketChannel socket, SSLEngine engine) {
        this.socket = socket;
        this.engine = engine;
        int packet = engine.getSession().getPacketBufferSize();
        this.netIn = ByteBuffer.allocate(packet);
        this.appIn = ByteBuffer.allocate(engine.getSession().getApplicationBufferSize()).flip();
        this.netOut = ByteBuffer.allocate(packet);
    }

    /** Runs the TLS handshake to its end; a client that fails it (its CA does not know us) throws. */
    void handshake() throws IOException {
        engine.beginHandshake();
        ByteBuffer none = ByteBuffer.allocate(0);
        for (int rounds = 0; rounds < 10_000; rounds++) {
            switch (engine.getHandshakeStatus()) {
                case NEED_WRAP -> wrap(new ByteBuffer[] {none});
                case NEED_UNWRAP, NEED_UNWRAP_AGAIN -> {
                    if (!unwrapOnce()) {
                        throw new SSLHandshakeException("the client closed the connection during the TLS handshake");
                    }
                }
                case NEED_TASK -> runTasks();
                case FINISHED, NOT_HANDSHAKING -> {
                    established = true;
                    return;
                }
                default -> throw new SSLException("handshake status " + engine.getHandshakeStatus());
            }
        }
        throw new SSLHandshakeException("TLS handshake did not end");
    }

    private void runTasks() {
        for (Runnable task = engine.getDelegatedTask(); task != null; task = engine.getDelegatedTask()) {
            task.run();
        }
    }

    /**
     * Unwraps one record into {@link #appIn} (reading from the socket as needed); false at the end of the stream (a
     * close_notify, or the socket's end between records).
     */
    private boolean unwrapOnce() throws IOException {
        while (true) {
            netIn.flip();
            appIn.compact();
            SSLEngineResult r;
            try {
                r = engine.unwrap(netIn, appIn);
            } finally {
                appIn.flip();
                netIn.compact();
            }
            switch (r.getStatus()) {
                case OK -> {
                    if (r.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_TASK) {
                        runTasks();
                    }
                    if (established && engine.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_WRAP) {
                        answerPostHandshake();
                    }
                    return true;
                }
                case CLOSED -> {
                    inputClosed = true;
                    return false;
                }
                case BUFFER_UNDERFLOW -> {
                    if (netIn.position() == netIn.capacity()) { // a record larger than the session said
                        netIn = grow(netIn, engine.getSession().getPacketBufferSize());
                    }
                    if (socket.read(netIn) < 0) {
                        inputClosed = true;
                        if (netIn.position() > 0) {
                            throw new EOFException("unexpected end of stream inside a TLS record");
                        }
                        return false;
                    }
                }
                case BUFFER_OVERFLOW -> appIn = grow(appIn.compact(), engine.getSession().getApplicationBufferSize())
                        .flip();
                default -> throw new SSLException("unwrap: " + r.getStatus());
            }
        }
    }

    /** After the handshake, the engine wants to send something of its own (a KeyUpdate answer): send it. */
    private void answerPostHandshake() throws IOException {
        writeLock.lock();
        try {
            ByteBuffer none = ByteBuffer.allocate(0);
            for (int i = 0; i < 100 && engine.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_WRAP; i++) {
                wrap(new ByteBuffer[] {none});
            }
        } finally {
            writeLock.unlock();
        }
    }

    private static ByteBuffer grow(ByteBuffer b, int atLeast) {
        ByteBuffer n = ByteBuffer.allocate(Math.max(b.capacity() * 2, atLeast));
        b.flip();
        n.put(b);
        return n;
    }

    /** Reads decrypted bytes into {@code dst}: at least one, or -1 at the end of the stream. */
    int read(ByteBuffer dst) throws IOException {
        while (!appIn.hasRemaining()) {
            if (inputClosed || !unwrapOnce()) {
                return -1;
            }
        }
        int n = Math.min(dst.remaining(), appIn.remaining());
        ByteBuffer slice = appIn.slice(appIn.position(), n);
        dst.put(slice);
        appIn.position(appIn.position() + n);
        return n;
    }

    /** Encrypts and sends every byte of {@code buffers}. */
    void write(ByteBuffer[] buffers) throws IOException {
        writeLock.lock();
        try {
            while (remaining(buffers)) {
                wrap(buffers);
            }
        } finally {
            writeLock.unlock();
        }
    }

    private static boolean remaining(ByteBuffer[] buffers) {
        for (ByteBuffer b : buffers) {
            if (b.hasRemaining()) {
                return true;
            }
        }
        return false;
    }

    /** One wrap (a record, or handshake messages), sent at once. */
    private void wrap(ByteBuffer[] src) throws IOException {
        while (true) {
            SSLEngineResult r = engine.wrap(src, netOut);
            switch (r.getStatus()) {
                case OK, CLOSED -> {
                    flush();
                    if (r.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_TASK) {
                        runTasks();
                    }
                    if (r.getStatus() == SSLEngineResult.Status.CLOSED && remaining(src)) {
                        throw new SSLException("TLS connection closed");
                    }
                    return;
                }
                case BUFFER_OVERFLOW -> {
                    flush();
                    if (netOut.capacity() < engine.getSession().getPacketBufferSize()) {
                        netOut = ByteBuffer.allocate(engine.getSession().getPacketBufferSize());
                    }
                }
                default -> throw new SSLException("wrap: " + r.getStatus());
            }
        }
    }

    private void flush() throws IOException {
        netOut.flip();
        try {
            while (netOut.hasRemaining()) {
                socket.write(netOut);
            }
        } finally {
            netOut.clear();
        }
    }

    /** Sends close_notify if no writer is busy (best effort: the socket is closed after it anyway). */
    void closeOutbound() {
        if (!writeLock.tryLock()) {
            return;
        }
        try {
            engine.closeOutbound();
            ByteBuffer none = ByteBuffer.allocate(0);
            for (int i = 0; i < 10 && !engine.isOutboundDone(); i++) {
                wrap(new ByteBuffer[] {none});
            }
        } catch (IOException e) {
            // the peer is gone: nothing to tell it
        } finally {
            writeLock.unlock();
        }
    }
}
