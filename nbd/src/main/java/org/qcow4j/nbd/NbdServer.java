package org.qcow4j.nbd;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.UnixDomainSocketAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.qcow4j.nbd.server.Server;

/**
 * An NBD server over qcow4j's images, speaking the fixed-newstyle protocol as qemu-nbd 7.2 does: structured replies
 * (sparse reads), the {@code base:allocation} and {@code qemu:allocation-depth} meta contexts, several requests in
 * flight per connection answered as they complete.
 *
 * <pre>{@code
 * try (DiskImage disk = Images.open(Path.of("disk.qcow2"));
 *      NbdServer server = NbdServer.builder().export(NbdExport.readOnly("", disk))
 *              .unixSocket(Path.of("/tmp/disk.sock")).start()) {
 *     server.awaitTermination();          // nbdinfo 'nbd+unix:///?socket=/tmp/disk.sock'
 * }
 * }</pre>
 *
 * The server never closes the images it serves: close the server, then the images.
 */
public final class NbdServer implements AutoCloseable {
    private final Server server;

    private NbdServer(Server server) {
        this.server = server;
    }

    /** A builder with qemu-nbd's defaults: TCP on all addresses, port 10809, one client at a time, persistent. */
    public static Builder builder() {
        return new Builder();
    }

    /** The address clients connect to: the Unix socket, or the TCP address with the port actually bound. */
    public SocketAddress address() throws IOException {
        return server.address();
    }

    /** Clients connected now. */
    public int connections() {
        return server.connections();
    }

    /** Waits until the server stops: {@link #close()}, or its last client left when not persistent. */
    public void awaitTermination() throws InterruptedException {
        server.awaitTermination();
    }

    /** {@link #awaitTermination()} for at most {@code timeout}; whether the server stopped. */
    public boolean awaitTermination(long timeout, TimeUnit unit) throws InterruptedException {
        return server.awaitTermination(timeout, unit);
    }

    /**
     * Stops the server: no new client; requests in flight are answered (a client that does not read its replies
     * within 10 s is cut off), connections closed, writable images flushed. The images stay open. A Unix socket file
     * is removed.
     */
    @Override
    public void close() throws IOException {
        server.close();
    }

    /** How to build an {@link NbdServer}. */
    public static final class Builder {
        private final List<NbdExport> exports = new ArrayList<>();
        private SocketAddress address = new InetSocketAddress(10809);
        private int maxConnections = 1;
        private boolean persistent = true;
        private int workers = 4;
        private TlsCredentials tls;
        private Consumer<String> log = s -> { };

        private Builder() {
        }

        /** Adds an export; names must differ. LIST shows the exports in this order. */
        public Builder export(NbdExport export) {
            exports.add(Objects.requireNonNull(export));
            return this;
        }

        /** Listens on a Unix socket ({@code qemu-nbd -k PATH}); an old socket file there is replaced. */
        public Builder unixSocket(Path path) {
            this.address = UnixDomainSocketAddress.of(path);
            return this;
        }

        /** Listens on TCP ({@code -b ADDR -p PORT}; port 0 picks a free one, see {@link NbdServer#address()}). */
        public Builder tcp(InetSocketAddress address) {
            this.address = Objects.requireNonNull(address);
            return this;
        }

        /** Clients at once ({@code -e N}, default 1; 0 for no limit). Other than 1, exports offer multi-conn. */
        public Builder maxConnections(int n) {
            if (n < 0) {
                throw new IllegalArgumentException("Invalid shared device number '" + n + "'");
            }
            this.maxConnections = n;
            return this;
        }

        /**
         * Whether the server goes on after its last client leaves (default true; qemu-nbd stops unless {@code -t},
         * as {@code ./qcow4j nbd} does).
         */
        public Builder persistent(boolean keep) {
            this.persistent = keep;
            return this;
        }

        /** Threads per connection that run its requests (default 4; up to 16 requests are in flight). */
        public Builder workersPerConnection(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("workers: " + n);
            }
            this.workers = n;
            return this;
        }

        /**
         * Offers TLS ({@code qemu-nbd --tls-creds}): clients must send STARTTLS before anything else (other options are
         * answered ERR_TLS_REQD) and then speak through TLS ({@code nbds://}). Null (the default) offers none.
         */
        public Builder tls(TlsCredentials credentials) {
            this.tls = credentials;
            return this;
        }

        /** Where the server reports what qemu-nbd prints on stderr (clients dropped, failed requests). */
        public Builder log(Consumer<String> sink) {
            this.log = Objects.requireNonNull(sink);
            return this;
        }

        /** Binds the address and starts serving. */
        public NbdServer start() throws IOException {
            if (exports.isEmpty()) {
                throw new IllegalStateException("no export");
            }
            Set<String> names = new HashSet<>();
            for (NbdExport e : exports) {
                if (!names.add(e.name())) {
                    throw new IllegalArgumentException("export '" + e.name() + "' given twice");
                }
            }
            Server s = new Server(List.copyOf(exports), address, maxConnections, persistent, workers, tls, log);
            s.start();
            return new NbdServer(s);
        }
    }
}
