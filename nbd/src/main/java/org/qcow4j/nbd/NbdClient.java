package org.qcow4j.nbd;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.URLDecoder;
import java.net.UnixDomainSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Map;
import org.qcow4j.WritableImage;
import org.qcow4j.nbd.client.ClientImage;

/**
 * An NBD client: an export of an NBD server (qemu-nbd, nbdkit, qcow4j's own {@link NbdServer}) opened as a raw
 * {@link WritableImage}, as QEMU 7.2's nbd block driver opens it. Names are QEMU's: {@code nbd:unix:PATH},
 * {@code nbd:HOST:PORT}, either with {@code :exportname=NAME}, and the URIs {@code nbd://HOST[:PORT]/NAME},
 * {@code nbd+tcp://...} and {@code nbd+unix:///NAME?socket=PATH}. Fixed-newstyle handshake (NBD_OPT_GO, else
 * NBD_OPT_EXPORT_NAME), structured replies with block status from {@code base:allocation} (or {@code x-dirty-bitmap}'s context) when the
 * server has them, else simple replies and every range reads as data; no TLS.
 */
public final class NbdClient {
    /** The default NBD port. */
    public static final int DEFAULT_PORT = 10809;
    private static final long HANDSHAKE_TIMEOUT_MILLIS = 30_000;
    private static final long REQUEST_TIMEOUT_MILLIS = 600_000;

    private NbdClient() {
    }

    /**
     * Where an export is: a Unix socket path or a TCP host and port, and the export's name ("" for the default).
     *
     * @param unixPath the socket's path, or null for TCP
     * @param host     the TCP host (brackets of an IPv6 literal removed), or null
     * @param port     the TCP port
     * @param export   the export name, "" for the server's default export
     * @param xDirtyBitmap the meta context block status reads instead of {@code base:allocation} (QEMU's
     *                 {@code x-dirty-bitmap}: a context such as {@code qemu:dirty-bitmap:NAME}), or null
     */
    public record Target(String unixPath, String host, int port, String export, String xDirtyBitmap) {
        /** A target without {@code x-dirty-bitmap}. */
        public Target(String unixPath, String host, int port, String export) {
            this(unixPath, host, port, export, null);
        }

        /** This target, block status read from the meta context {@code context} (QEMU's x-dirty-bitmap). */
        public Target withDirtyBitmap(String context) {
            return new Target(unixPath, host, port, export, context);
        }

        /** The socket address to connect to. */
        public SocketAddress address() {
            return unixPath != null ? UnixDomainSocketAddress.of(Path.of(unixPath)) : new InetSocketAddress(host, port);
        }

        /** The name QEMU gives such an image ({@code nbd+unix:///NAME?socket=PATH}, {@code nbd://HOST:PORT/NAME}). */
        public String qemuName() {
            String e = export.isEmpty() ? "" : "/" + export;
            return unixPath != null ? "nbd+unix://" + e + "?socket=" + unixPath : "nbd://" + host + ":" + port + e;
        }

        /** The server as QEMU's messages name it: the socket's path, or HOST:PORT. */
        public String server() {
            return unixPath != null ? unixPath : host + ":" + port;
        }
    }

    /** Whether {@code name} uses one of QEMU's NBD protocol prefixes ({@code nbd:}, {@code nbd+tcp:}, {@code nbd+unix:}). */
    public static boolean isNbdName(String name) {
        return name.startsWith("nbd:") || name.startsWith("nbd+tcp:") || name.startsWith("nbd+unix:");
    }

    /**
     * Parses an NBD image name as QEMU's nbd_parse_filename does.
     *
     * @throws IllegalArgumentException with QEMU's message ("No valid URL specified"...) for a name it refuses
     */
    public static Target parse(String name) {
        if (name.contains("://")) {
            return parseUri(name);
        }
        String file = name;
        String export = "";
        int en = file.indexOf(":exportname=");
        if (en >= 0) {
            export = file.substring(en + ":exportname=".length());
            file = file.substring(0, en);
        }
        if (!file.startsWith("nbd:")) {
            throw new IllegalArgumentException("File name string for NBD must start with 'nbd:'");
        }
        String spec = file.substring(4);
        if (spec.isEmpty()) {
            throw new IllegalArgumentException("NBD server address missing");
        }
        if (spec.startsWith("unix:")) {
            String path = spec.substring(5);
            if (path.isEmpty()) {
                throw new IllegalArgumentException("NBD server address missing");
            }
            return new Target(path, null, 0, export);
        }
        String host;
        String port;
        if (spec.startsWith("[")) {
            int close = spec.indexOf(']');
            if (close < 0 || close + 1 >= spec.length() || spec.charAt(close + 1) != ':') {
                throw new IllegalArgumentException("error parsing IPv6 address '" + spec + "'");
            }
            host = spec.substring(1, close);
            port = spec.substring(close + 2);
        } else {
            int colon = spec.lastIndexOf(':');
            if (colon < 0) {
                throw new IllegalArgumentException("error parsing address '" + spec + "'");
            }
            host = spec.substring(0, colon);
            port = spec.substring(colon + 1);
        }
        return new Target(null, host, port(port, spec), export);
    }

    private static int port(String port, String spec) {
        try {
            int p = Integer.parseInt(port);
            if (p < 0 || p > 65535) {
                throw new NumberFormatException();
            }
            return p;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("error parsing port in address '" + spec + "'");
        }
    }

    private static Target parseUri(String name) {
        IllegalArgumentException invalid = new IllegalArgumentException("No valid URL specified");
        int sep = name.indexOf("://");
        String scheme = name.substring(0, sep);
        boolean unix;
        switch (scheme) {
            case "nbd", "nbd+tcp" -> unix = false;
            case "nbd+unix" -> unix = true;
            default -> throw invalid;
        }
        String rest = name.substring(sep + 3);
        String query = null;
        int q = rest.indexOf('?');
        if (q >= 0) {
            query = rest.substring(q + 1);
            rest = rest.substring(0, q);
        }
        int slash = rest.indexOf('/');
        String authority = slash < 0 ? rest : rest.substring(0, slash);
        String path = slash < 0 ? "" : rest.substring(slash + 1);
        String export = decode(path);
        Map<String, String> params = new java.util.LinkedHashMap<>();
        int count = 0;
        if (query != null && !query.isEmpty()) {
            for (String p : query.split("&")) {
                if (p.isEmpty()) {
                    continue;
                }
                int eq = p.indexOf('=');
                params.put(decode(eq < 0 ? p : p.substring(0, eq)), eq < 0 ? "" : decode(p.substring(eq + 1)));
                count++;
            }
        }
        if (count > 1 || (unix && count == 0) || (!unix && count > 0)) {
            throw invalid;
        }
        if (unix) {
            if (!authority.isEmpty() || !params.containsKey("socket")) {
                throw invalid;
            }
            return new Target(params.get("socket"), null, 0, export);
        }
        if (authority.isEmpty()) {
            throw invalid;
        }
        String host = authority;
        int port = DEFAULT_PORT;
        int colon = authority.startsWith("[") ? authority.indexOf(':', authority.indexOf(']')) : authority.lastIndexOf(':');
        if (colon >= 0) {
            host = authority.substring(0, colon);
            String p = authority.substring(colon + 1);
            if (!p.isEmpty()) {
                try {
                    port = Integer.parseInt(p);
                } catch (NumberFormatException e) {
                    throw invalid;
                }
                if (port <= 0 || port > 65535) {
                    throw invalid;
                }
            }
        }
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        if (host.isEmpty()) {
            throw invalid;
        }
        return new Target(null, host, port, export);
    }

    private static String decode(String s) {
        try {
            return URLDecoder.decode(s.replace("+", "%2B"), StandardCharsets.UTF_8);
        } catch (IllegalArgumentException e) {
            return s;
        }
    }

    /**
     * Opens the export {@code target} names as a raw image (named {@link Target#qemuName()}). {@code readOnly}: writes
     * are refused (so they are when the server exports it read-only); {@code writethrough}: every write is durable
     * before it completes (FUA, or a flush). The handshake has a deadline; so has each request.
     *
     * @throws IOException naming the server and what it got wrong, or why it could not be reached
     */
    public static WritableImage open(Target target, boolean readOnly, boolean writethrough) throws IOException {
        return ClientImage.connect(target.qemuName(), "raw", target.server(), target.address(), target.export(),
                target.xDirtyBitmap() != null ? target.xDirtyBitmap() : "base:allocation", target.xDirtyBitmap() != null,
                readOnly, writethrough, HANDSHAKE_TIMEOUT_MILLIS, REQUEST_TIMEOUT_MILLIS);
    }

    /**
     * {@link #open(Target, boolean, boolean)}, the image's format named {@code format}: "raw", or "nbd" as QEMU names
     * it when its nbd protocol driver is the image itself ({@code driver=nbd}).
     */
    public static WritableImage open(Target target, boolean readOnly, boolean writethrough, String format)
            throws IOException {
        return ClientImage.connect(target.qemuName(), format, target.server(), target.address(), target.export(),
                target.xDirtyBitmap() != null ? target.xDirtyBitmap() : "base:allocation", target.xDirtyBitmap() != null,
                readOnly, writethrough, HANDSHAKE_TIMEOUT_MILLIS, REQUEST_TIMEOUT_MILLIS);
    }

    /** {@link #open(Target, boolean, boolean)} with the handshake's and each request's deadline given. */
    public static WritableImage open(Target target, boolean readOnly, boolean writethrough, long handshakeTimeoutMillis,
            long requestTimeoutMillis) throws IOException {
        return ClientImage.connect(target.qemuName(), "raw", target.server(), target.address(), target.export(),
                target.xDirtyBitmap() != null ? target.xDirtyBitmap() : "base:allocation", target.xDirtyBitmap() != null,
                readOnly, writethrough, handshakeTimeoutMillis, requestTimeoutMillis);
    }
}
