package org.qcow4j.nbd.server;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.locks.ReentrantLock;
import org.qcow4j.nbd.wire.Protocol;

/**
 * The replies of one connection in the transmission phase: simple replies, or structured chunks once negotiated.
 * Each reply (or chunk) goes out whole under one lock, so replies to requests answered at once never interleave.
 * A failed write closes the connection: the stream is then out of step and cannot be trusted.
 */
final class Replies {
    private final Transport transport;
    private final boolean structured;
    private final ReentrantLock lock = new ReentrantLock();
    private volatile boolean broken;

    Replies(Transport transport, boolean structured) {
        this.transport = transport;
        this.structured = structured;
    }

    boolean structured() {
        return structured;
    }

    boolean broken() {
        return broken;
    }

    private void send(ByteBuffer... buffers) throws IOException {
        lock.lock();
        try {
            if (broken) {
                throw new IOException("connection closed");
            }
            transport.write(buffers);
        } catch (IOException e) {
            broken = true;
            transport.close();
            throw e;
        } finally {
            lock.unlock();
        }
    }

    /** A simple reply: magic, error, cookie, then {@code data} (a successful READ's bytes) if given. */
    void simple(long cookie, int error, ByteBuffer data) throws IOException {
        ByteBuffer h = ByteBuffer.allocate(16).putInt(Protocol.SIMPLE_REPLY_MAGIC).putInt(error).putLong(cookie).flip();
        if (data == null) {
            send(h);
        } else {
            send(h, data);
        }
    }

    private static ByteBuffer chunkHeader(int extra, int flags, int type, long cookie, int length) {
        return ByteBuffer.allocate(20 + extra).putInt(Protocol.STRUCTURED_REPLY_MAGIC).putShort((short) flags)
                .putShort((short) type).putLong(cookie).putInt(length);
    }

    /** The reply to a request that carries no data: success or {@code error} with QEMU's {@code message}. */
    void generic(long cookie, int error, String message) throws IOException {
        if (structured && error != 0) {
            error(cookie, error, message);
        } else if (structured) {
            done(cookie);
        } else {
            simple(cookie, error, null);
        }
    }

    /** NONE with DONE: a structured success without data. */
    void done(long cookie) throws IOException {
        send(chunkHeader(0, Protocol.REPLY_FLAG_DONE, Protocol.REPLY_TYPE_NONE, cookie, 0).flip());
    }

    /** An ERROR chunk (always the last): the error, then a message for the client's log. */
    void error(long cookie, int error, String message) throws IOException {
        byte[] msg = message == null ? new byte[0] : message.getBytes(StandardCharsets.UTF_8);
        int len = Math.min(msg.length, Protocol.MAX_STRING_SIZE);
        ByteBuffer h = chunkHeader(6, Protocol.REPLY_FLAG_DONE, Protocol.REPLY_TYPE_ERROR, cookie, 6 + len)
                .putInt(error).putShort((short) len).flip();
        send(h, ByteBuffer.wrap(msg, 0, len));
    }

    /** An OFFSET_DATA chunk. */
    void data(long cookie, long offset, ByteBuffer data, boolean last) throws IOException {
        ByteBuffer h = chunkHeader(8, last ? Protocol.REPLY_FLAG_DONE : 0, Protocol.REPLY_TYPE_OFFSET_DATA, cookie,
                8 + data.remaining()).putLong(offset).flip();
        send(h, data);
    }

    /** An OFFSET_HOLE chunk: {@code length} bytes at {@code offset} read as zeros. */
    void hole(long cookie, long offset, int length, boolean last) throws IOException {
        send(chunkHeader(12, last ? Protocol.REPLY_FLAG_DONE : 0, Protocol.REPLY_TYPE_OFFSET_HOLE, cookie, 12)
                .putLong(offset).putInt(length).flip());
    }

    /** A BLOCK_STATUS chunk: {@code count} (length, flags) pairs of {@code extents} for context {@code id}. */
    void blockStatus(long cookie, int contextId, int[] extents, int count, boolean last) throws IOException {
        ByteBuffer b = chunkHeader(4 + 8 * count, last ? Protocol.REPLY_FLAG_DONE : 0, Protocol.REPLY_TYPE_BLOCK_STATUS,
                cookie, 4 + 8 * count).putInt(contextId);
        for (int i = 0; i < 2 * count; i++) {
            b.putInt(extents[i]);
        }
        send(b.flip());
    }
}
