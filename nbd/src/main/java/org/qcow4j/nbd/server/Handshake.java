package org.qcow4j.nbd.server;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.qcow4j.nbd.TlsCredentials;
import org.qcow4j.nbd.wire.Protocol;

/**
 * The option haggling of one connection (qemu's {@code nbd_negotiate_options}), fixed newstyle: each option is
 * answered, errors included, and the connection goes on, except where qemu-nbd drops it (bad magic, unknown client
 * flags, an option longer than 32 MiB, an unknown name after EXPORT_NAME). Nothing is allocated from a length the
 * client sends beyond {@link Protocol#MAX_STRING_SIZE}; longer payloads are read and thrown away in small pieces.
 */
final class Handshake {
    /** Why the connection is dropped during the handshake: logged as qemu-nbd reports it. */
    static final class Dropped extends IOException {
        private static final long serialVersionUID = 1L;

        Dropped(String message) {
            super(message);
        }
    }

    /** An option answered with an error reply; the handshake goes on. */
    private static final class Answered extends Exception {
        private static final long serialVersionUID = 1L;

        Answered() {
            super(null, null, false, false);
        }
    }

    /** What the handshake ends with: the export chosen, and what was negotiated. */
    /**
     * @param metaBitmaps the indices (in the export's {@code bitmaps}) of the {@code qemu:dirty-bitmap:} contexts chosen;
     *                    context id {@link Protocol#META_DIRTY_BITMAP} + index
     */
    record Result(ServedExport export, boolean structured, boolean metaBase, boolean metaDepth, List<Integer> metaBitmaps) {
    }

    private final Transport transport;
    private final List<ServedExport> exports;
    /** The server's TLS credentials, or null when it offers no TLS. */
    private final TlsCredentials tls;
    private boolean structured;
    /** SET_META_CONTEXT's selection, for {@link #metaExport}. */
    private ServedExport metaExport;
    private boolean metaBase;
    private boolean metaDepth;
    private List<Integer> metaBitmaps = List.of();
    private int metaCount;
    /** The option being handled and the bytes of it not read yet. */
    private int option;
    private long optLen;

    Handshake(Transport transport, List<ServedExport> exports, TlsCredentials tls) {
        this.transport = transport;
        this.exports = exports;
        this.tls = tls;
    }

    /** Runs the handshake; null when the client aborted (NBD_OPT_ABORT) or left. */
    Result run() throws IOException {
        transport.write(ByteBuffer.allocate(18).putLong(Protocol.NBDMAGIC).putLong(Protocol.IHAVEOPT)
                .putShort((short) (Protocol.FLAG_FIXED_NEWSTYLE | Protocol.FLAG_NO_ZEROES)).flip());
        ByteBuffer b = ByteBuffer.allocate(4);
        if (!transport.readFullyOrEof(b)) {
            return null;
        }
        int flags = b.getInt(0);
        boolean fixedNewstyle = (flags & Protocol.FLAG_FIXED_NEWSTYLE) != 0;
        boolean noZeroes = (flags & Protocol.FLAG_NO_ZEROES) != 0;
        flags &= ~(Protocol.FLAG_FIXED_NEWSTYLE | Protocol.FLAG_NO_ZEROES);
        if (flags != 0) {
            throw new Dropped(String.format("Unknown client flags 0x%x received", flags));
        }
        ByteBuffer head = ByteBuffer.allocate(16);
        while (true) {
            head.clear();
            transport.readFully(head);
            if (head.getLong(0) != Protocol.IHAVEOPT) {
                throw new Dropped("Bad magic received");
            }
            option = head.getInt(8);
            optLen = head.getInt(12) & 0xffffffffL;
            if (optLen > Protocol.MAX_BUFFER_SIZE) {
                throw new Dropped("len (" + optLen + " ) is larger than max len (" + Protocol.MAX_BUFFER_SIZE + ")");
            }
            if (tls != null && !transport.tls()) {
                if (!beforeTls(fixedNewstyle)) {
                    return null;
                }
                continue;
            }
            if (!fixedNewstyle && option != Protocol.OPT_EXPORT_NAME) {
                throw new Dropped("Unsupported option " + Integer.toUnsignedString(option) + " ("
                        + Protocol.optionName(option) + ")");
            }
            try {
                switch (option) {
                    case Protocol.OPT_LIST -> {
                        rejectLength();
                        for (ServedExport e : exports) {
                            byte[] name = utf8(e.name());
                            byte[] desc = e.export().description() == null ? new byte[0] : utf8(e.export().description());
                            reply(Protocol.REP_SERVER, ByteBuffer.allocate(4 + name.length + desc.length)
                                    .putInt(name.length).put(name).put(desc).flip());
                        }
                        reply(Protocol.REP_ACK, null);
                    }
                    case Protocol.OPT_ABORT -> {
                        try {
                            reply(Protocol.REP_ACK, null);
                        } catch (IOException e) {
                            // the client may hang up without waiting for the reply
                        }
                        return null;
                    }
                    case Protocol.OPT_EXPORT_NAME -> {
                        return exportName(noZeroes);
                    }
                    case Protocol.OPT_INFO, Protocol.OPT_GO -> {
                        ServedExport chosen = info();
                        if (chosen != null) {
                            return result(chosen);
                        }
                    }
                    case Protocol.OPT_STARTTLS -> {
                        rejectLength();
                        if (tls != null) {
                            error(Protocol.REP_ERR_INVALID, "TLS already enabled");
                        }
                        error(Protocol.REP_ERR_POLICY, "TLS not configured");
                    }
                    case Protocol.OPT_STRUCTURED_REPLY -> {
                        rejectLength();
                        if (structured) {
                            error(Protocol.REP_ERR_INVALID, "structured reply already negotiated");
                        }
                        reply(Protocol.REP_ACK, null);
                        structured = true;
                    }
                    case Protocol.OPT_LIST_META_CONTEXT, Protocol.OPT_SET_META_CONTEXT -> metaContexts();
                    default -> drop(Protocol.REP_ERR_UNSUP, "Unsupported option " + Integer.toUnsignedString(option)
                            + " (" + Protocol.optionName(option) + ")");
                }
            } catch (Answered answered) {
                // the error reply went out; next option
            }
        }
    }

    /**
     * An option while TLS is required and not started (qemu's {@code nbd_negotiate_options}): STARTTLS starts it,
     * EXPORT_NAME (which cannot be answered with an error) drops the connection, anything else is answered
     * ERR_TLS_REQD. Returns false when the client aborted.
     */
    private boolean beforeTls(boolean fixedNewstyle) throws IOException {
        if (!fixedNewstyle) {
            throw new Dropped(String.format("Unsupported option 0x%x", option));
        }
        switch (option) {
            case Protocol.OPT_STARTTLS -> {
                if (optLen != 0) {
                    try {
                        rejectLength();
                    } catch (Answered answered) {
                        // the client cannot start TLS properly: dropped after the answer, as qemu-nbd does
                    }
                    throw new Dropped("option 'starttls' has unexpected length");
                }
                reply(Protocol.REP_ACK, null);
                try {
                    transport.startTls(tls);
                } catch (IOException e) {
                    throw new Dropped("TLS handshake failed: " + (e.getMessage() == null ? e : e.getMessage()));
                }
            }
            case Protocol.OPT_EXPORT_NAME -> throw new Dropped(String.format("Option 0x%x not permitted before TLS",
                    option));
            default -> {
                String message = String.format("Option 0x%x not permitted before TLS", option);
                try {
                    drop(Protocol.REP_ERR_TLS_REQD, message);
                } catch (Answered answered) {
                    // answered; the handshake goes on
                } catch (IOException e) {
                    if (option != Protocol.OPT_ABORT) {
                        throw e;
                    } // a client that aborts may hang up without reading the answer
                }
                return option != Protocol.OPT_ABORT;
            }
        }
        return true;
    }

    private Result result(ServedExport chosen) {
        if (metaExport != chosen) {
            metaCount = 0;
        }
        return new Result(chosen, structured, metaCount > 0 && metaBase, metaCount > 0 && metaDepth,
                metaCount > 0 ? metaBitmaps : List.of());
    }

    private ServedExport find(String name) {
        for (ServedExport e : exports) {
            if (e.name().equals(name)) {
                return e;
            }
        }
        return null;
    }

    private Result exportName(boolean noZeroes) throws IOException {
        if (optLen > Protocol.MAX_STRING_SIZE) {
            throw new Dropped("Bad length received");
        }
        ByteBuffer name = ByteBuffer.allocate((int) optLen);
        transport.readFully(name);
        optLen = 0;
        ServedExport chosen = find(new String(name.array(), StandardCharsets.UTF_8));
        if (chosen == null) {
            throw new Dropped("export not found");
        }
        ByteBuffer reply = ByteBuffer.allocate(noZeroes ? 10 : 134).putLong(chosen.size())
                .putShort((short) (chosen.flags() | (structured ? Protocol.FLAG_SEND_DF : 0)));
        transport.write(reply.position(reply.capacity()).flip());
        return result(chosen);
    }

    /** INFO and GO; returns the export when GO succeeded. */
    private ServedExport info() throws IOException, Answered {
        String name = readName();
        int requests = readInt(2);
        boolean sendName = false;
        for (int i = 0; i < requests; i++) {
            int request = readInt(2);
            if (request == Protocol.INFO_NAME) {
                sendName = true;
            }
        }
        rejectLength();
        ServedExport chosen = find(name);
        if (chosen == null) {
            error(Protocol.REP_ERR_UNKNOWN, "export '" + sanitize(name) + "' not present");
        }
        if (sendName) {
            byte[] n = utf8(name);
            reply(Protocol.REP_INFO, ByteBuffer.allocate(2 + n.length).putShort((short) Protocol.INFO_NAME).put(n).flip());
        }
        if (chosen.export().description() != null) {
            byte[] d = utf8(chosen.export().description());
            reply(Protocol.REP_INFO, ByteBuffer.allocate(2 + d.length).putShort((short) Protocol.INFO_DESCRIPTION)
                    .put(d).flip());
        }
        reply(Protocol.REP_INFO, ByteBuffer.allocate(14).putShort((short) Protocol.INFO_BLOCK_SIZE).putInt(1)
                .putInt(4096).putInt(Protocol.MAX_BUFFER_SIZE).flip());
        reply(Protocol.REP_INFO, ByteBuffer.allocate(12).putShort((short) Protocol.INFO_EXPORT).putLong(chosen.size())
                .putShort((short) (chosen.flags() | (structured ? Protocol.FLAG_SEND_DF : 0))).flip());
        reply(Protocol.REP_ACK, null);
        return option == Protocol.OPT_GO ? chosen : null;
    }

    /** LIST_META_CONTEXT and SET_META_CONTEXT (qemu's {@code nbd_negotiate_meta_queries}). */
    private void metaContexts() throws IOException, Answered {
        boolean list = option == Protocol.OPT_LIST_META_CONTEXT;
        if (!list && !structured) {
            drop(Protocol.REP_ERR_INVALID, "request option '" + Protocol.optionName(option)
                    + "' when structured reply is not negotiated");
        }
        if (!list) {
            metaExport = null;
            metaBase = false;
            metaDepth = false;
            metaBitmaps = List.of();
            metaCount = 0;
        }
        String name = readName();
        ServedExport exp = find(name);
        if (exp == null) {
            drop(Protocol.REP_ERR_UNKNOWN, "export '" + sanitize(name) + "' not present");
        }
        long queries = readInt(4) & 0xffffffffL;
        boolean base = false;
        boolean depth = false;
        List<String> offered = exp.export().bitmaps();
        java.util.TreeSet<Integer> bitmaps = new java.util.TreeSet<>();
        if (list && queries == 0) {
            base = true;
            depth = exp.export().allocationDepth();
            allBitmaps(offered, bitmaps);
        } else {
            for (long i = 0; i < queries; i++) {
                long len = readInt(4) & 0xffffffffL;
                if (len > Protocol.MAX_STRING_SIZE) {
                    skip(len);
                    continue;
                }
                String query = readString((int) len);
                if (query.startsWith("base:")) {
                    String rest = query.substring(5);
                    if (rest.equals("allocation") || (rest.isEmpty() && list)) {
                        base = true;
                    }
                } else if (query.startsWith("qemu:")) {
                    String rest = query.substring(5);
                    if ((rest.isEmpty() && list) || rest.equals("allocation-depth")) {
                        depth |= exp.export().allocationDepth();
                    }
                    if (rest.isEmpty() && list || rest.equals("dirty-bitmap:") && list) {
                        allBitmaps(offered, bitmaps);
                    } else if (rest.startsWith("dirty-bitmap:") && offered.contains(rest.substring(13))) {
                        bitmaps.add(offered.indexOf(rest.substring(13)));
                    }
                }
            }
        }
        rejectLength();
        int count = 0;
        if (base) {
            metaContextReply("base:allocation", Protocol.META_BASE_ALLOCATION, list);
            count++;
        }
        if (depth) {
            metaContextReply("qemu:allocation-depth", Protocol.META_ALLOCATION_DEPTH, list);
            count++;
        }
        for (int i : bitmaps) {
            metaContextReply("qemu:dirty-bitmap:" + offered.get(i), Protocol.META_DIRTY_BITMAP + i, list);
            count++;
        }
        reply(Protocol.REP_ACK, null);
        if (!list) {
            metaExport = exp;
            metaBase = base;
            metaDepth = depth;
            metaBitmaps = List.copyOf(bitmaps);
            metaCount = count;
        }
    }

    private static void allBitmaps(List<String> offered, java.util.Set<Integer> into) {
        for (int i = 0; i < offered.size(); i++) {
            into.add(i);
        }
    }

    private void metaContextReply(String context, int id, boolean list) throws IOException {
        byte[] c = utf8(context);
        reply(Protocol.REP_META_CONTEXT, ByteBuffer.allocate(4 + c.length).putInt(list ? 0 : id).put(c).flip());
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static String sanitize(String name) {
        return name.length() < 80 ? name : name.substring(0, 80) + "...";
    }

    /** A name: u32 length (at most 4096), then its bytes, with no NUL among them. */
    private String readName() throws IOException, Answered {
        long len = readInt(4) & 0xffffffffL;
        if (len > Protocol.MAX_STRING_SIZE) {
            drop(Protocol.REP_ERR_INVALID, "Invalid name length: " + len);
        }
        return readString((int) len);
    }

    private String readString(int len) throws IOException, Answered {
        ByteBuffer b = read(len);
        for (byte x : b.array()) {
            if (x == 0) {
                drop(Protocol.REP_ERR_INVALID, "Unexpected embedded NUL in option " + Protocol.optionName(option));
            }
        }
        return new String(b.array(), StandardCharsets.UTF_8);
    }

    private int readInt(int bytes) throws IOException, Answered {
        ByteBuffer b = read(bytes);
        return bytes == 2 ? b.getShort(0) & 0xffff : b.getInt(0);
    }

    /** Reads {@code size} bytes of the option's payload, or answers that the lengths disagree. */
    private ByteBuffer read(int size) throws IOException, Answered {
        if (size > optLen) {
            drop(Protocol.REP_ERR_INVALID, "Inconsistent lengths in option " + Protocol.optionName(option));
        }
        optLen -= size;
        ByteBuffer b = ByteBuffer.allocate(size);
        transport.readFully(b);
        return b;
    }

    private void skip(long size) throws IOException, Answered {
        if (size > optLen) {
            drop(Protocol.REP_ERR_INVALID, "Inconsistent lengths in option " + Protocol.optionName(option));
        }
        optLen -= size;
        discard(size);
    }

    private void discard(long size) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) Math.min(size, 64 * 1024));
        while (size > 0) {
            b.clear().limit((int) Math.min(size, b.capacity()));
            transport.readFully(b);
            size -= b.limit();
        }
    }

    /** An option with bytes left over: the payload is dropped and ERR_INVALID sent. */
    private void rejectLength() throws IOException, Answered {
        if (optLen != 0) {
            drop(Protocol.REP_ERR_INVALID, "option '" + Protocol.optionName(option) + "' has unexpected length");
        }
    }

    /** Throws away the rest of the option, answers {@code type} with {@code message}; the handshake goes on. */
    private void drop(int type, String message) throws IOException, Answered {
        discard(optLen);
        optLen = 0;
        error(type, message);
    }

    private void error(int type, String message) throws IOException, Answered {
        reply(type, ByteBuffer.wrap(utf8(message)));
        throw new Answered();
    }

    private void reply(int type, ByteBuffer data) throws IOException {
        int len = data == null ? 0 : data.remaining();
        ByteBuffer h = ByteBuffer.allocate(20).putLong(Protocol.OPTION_REPLY_MAGIC).putInt(option).putInt(type)
                .putInt(len).flip();
        if (data == null) {
            transport.write(h);
        } else {
            transport.write(h, data);
        }
    }
}
