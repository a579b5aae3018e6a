package org.qcow4j.nbd.client;

import java.io.EOFException;
import java.io.IOException;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.NonWritableChannelException;
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
import org.qcow4j.RefusedRequestException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WritableImage;
import org.qcow4j.WriteRefusedException;

/**
 * An NBD export opened as a raw image: the client side of the fixed-newstyle protocol as QEMU 7.2's nbd block driver
 * speaks it (NBD_OPT_GO, falling back to NBD_OPT_EXPORT_NAME; simple replies), one request at a time. Everything the
 * server sends is bounded before it is believed (magics, lengths, handles, the export size); the handshake and each
 * request have a deadline, past which the connection is closed and the operation fails.
 */
public final class ClientImage extends AbstractDiskImage implements WritableImage {
    static final long NBDMAGIC = 0x4e42444d41474943L;
    static final long IHAVEOPT = 0x49484156454f5054L;
    static final long OLDSTYLE_MAGIC = 0x00420281861253L;
    static final long OPTION_REPLY_MAGIC = 0x3e889045565a9L;
    static final int REQUEST_MAGIC = 0x25609513;
    static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;
    static final int FLAG_FIXED_NEWSTYLE = 1;
    static final int FLAG_NO_ZEROES = 2;
    static final int OPT_EXPORT_NAME = 1;
    static final int OPT_ABORT = 2;
    static final int OPT_GO = 7;
    static final int REP_ACK = 1;
    static final int REP_INFO = 3;
    static final int REP_ERR_UNSUP = 0x80000001;
    static final int INFO_EXPORT = 0;
    static final int TFLAG_HAS_FLAGS = 1;
    static final int TFLAG_READ_ONLY = 1 << 1;
    static final int TFLAG_SEND_FLUSH = 1 << 2;
    static final int TFLAG_SEND_FUA = 1 << 3;
    static final int TFLAG_SEND_TRIM = 1 << 5;
    static final int TFLAG_SEND_WRITE_ZEROES = 1 << 6;
    static final int CMD_READ = 0;
    static final int CMD_WRITE = 1;
    static final int CMD_DISC = 2;
    static final int CMD_FLUSH = 3;
    static final int CMD_TRIM = 4;
    static final int CMD_WRITE_ZEROES = 6;
    static final int CMD_FLAG_FUA = 1;
    static final int CMD_FLAG_NO_HOLE = 1 << 1;

    /** The most a request moves (QEMU's NBD_MAX_BUFFER_SIZE): longer ones are split. */
    static final int MAX_REQUEST = 32 * 1024 * 1024;
    /** The longest option reply believed. */
    static final int MAX_OPTION_REPLY = 4 * 1024 * 1024;
    /** The most option replies one option may get. */
    static final int MAX_OPTION_REPLIES = 4096;
    /** The longest export name sent. */
    static final int MAX_NAME = 4096;

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
    private long nextHandle = 1;
    private volatile boolean timedOut;
    private boolean closed;
    private boolean broken;

    private ClientImage(String filename, String format, String server, SocketChannel channel, long size,
            int transmissionFlags, boolean readOnly, boolean writethrough, long requestTimeoutMillis) {
        super(filename, format, size);
        this.server = server;
        this.channel = channel;
        this.transmissionFlags = transmissionFlags;
        this.readOnly = readOnly || (transmissionFlags & TFLAG_READ_ONLY) != 0;
        this.writethrough = writethrough;
        this.requestTimeoutMillis = requestTimeoutMillis;
    }

    /**
     * Connects to {@code address}, negotiates {@code export} and returns it as an image named {@code filename} whose
     * format is called {@code format} ("raw", or "nbd" for QEMU's protocol driver opened as the image);
     * {@code server} names the server in messages. {@code readOnly}: writes are refused here (a read-only export
     * refuses them anyway); {@code writethrough}: each write is sent with FUA (or followed by a flush).
     */
    public static ClientImage connect(String filename, String format, String serverName, SocketAddress address, String export,
            boolean readOnly, boolean writethrough, long handshakeTimeoutMillis, long requestTimeoutMillis)
            throws IOException {
        String server = serverName;
        byte[] name = export.getBytes(StandardCharsets.UTF_8);
        if (name.length > MAX_NAME) {
            throw new IOException("NBD server '" + server + "': export name longer than " + MAX_NAME + " bytes");
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
            long[] sizeFlags = handshake(ch, server, address, name);
            deadline.cancel(false);
            synchronized (expired) {
                if (expired[0]) {
                    throw new IOException("NBD server '" + server + "': no handshake within " + handshakeTimeoutMillis
                            + " ms");
                }
            }
            return new ClientImage(filename, format, "NBD server '" + server + "'", ch, sizeFlags[0], (int) sizeFlags[1],
                    readOnly, writethrough, requestTimeoutMillis);
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

    private static long[] handshake(SocketChannel ch, String server, SocketAddress address, byte[] name)
            throws IOException {
        try {
            ch.connect(address);
        } catch (IOException e) {
            throw new IOException("Failed to connect to '" + server + "': " + reason(e), e);
        }
        server = "NBD server '" + server + "'";
        ByteBuffer b = read(ch, server, 16, "greeting");
        long magic = b.getLong();
        if (magic != NBDMAGIC) {
            throw new IOException(server + ": bad greeting magic 0x" + Long.toHexString(magic) + " (not an NBD server)");
        }
        long opt = b.getLong();
        if (opt == OLDSTYLE_MAGIC) {
            throw new IOException(server + ": oldstyle NBD servers are not supported");
        }
        if (opt != IHAVEOPT) {
            throw new IOException(server + ": bad newstyle magic 0x" + Long.toHexString(opt));
        }
        int globalFlags = read(ch, server, 2, "handshake flags").getShort() & 0xffff;
        boolean fixed = (globalFlags & FLAG_FIXED_NEWSTYLE) != 0;
        boolean noZeroes = (globalFlags & FLAG_NO_ZEROES) != 0;
        int clientFlags = (fixed ? FLAG_FIXED_NEWSTYLE : 0) | (noZeroes ? FLAG_NO_ZEROES : 0);
        write(ch, ByteBuffer.allocate(4).putInt(clientFlags).flip());
        if (fixed) {
            long[] go = optGo(ch, server, name);
            if (go != null) {
                return go;
            }
        }
        // NBD_OPT_EXPORT_NAME: the export's size and flags straight away (the server drops us if it has no such export)
        ByteBuffer req = ByteBuffer.allocate(16 + name.length);
        req.putLong(IHAVEOPT).putInt(OPT_EXPORT_NAME).putInt(name.length).put(name).flip();
        write(ch, req);
        ByteBuffer r = read(ch, server, 10, "export information (the server may not know the export)");
        long size = r.getLong();
        int flags = r.getShort() & 0xffff;
        if (!noZeroes) {
            read(ch, server, 124, "padding");
        }
        return new long[] {checkSize(server, size), flags};
    }

    /** NBD_OPT_GO: {size, flags}, or null when the server does not know the option. */
    private static long[] optGo(SocketChannel ch, String server, byte[] name) throws IOException {
        ByteBuffer req = ByteBuffer.allocate(16 + 4 + name.length + 2);
        req.putLong(IHAVEOPT).putInt(OPT_GO).putInt(4 + name.length + 2).putInt(name.length).put(name).putShort((short) 0);
        write(ch, req.flip());
        long size = -1;
        int flags = 0;
        for (int n = 0; n < MAX_OPTION_REPLIES; n++) {
            ByteBuffer h = read(ch, server, 20, "option reply");
            long magic = h.getLong();
            if (magic != OPTION_REPLY_MAGIC) {
                throw new IOException(server + ": bad option reply magic 0x" + Long.toHexString(magic));
            }
            int option = h.getInt();
            int type = h.getInt();
            long length = h.getInt() & 0xffffffffL;
            if (option != OPT_GO) {
                throw new IOException(server + ": option reply for option " + option + ", expected " + OPT_GO);
            }
            if (length > MAX_OPTION_REPLY) {
                throw new IOException(server + ": option reply length " + length + " over " + MAX_OPTION_REPLY);
            }
            ByteBuffer data = read(ch, server, (int) length, "option reply data");
            if (type == REP_ACK) {
                if (length != 0) {
                    throw new IOException(server + ": ACK reply with length " + length);
                }
                if (size < 0) {
                    throw new IOException(server + ": NBD_OPT_GO acknowledged without NBD_INFO_EXPORT");
                }
                return new long[] {size, flags};
            }
            if (type == REP_ERR_UNSUP) {
                return null;
            }
            if ((type & 0x80000000) != 0) {
                String text = printable(StandardCharsets.UTF_8.decode(data).toString());
                abort(ch);
                throw new IOException("Requested export not available" + (text.isEmpty() ? "" : "\nserver reported: " + text));
            }
            if (type == REP_INFO) {
                if (length < 2) {
                    throw new IOException(server + ": NBD_REP_INFO of length " + length);
                }
                int info = data.getShort() & 0xffff;
                if (info == INFO_EXPORT) {
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

    /** NBD_OPT_ABORT, best effort: the server then ends the connection without complaint. */
    private static void abort(SocketChannel ch) {
        try {
            write(ch, ByteBuffer.allocate(16).putLong(IHAVEOPT).putInt(OPT_ABORT).putInt(0).flip());
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
    private synchronized void request(int type, int flags, long offset, long length, ByteBuffer payload,
            ByteBuffer readInto) throws IOException {
        if (closed) {
            throw new ClosedChannelException();
        }
        if (broken) {
            throw new IOException(server + ": the connection is broken by an earlier error");
        }
        long handle = nextHandle++;
        ByteBuffer h = ByteBuffer.allocate(28);
        h.putInt(REQUEST_MAGIC).putShort((short) flags).putShort((short) type).putLong(handle).putLong(offset)
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
            ByteBuffer r = read(channel, server, 16, "reply");
            int magic = r.getInt();
            if (magic == STRUCTURED_REPLY_MAGIC) {
                throw new IOException(server + ": structured reply, which was not negotiated");
            }
            if (magic != SIMPLE_REPLY_MAGIC) {
                throw new IOException(server + ": bad reply magic 0x" + Integer.toHexString(magic));
            }
            int error = r.getInt();
            long got = r.getLong();
            if (got != handle) {
                throw new IOException(server + ": reply handle " + Long.toUnsignedString(got) + ", expected " + handle);
            }
            if (error != 0) {
                throw new NbdErrorException(server, error);
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

    @Override
    public void read(ByteBuffer dst, long offset) throws IOException {
        checkRange(offset, dst.remaining());
        while (dst.hasRemaining()) {
            int n = Math.min(dst.remaining(), MAX_REQUEST);
            ByteBuffer part = dst.slice(dst.position(), n);
            request(CMD_READ, 0, offset, n, null, part);
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
        return new Extent(offset, n, 0, true, false, true, offset);
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
        boolean fua = writethrough && (transmissionFlags & TFLAG_SEND_FUA) != 0;
        while (src.hasRemaining()) {
            int n = Math.min(src.remaining(), MAX_REQUEST);
            ByteBuffer part = src.slice(src.position(), n);
            request(CMD_WRITE, fua ? CMD_FLAG_FUA : 0, offset, n, part, null);
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
        if ((transmissionFlags & TFLAG_SEND_WRITE_ZEROES) == 0) {
            ByteBuffer zeros = ByteBuffer.allocate((int) Math.min(length, 1 << 20));
            while (length > 0) {
                int n = (int) Math.min(length, zeros.capacity());
                write(zeros.clear().limit(n), offset);
                offset += n;
                length -= n;
            }
            return;
        }
        boolean fua = writethrough && (transmissionFlags & TFLAG_SEND_FUA) != 0;
        int flags = (mayUnmap ? 0 : CMD_FLAG_NO_HOLE) | (fua ? CMD_FLAG_FUA : 0);
        while (length > 0) {
            long n = Math.min(length, 1L << 30);
            request(CMD_WRITE_ZEROES, flags, offset, n, null, null);
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
        if ((transmissionFlags & TFLAG_SEND_TRIM) == 0) {
            return; // a discard is a hint
        }
        while (length > 0) {
            long n = Math.min(length, 1L << 30);
            request(CMD_TRIM, 0, offset, n, null, null);
            offset += n;
            length -= n;
        }
    }

    @Override
    public void flush() throws IOException {
        if (readOnly || (transmissionFlags & TFLAG_SEND_FLUSH) == 0) {
            return;
        }
        request(CMD_FLUSH, 0, 0, 0, null, null);
    }

    @Override
    public void resize(long newSize) throws IOException {
        throw new UnsupportedFeatureException(filename(), "resizing an NBD export");
    }

    @Override
    public SeekableByteChannel channel() {
        return new SeekableByteChannel() {
            private long position;
            private boolean open = true;

            @Override
            public int read(ByteBuffer dst) throws IOException {
                long left = size() - position;
                if (left <= 0) {
                    return -1;
                }
                int n = (int) Math.min(dst.remaining(), left);
                ByteBuffer part = dst.slice(dst.position(), n);
                ClientImage.this.read(part, position);
                dst.position(dst.position() + n);
                position += n;
                return n;
            }

            @Override
            public int write(ByteBuffer src) throws IOException {
                if (readOnly) {
                    throw new NonWritableChannelException();
                }
                int n = src.remaining();
                ClientImage.this.write(src, position);
                position += n;
                return n;
            }

            @Override
            public long position() {
                return position;
            }

            @Override
            public SeekableByteChannel position(long newPosition) {
                position = newPosition;
                return this;
            }

            @Override
            public long size() {
                return ClientImage.this.size();
            }

            @Override
            public SeekableByteChannel truncate(long size) throws IOException {
                throw new UnsupportedFeatureException(filename(), "resizing an NBD export");
            }

            @Override
            public boolean isOpen() {
                return open;
            }

            @Override
            public void close() {
                open = false;
            }
        };
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
                    h.putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) CMD_DISC).putLong(nextHandle++)
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
