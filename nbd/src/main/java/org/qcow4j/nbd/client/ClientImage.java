package org.qcow4j.nbd.client;

import java.io.EOFException;
import java.io.IOException;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SeekableByteChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import org.qcow4j.AbstractDiskImage;
import org.qcow4j.Extent;
import org.qcow4j.Images;
import org.qcow4j.RefusedRequestException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WritableImage;
import org.qcow4j.WriteRefusedException;
import org.qcow4j.nbd.wire.Protocol;

/**
 * An NBD export opened as a raw image: the client side of the fixed-newstyle protocol as QEMU 7.2's nbd block driver
 * speaks it (NBD_OPT_GO, falling back to NBD_OPT_EXPORT_NAME; simple replies), one request at a time. Everything the
 * server sends is bounded before it is believed (magics, lengths, handles, the export size); the handshake and each
 * request have a deadline, past which the connection is closed and the operation fails.
 */
public final class ClientImage extends AbstractDiskImage implements WritableImage {
    /** The most chunks one reply may have. */
    static final int MAX_CHUNKS = 1 << 20;

    /** The longest option reply believed. */
    static final int MAX_OPTION_REPLY = 4 * 1024 * 1024;
    /** The most option replies one option may get. */
    static final int MAX_OPTION_REPLIES = 4096;

    private static final ScheduledExecutorService WATCHDOG = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "nbd-client-deadline");
        t.setDaemon(true);
        return t;
    });

    private final String server;
    private final SocketChannel channel;
    private final int transmissionFlags;
    private final boolean readOnly;
    private final boolean writethrough;
    private final long requestTimeoutMillis;
    private final boolean structured;
    /** The meta context negotiated for block status, or -1 (every range is data then). */
    private final long metaContext;
    private long nextHandle = 1;
    private volatile boolean timedOut;
    private boolean closed;
    private boolean broken;

    private ClientImage(String filename, String format, String server, SocketChannel channel, long[] negotiated,
            boolean readOnly, boolean writethrough, long requestTimeoutMillis) {
        super(filename, format, negotiated[0]);
        int transmissionFlags = (int) negotiated[1];
        this.structured = negotiated[2] != 0;
        this.metaContext = negotiated[3];
        this.server = server;
        this.channel = channel;
        this.transmissionFlags = transmissionFlags;
        this.readOnly = readOnly || (transmissionFlags & Protocol.FLAG_READ_ONLY) != 0;
        this.writethrough = writethrough;
        this.requestTimeoutMillis = requestTimeoutMillis;
    }

    /**
     * Connects to {@code address}, negotiates {@code export} and returns it as an image named {@code filename} whose
     * format is called {@code format} ("raw", or "nbd" for QEMU's protocol driver opened as the image);
     * {@code server} names the server in messages. {@code readOnly}: writes are refused here (a read-only export
     * refuses them anyway); {@code writethrough}: each write is sent with FUA (or followed by a flush).
     */
    public static ClientImage connect(String filename, String format, String serverName, SocketAddress address,
            String export, String metaContext, boolean metaContextRequired, boolean readOnly, boolean writethrough, long handshakeTimeoutMillis,
            long requestTimeoutMillis) throws IOException {
        String server = serverName;
        byte[] name = export.getBytes(StandardCharsets.UTF_8);
        if (name.length > Protocol.MAX_STRING_SIZE) {
            throw new IOException("NBD server '" + server + "': export name longer than " + Protocol.MAX_STRING_SIZE + " bytes");
        }
        SocketChannel ch = address instanceof UnixDomainSocketAddress ? SocketChannel.open(StandardProtocolFamily.UNIX)
                : SocketChannel.open();
        boolean[] expired = new boolean[1];
        ScheduledFuture<?> deadline = WATCHDOG.schedule(() -> {
            synchronized (expired) {
                expired[0] = true;
            }
            closeQuietly(ch);
        }, handshakeTimeoutMillis, TimeUnit.MILLISECONDS);
        try {
            long[] sizeFlags = handshake(ch, server, address, name, metaContext);
            if (metaContextRequired && sizeFlags[3] < 0) {
                abortQuietly(ch);
                throw new IOException("requested x-dirty-bitmap " + metaContext + " not found");
            }
            deadline.cancel(false);
            synchronized (expired) {
                if (expired[0]) {
                    throw new IOException("NBD server '" + server + "': no handshake within " + handshakeTimeoutMillis
                            + " ms");
                }
            }
            return new ClientImage(filename, format, "NBD server '" + server + "'", ch, sizeFlags, readOnly,
                    writethrough, requestTimeoutMillis);
        } catch (IOException | RuntimeException e) {
            deadline.cancel(false);
            closeQuietly(ch);
            synchronized (expired) {
                if (expired[0]) {
                    throw new IOException("NBD server '" + server + "': no handshake within " + handshakeTimeoutMillis
                            + " ms", e);
                }
            }
            throw e;
        }
    }

    /** {size, transmission flags, structured replies (1/0), meta context id (-1: none)}. */
    private static long[] handshake(SocketChannel ch, String server, SocketAddress address, byte[] name,
            String metaContext) throws IOException {
        try {
            ch.connect(address);
        } catch (IOException e) {
            throw new IOException("Failed to connect to '" + server + "': " + reason(e), e);
        }
        server = "NBD server '" + server + "'";
        ByteBuffer b = read(ch, server, 16, "greeting");
        long magic = b.getLong();
        if (magic != Protocol.NBDMAGIC) {
            throw new IOException(server + ": bad greeting magic 0x" + Long.toHexString(magic) + " (not an NBD server)");
        }
        long opt = b.getLong();
        if (opt == Protocol.OLDSTYLE_MAGIC) {
            throw new IOException(server + ": oldstyle NBD servers are not supported");
        }
        if (opt != Protocol.IHAVEOPT) {
            throw new IOException(server + ": bad newstyle magic 0x" + Long.toHexString(opt));
        }
        int globalFlags = read(ch, server, 2, "handshake flags").getShort() & 0xffff;
        boolean fixed = (globalFlags & Protocol.FLAG_FIXED_NEWSTYLE) != 0;
        boolean noZeroes = (globalFlags & Protocol.FLAG_NO_ZEROES) != 0;
        int clientFlags = (fixed ? Protocol.FLAG_FIXED_NEWSTYLE : 0) | (noZeroes ? Protocol.FLAG_NO_ZEROES : 0);
        write(ch, ByteBuffer.allocate(4).putInt(clientFlags).flip());
        if (fixed) {
            boolean structured = optStructuredReply(ch, server);
            long context = -1;
            if (structured && metaContext != null) {
                context = optSetMetaContext(ch, server, name, metaContext);
            }
            long[] go = optGo(ch, server, name);
            if (go != null) {
                return new long[] {go[0], go[1], structured ? 1 : 0, context};
            }
            long[] en = exportName(ch, server, name, noZeroes);
            return new long[] {en[0], en[1], structured ? 1 : 0, -1}; // meta contexts only go with NBD_OPT_GO
        }
        return exportName(ch, server, name, noZeroes);
    }

    /** NBD_OPT_EXPORT_NAME: {size, flags, 0, -1}; the server drops the connection if it has no such export. */
    private static long[] exportName(SocketChannel ch, String server, byte[] name, boolean noZeroes)
            throws IOException {
        ByteBuffer req = ByteBuffer.allocate(16 + name.length);
        req.putLong(Protocol.IHAVEOPT).putInt(Protocol.OPT_EXPORT_NAME).putInt(name.length).put(name).flip();
        write(ch, req);
        ByteBuffer r = read(ch, server, 10, "export information (the server may not know the export)");
        long size = r.getLong();
        int flags = r.getShort() & 0xffff;
        if (!noZeroes) {
            read(ch, server, 124, "padding");
        }
        return new long[] {checkSize(server, size), flags, 0, -1};
    }

    /** One option reply: {option, type} and its data (at most {@link #MAX_OPTION_REPLY} bytes). */
    private static ByteBuffer optionReply(SocketChannel ch, String server, int expected, int[] typeOut)
            throws IOException {
        ByteBuffer h = read(ch, server, 20, "option reply");
        long magic = h.getLong();
        if (magic != Protocol.OPTION_REPLY_MAGIC) {
            throw new IOException(server + ": bad option reply magic 0x" + Long.toHexString(magic));
        }
        int option = h.getInt();
        int type = h.getInt();
        long length = h.getInt() & 0xffffffffL;
        if (option != expected) {
            throw new IOException(server + ": option reply for option " + option + ", expected " + expected);
        }
        if (length > MAX_OPTION_REPLY) {
            throw new IOException(server + ": option reply length " + length + " over " + MAX_OPTION_REPLY);
        }
        typeOut[0] = type;
        return read(ch, server, (int) length, "option reply data");
    }

    /** NBD_OPT_STRUCTURED_REPLY: whether the server agreed. */
    private static boolean optStructuredReply(SocketChannel ch, String server) throws IOException {
        write(ch, ByteBuffer.allocate(16).putLong(Protocol.IHAVEOPT).putInt(Protocol.OPT_STRUCTURED_REPLY).putInt(0).flip());
        int[] type = new int[1];
        ByteBuffer data = optionReply(ch, server, Protocol.OPT_STRUCTURED_REPLY, type);
        if (type[0] == Protocol.REP_ACK) {
            if (data.remaining() != 0) {
                throw new IOException(server + ": ACK reply with length " + data.remaining());
            }
            return true;
        }
        if ((type[0] & 0x80000000) != 0) {
            return false;
        }
        throw new IOException(server + ": unexpected reply type " + type[0] + " to NBD_OPT_STRUCTURED_REPLY");
    }

    /** NBD_OPT_SET_META_CONTEXT with one query: the context's id, or -1 when the server has no such context. */
    private static long optSetMetaContext(SocketChannel ch, String server, byte[] name, String context)
            throws IOException {
        byte[] q = context.getBytes(StandardCharsets.UTF_8);
        if (q.length > Protocol.MAX_STRING_SIZE) {
            throw new IOException(server + ": meta context name longer than " + Protocol.MAX_STRING_SIZE + " bytes");
        }
        int len = 4 + name.length + 4 + 4 + q.length;
        ByteBuffer req = ByteBuffer.allocate(16 + len);
        req.putLong(Protocol.IHAVEOPT).putInt(Protocol.OPT_SET_META_CONTEXT).putInt(len).putInt(name.length).put(name).putInt(1)
                .putInt(q.length).put(q);
        write(ch, req.flip());
        long id = -1;
        int[] type = new int[1];
        for (int n = 0; n < MAX_OPTION_REPLIES; n++) {
            ByteBuffer data = optionReply(ch, server, Protocol.OPT_SET_META_CONTEXT, type);
            if (type[0] == Protocol.REP_ACK) {
                return id;
            }
            if ((type[0] & 0x80000000) != 0) {
                return -1; // no meta contexts here (QEMU goes on without them)
            }
            if (type[0] != Protocol.REP_META_CONTEXT) {
                continue;
            }
            if (data.remaining() < 4) {
                throw new IOException(server + ": NBD_REP_META_CONTEXT of length " + data.remaining());
            }
            long got = data.getInt() & 0xffffffffL;
            String answered = StandardCharsets.UTF_8.decode(data).toString();
            if (!answered.equals(context) || id >= 0) {
                throw new IOException(server + ": unexpected meta context '" + printable(answered) + "'");
            }
            id = got;
        }
        throw new IOException(server + ": more than " + MAX_OPTION_REPLIES + " replies to NBD_OPT_SET_META_CONTEXT");
    }

    /** NBD_OPT_GO: {size, flags}, or null when the server does not know the option. */
    private static long[] optGo(SocketChannel ch, String server, byte[] name) throws IOException {
        ByteBuffer req = ByteBuffer.allocate(16 + 4 + name.length + 2);
        req.putLong(Protocol.IHAVEOPT).putInt(Protocol.OPT_GO).putInt(4 + name.length + 2).putInt(name.length).put(name).putShort((short) 0);
        write(ch, req.flip());
        long size = -1;
        int flags = 0;
        int[] t = new int[1];
        for (int n = 0; n < MAX_OPTION_REPLIES; n++) {
            ByteBuffer data = optionReply(ch, server, Protocol.OPT_GO, t);
            int type = t[0];
            long length = data.remaining();
            if (type == Protocol.REP_ACK) {
                if (length != 0) {
                    throw new IOException(server + ": ACK reply with length " + length);
                }
                if (size < 0) {
                    throw new IOException(server + ": NBD_OPT_GO acknowledged without NBD_INFO_EXPORT");
                }
                return new long[] {size, flags};
            }
            if (type == Protocol.REP_ERR_UNSUP) {
                return null;
            }
            if ((type & 0x80000000) != 0) {
                String text = printable(StandardCharsets.UTF_8.decode(data).toString());
                abort(ch);
                throw new IOException("Requested export not available" + (text.isEmpty() ? "" : "\nserver reported: " + text));
            }
            if (type == Protocol.REP_INFO) {
                if (length < 2) {
                    throw new IOException(server + ": NBD_REP_INFO of length " + length);
                }
                int info = data.getShort() & 0xffff;
                if (info == Protocol.INFO_EXPORT) {
                    if (length != 12) {
                        throw new IOException(server + ": NBD_INFO_EXPORT of length " + length + ", expected 12");
                    }
                    size = checkSize(server, data.getLong());
                    flags = data.getShort() & 0xffff;
                }
                continue; // other infos are not asked for; ignore them
            }
            // an unknown non-error reply: ignored, as QEMU ignores it
        }
        throw new IOException(server + ": more than " + MAX_OPTION_REPLIES + " replies to NBD_OPT_GO");
    }

    private static void abortQuietly(SocketChannel ch) {
        abort(ch);
    }

    /** NBD_OPT_ABORT, best effort: the server then ends the connection without complaint. */
    private static void abort(SocketChannel ch) {
        try {
            write(ch, ByteBuffer.allocate(16).putLong(Protocol.IHAVEOPT).putInt(Protocol.OPT_ABORT).putInt(0).flip());
        } catch (IOException ignored) {
            // the server is gone already
        }
    }

    /** A server's message for one line: control characters shown as '?', at most 4096 characters. */
    private static String printable(String s) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < s.length() && i < 4096; i++) {
            char c = s.charAt(i);
            b.append(c < 0x20 || c == 0x7f ? '?' : c);
        }
        return b.toString();
    }

    private static long checkSize(String server, long size) throws IOException {
        if (size < 0 || size > Long.MAX_VALUE / 2) {
            throw new IOException(server + ": export size " + Long.toUnsignedString(size) + " is not sane");
        }
        return size;
    }

    private static ByteBuffer read(SocketChannel ch, String server, int n, String what) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        readFully(ch, server, b, what);
        return b.flip();
    }

    private static void readFully(SocketChannel ch, String server, ByteBuffer b, String what) throws IOException {
        while (b.hasRemaining()) {
            int r;
            try {
                r = ch.read(b);
            } catch (ClosedChannelException e) {
                throw new IOException(server + ": connection closed while reading " + what, e);
            }
            if (r < 0) {
                throw new EOFException(server + ": server closed the connection while sending " + what);
            }
        }
    }

    private static void write(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    private static String reason(IOException e) {
        String m = e.getMessage();
        if (m == null) {
            return e.getClass().getSimpleName();
        }
        return switch (m) {
            case "Connection refused" -> "Connection refused";
            default -> m.contains("No such file") ? "No such file or directory" : m;
        };
    }

    private static void closeQuietly(SocketChannel ch) {
        try {
            ch.close();
        } catch (IOException ignored) {
            // nothing more to do
        }
    }

    /** The server's transmission flags. */
    public int transmissionFlags() {
        return transmissionFlags;
    }

    /** Sends one request and waits for its simple reply; {@code readInto} gets the data of a read. */
    private void request(int type, int flags, long offset, long length, ByteBuffer payload, ByteBuffer readInto)
            throws IOException {
        request(type, flags, offset, length, payload, readInto, null);
    }

    /** As above; {@code status} gets the first extent of a block status reply: {length, flags}. */
    private synchronized void request(int type, int flags, long offset, long length, ByteBuffer payload,
            ByteBuffer readInto, long[] status) throws IOException {
        if (closed) {
            throw new ClosedChannelException();
        }
        if (broken) {
            throw new IOException(server + ": the connection is broken by an earlier error");
        }
        long handle = nextHandle++;
        ByteBuffer h = ByteBuffer.allocate(28);
        h.putInt(Protocol.REQUEST_MAGIC).putShort((short) flags).putShort((short) type).putLong(handle).putLong(offset)
                .putInt((int) length).flip();
        ScheduledFuture<?> deadline = WATCHDOG.schedule(() -> {
            timedOut = true;
            closeQuietly(channel);
        }, requestTimeoutMillis, TimeUnit.MILLISECONDS);
        try {
            write(channel, h);
            if (payload != null) {
                write(channel, payload);
            }
            int magic = read(channel, server, 4, "reply").getInt();
            if (magic == Protocol.STRUCTURED_REPLY_MAGIC) {
                if (!structured) {
                    throw new IOException(server + ": structured reply, which was not negotiated");
                }
                structuredReply(handle, type, offset, length, readInto, status);
                return;
            }
            if (magic != Protocol.SIMPLE_REPLY_MAGIC) {
                throw new IOException(server + ": bad reply magic 0x" + Integer.toHexString(magic));
            }
            // a simple reply: any command's without structured replies, and with them any but a read's or block
            // status's success (a server may answer writes, flushes... simply)
            ByteBuffer r = read(channel, server, 12, "reply");
            int error = r.getInt();
            long got = r.getLong();
            if (got != handle) {
                throw new IOException(server + ": reply handle " + Long.toUnsignedString(got) + ", expected " + handle);
            }
            if (error != 0) {
                throw new NbdErrorException(server, error);
            }
            if (structured && (type == Protocol.CMD_READ || type == Protocol.CMD_BLOCK_STATUS)) {
                throw new IOException(server + ": simple reply to a " + (type == Protocol.CMD_READ ? "read" : "block status")
                        + " with structured replies negotiated");
            }
            if (readInto != null) {
                readFully(channel, server, readInto, "read data");
            }
        } catch (NbdErrorException e) {
            throw e; // the connection is still in step
        } catch (IOException e) {
            broken = true;
            closeQuietly(channel);
            if (timedOut) {
                throw new IOException(server + ": no reply within " + requestTimeoutMillis + " ms", e);
            }
            throw e;
        } finally {
            deadline.cancel(false);
        }
    }

    /** The chunks of one structured reply, up to the one flagged DONE. */
    private void structuredReply(long handle, int type, long offset, long length, ByteBuffer readInto, long[] status)
            throws IOException {
        NbdErrorException error = null;
        boolean gotStatus = false;
        long covered = 0;
        for (int n = 0; n < MAX_CHUNKS; n++) {
            ByteBuffer h;
            if (n == 0) {
                h = read(channel, server, 16, "reply chunk"); // its magic read by the caller
            } else {
                h = read(channel, server, 20, "reply chunk");
                int magic = h.getInt();
                if (magic != Protocol.STRUCTURED_REPLY_MAGIC) {
                    throw new IOException(server + ": bad structured reply magic 0x" + Integer.toHexString(magic));
                }
            }
            int chunkFlags = h.getShort() & 0xffff;
            int chunkType = h.getShort() & 0xffff;
            long got = h.getLong();
            long chunkLength = h.getInt() & 0xffffffffL;
            if (got != handle) {
                throw new IOException(server + ": reply handle " + Long.toUnsignedString(got) + ", expected " + handle);
            }
            boolean done = (chunkFlags & Protocol.REPLY_FLAG_DONE) != 0;
            switch (chunkType) {
                case Protocol.REPLY_TYPE_NONE -> {
                    if (chunkLength != 0 || !done) {
                        throw new IOException(server + ": NBD_REPLY_TYPE_NONE of length " + chunkLength
                                + (done ? "" : " without DONE"));
                    }
                }
                case Protocol.REPLY_TYPE_OFFSET_DATA -> {
                    if (type != Protocol.CMD_READ || chunkLength < 8 || chunkLength - 8 > length) {
                        throw new IOException(server + ": unexpected data chunk of length " + chunkLength);
                    }
                    long at = read(channel, server, 8, "chunk offset").getLong();
                    long n2 = chunkLength - 8;
                    if (at < offset || at - offset > length - n2) {
                        throw new IOException(server + ": data chunk at " + at + " outside the request");
                    }
                    ByteBuffer part = readInto.slice((int) (at - offset), (int) n2);
                    readFully(channel, server, part, "read data");
                    covered += n2;
                }
                case Protocol.REPLY_TYPE_OFFSET_HOLE -> {
                    if (type != Protocol.CMD_READ || chunkLength != 12) {
                        throw new IOException(server + ": unexpected hole chunk of length " + chunkLength);
                    }
                    ByteBuffer b = read(channel, server, 12, "hole chunk");
                    long at = b.getLong();
                    long n2 = b.getInt() & 0xffffffffL;
                    if (at < offset || n2 == 0 || n2 > length || at - offset > length - n2) {
                        throw new IOException(server + ": hole chunk of " + n2 + " bytes at " + at + " outside the request");
                    }
                    ByteBuffer part = readInto.slice((int) (at - offset), (int) n2);
                    while (part.hasRemaining()) {
                        part.put((byte) 0);
                    }
                    covered += n2;
                }
                case Protocol.REPLY_TYPE_BLOCK_STATUS -> {
                    if (type != Protocol.CMD_BLOCK_STATUS || chunkLength < 12 || chunkLength % 8 != 4
                            || chunkLength > 4 + 8L * 1024 * 1024) {
                        throw new IOException(server + ": unexpected block status chunk of length " + chunkLength);
                    }
                    ByteBuffer b = read(channel, server, 12, "block status chunk");
                    long id = b.getInt() & 0xffffffffL;
                    long extentLength = b.getInt() & 0xffffffffL;
                    int extentFlags = b.getInt();
                    skip(chunkLength - 12); // further extents: one was asked for (REQ_ONE)
                    if (id != metaContext) {
                        throw new IOException(server + ": block status for meta context " + id + ", negotiated "
                                + metaContext);
                    }
                    if (extentLength == 0 || gotStatus) {
                        throw new IOException(server + ": block status extent of length " + extentLength
                                + (gotStatus ? " (a second chunk)" : ""));
                    }
                    gotStatus = true;
                    status[0] = Math.min(extentLength, length);
                    status[1] = extentFlags;
                }
                case Protocol.REPLY_TYPE_ERROR, Protocol.REPLY_TYPE_ERROR_OFFSET -> {
                    if (chunkLength < 6 || chunkLength > 6 + 4096 + 8) {
                        throw new IOException(server + ": error chunk of length " + chunkLength);
                    }
                    ByteBuffer b = read(channel, server, (int) chunkLength, "error chunk");
                    int errno = b.getInt();
                    int msgLength = b.getShort() & 0xffff;
                    if (msgLength > chunkLength - 6 - (chunkType == Protocol.REPLY_TYPE_ERROR_OFFSET ? 8 : 0)) {
                        throw new IOException(server + ": error message of " + msgLength + " bytes in a chunk of "
                                + chunkLength);
                    }
                    if (errno == 0) {
                        throw new IOException(server + ": error chunk with error 0");
                    }
                    if (error == null) {
                        error = new NbdErrorException(server, errno);
                    }
                }
                default -> {
                    if ((chunkType & 0x8000) != 0 || chunkLength > Protocol.MAX_BUFFER_SIZE) {
                        throw new IOException(server + ": unknown reply chunk type " + chunkType + " of length "
                                + chunkLength);
                    }
                    skip(chunkLength); // an unknown informational chunk: ignored
                }
            }
            if (done) {
                if (error != null) {
                    throw error;
                }
                if (type == Protocol.CMD_BLOCK_STATUS && !gotStatus) {
                    throw new IOException(server + ": block status reply without an extent");
                }
                if (type == Protocol.CMD_READ && covered != length) {
                    throw new IOException(server + ": read reply chunks cover " + covered + " of " + length + " bytes");
                }
                return;
            }
        }
        throw new IOException(server + ": more than " + MAX_CHUNKS + " chunks in one reply");
    }

    private void skip(long n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) Math.min(n, 65536));
        while (n > 0) {
            b.clear().limit((int) Math.min(n, b.capacity()));
            readFully(channel, server, b, "reply chunk");
            n -= b.limit();
        }
    }

    @Override
    public void read(ByteBuffer dst, long offset) throws IOException {
        checkRange(offset, dst.remaining());
        while (dst.hasRemaining()) {
            int n = Math.min(dst.remaining(), Protocol.MAX_BUFFER_SIZE);
            ByteBuffer part = dst.slice(dst.position(), n);
            request(Protocol.CMD_READ, 0, offset, n, null, part);
            dst.position(dst.position() + n);
            offset += n;
        }
    }

    @Override
    public Extent extentAt(long offset, long maxLength) throws IOException {
        checkRange(offset, 0);
        long n = Math.min(maxLength, size() - offset);
        if (n <= 0) {
            throw new IndexOutOfBoundsException("offset " + offset + " at or past the end of the disk");
        }
        if (metaContext < 0) {
            return new Extent(offset, n, 0, true, false, true, offset);
        }
        long[] status = new long[2];
        request(Protocol.CMD_BLOCK_STATUS, Protocol.CMD_FLAG_REQ_ONE, offset, Math.min(n, 0x7fff_fe00L), null, null, status);
        // as QEMU's nbd driver: HOLE clears DATA, ZERO sets ZERO; neither is "not allocated" (no offset)
        boolean data = (status[1] & Protocol.STATE_HOLE) == 0;
        boolean zero = (status[1] & Protocol.STATE_ZERO) != 0;
        boolean present = data || zero;
        return new Extent(offset, status[0], 0, present, zero, data, present ? offset : -1);
    }

    private void checkWritable() throws IOException {
        if (readOnly) {
            throw new WriteRefusedException(filename(), "the NBD export is read-only");
        }
    }

    @Override
    public void write(ByteBuffer src, long offset) throws IOException {
        checkWritable();
        checkRange(offset, src.remaining());
        boolean fua = writethrough && (transmissionFlags & Protocol.FLAG_SEND_FUA) != 0;
        while (src.hasRemaining()) {
            int n = Math.min(src.remaining(), Protocol.MAX_BUFFER_SIZE);
            ByteBuffer part = src.slice(src.position(), n);
            request(Protocol.CMD_WRITE, fua ? Protocol.CMD_FLAG_FUA : 0, offset, n, part, null);
            src.position(src.position() + n);
            offset += n;
        }
        if (writethrough && !fua) {
            flush();
        }
    }

    @Override
    public void writeCompressed(ByteBuffer src, long offset) throws IOException {
        throw new RefusedRequestException(filename(), RefusedRequestException.Reason.NOT_SUPPORTED,
                "compressed writes over NBD");
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        checkWritable();
        checkRange(offset, length);
        if ((transmissionFlags & Protocol.FLAG_SEND_WRITE_ZEROES) == 0) {
            ByteBuffer zeros = ByteBuffer.allocate((int) Math.min(length, 1 << 20));
            while (length > 0) {
                int n = (int) Math.min(length, zeros.capacity());
                write(zeros.clear().limit(n), offset);
                offset += n;
                length -= n;
            }
            return;
        }
        boolean fua = writethrough && (transmissionFlags & Protocol.FLAG_SEND_FUA) != 0;
        int flags = (mayUnmap ? 0 : Protocol.CMD_FLAG_NO_HOLE) | (fua ? Protocol.CMD_FLAG_FUA : 0);
        while (length > 0) {
            long n = Math.min(length, 1L << 30);
            request(Protocol.CMD_WRITE_ZEROES, flags, offset, n, null, null);
            offset += n;
            length -= n;
        }
        if (writethrough && !fua) {
            flush();
        }
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        checkWritable();
        checkRange(offset, length);
        if ((transmissionFlags & Protocol.FLAG_SEND_TRIM) == 0) {
            return; // a discard is a hint
        }
        while (length > 0) {
            long n = Math.min(length, 1L << 30);
            request(Protocol.CMD_TRIM, 0, offset, n, null, null);
            offset += n;
            length -= n;
        }
    }

    @Override
    public void flush() throws IOException {
        if (readOnly || (transmissionFlags & Protocol.FLAG_SEND_FLUSH) == 0) {
            return;
        }
        request(Protocol.CMD_FLUSH, 0, 0, 0, null, null);
    }

    @Override
    public void resize(long newSize) throws IOException {
        throw new UnsupportedFeatureException(filename(), "resizing an NBD export");
    }

    @Override
    public SeekableByteChannel channel() {
        return Images.channel(this);
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public List<String> warnings() {
        return List.of();
    }

    /** Sends NBD_CMD_DISC (after a flush, if the export is written) and closes the connection. */
    @Override
    public synchronized void close() throws IOException {
        if (closed) {
            return;
        }
        try {
            if (!broken) {
                try {
                    flush();
                } finally {
                    ByteBuffer h = ByteBuffer.allocate(28);
                    h.putInt(Protocol.REQUEST_MAGIC).putShort((short) 0).putShort((short) Protocol.CMD_DISC).putLong(nextHandle++)
                            .putLong(0).putInt(0).flip();
                    try {
                        write(channel, h);
                    } catch (IOException ignored) {
                        // the server went first: nothing to disconnect
                    }
                }
            }
        } finally {
            closed = true;
            closeQuietly(channel);
        }
    }

    /** An error the server replied with (its errno), the connection still usable. */
    public static final class NbdErrorException extends IOException {
        private static final long serialVersionUID = 1L;
        private final int errno;

        NbdErrorException(String server, int errno) {
            super(server + ": " + describe(errno));
            this.errno = errno;
        }

        /** The NBD error value (Linux errno numbers). */
        public int errno() {
            return errno;
        }

        static String describe(int errno) {
            return switch (errno) {
                case 1 -> "Operation not permitted";
                case 5 -> "Input/output error";
                case 12 -> "Cannot allocate memory";
                case 22 -> "Invalid argument";
                case 28 -> "No space left on device";
                case 75 -> "Value too large for defined data type";
                case 95 -> "Operation not supported";
                case 108 -> "Cannot send after transport endpoint shutdown";
                default -> "error " + errno;
            };
        }
    }
}
