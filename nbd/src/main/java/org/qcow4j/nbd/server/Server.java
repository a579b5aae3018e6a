package org.qcow4j.nbd.server;

import java.io.IOException;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.qcow4j.DiskImage;
import org.qcow4j.nbd.NbdExport;
import org.qcow4j.nbd.TlsCredentials;

/**
 * The listening side (qemu-nbd's main loop): accepts clients while fewer than {@code maxConnections} are connected
 * (a client beyond that waits in the listen backlog, as with qemu-nbd), runs each on its own thread, and stops once
 * the last client that got past the handshake leaves, unless persistent. {@link #close()} stops it: no new clients,
 * requests in flight answered, then the connections closed and the writable images flushed.
 */
public final class Server implements AutoCloseable {
    /** How long {@link #close()} lets clients take their last replies before their sockets are closed. */
    private static final long DRAIN_MILLIS = 10_000;
    private static final int S_IFMT = 0170000;
    private static final int S_IFSOCK = 0140000;

    private final List<ServedExport> exports = new ArrayList<>();
    private final SocketAddress bind;
    private final TlsCredentials tls;
    /** Payload buffers for all connections: at most 64 direct slabs (16 MiB). */
    private final BufferPool buffers = new BufferPool(64);
    private final int maxConnections;
    private final boolean persistent;
    private final int workers;
    private final Consumer<String> log;
    private final Set<Connection> connections = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
    private final CountDownLatch terminated = new CountDownLatch(1);
    private ServerSocketChannel listener;
    private Thread acceptor;
    private boolean stopping;
    private boolean listenerClosed;
    private Path socketFile;
    private boolean closed;

    /**
     * @param maxConnections clients at once (qemu-nbd's {@code -e}; 0 for no limit)
     * @param persistent     whether the server goes on after its last client leaves ({@code -t})
     * @param workers        threads per connection that run its requests
     * @param tls            credentials when clients must start TLS first ({@code --tls-creds}), or null
     */
    public Server(List<NbdExport> exports, SocketAddress bind, int maxConnections, boolean persistent, int workers,
                  TlsCredentials tls, Consumer<String> log) {
        this.tls = tls;
        for (NbdExport e : exports) {
            this.exports.add(new ServedExport(e, maxConnections != 1));
        }
        this.bind = bind;
        this.maxConnections = maxConnections;
        this.persistent = persistent;
        this.workers = workers;
        this.log = log;
    }

    /** Binds the socket and starts accepting. */
    public void start() throws IOException {
        if (bind instanceof UnixDomainSocketAddress u) {
            Path p = u.getPath();
            if (isSocket(p)) {
                Files.delete(p); // a socket left by an earlier server, as QEMU's unix_listen unlinks it
            }
            listener = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            listener.bind(u);
            socketFile = p;
        } else {
            listener = ServerSocketChannel.open();
            listener.bind(bind);
        }
        acceptor = new Thread(this::accept, "nbd-accept");
        acceptor.setDaemon(true);
        acceptor.start();
    }

    private static boolean isSocket(Path p) {
        try {
            Object mode = Files.getAttribute(p, "unix:mode", LinkOption.NOFOLLOW_LINKS);
            return mode instanceof Integer m && (m & S_IFMT) == S_IFSOCK;
        } catch (IOException | UnsupportedOperationException | IllegalArgumentException e) {
            return false;
        }
    }

    /** The address clients connect to (the port chosen when 0 was asked for). */
    public SocketAddress address() throws IOException {
        return listener.getLocalAddress();
    }

    private void accept() {
        try {
            while (true) {
                synchronized (this) {
                    while (!stopping && maxConnections > 0 && connections.size() >= maxConnections) {
                        wait();
                    }
                    if (stopping) {
                        return;
                    }
                }
                SocketChannel ch = listener.accept();
                Connection c = new Connection(new Transport(ch), exports, tls, buffers, workers, log,
                        this::closed);
                synchronized (this) {
                    if (stopping) {
                        ch.close();
                        return;
                    }
                    connections.add(c);
                }
                Thread t = new Thread(c, "nbd-conn-" + c.id());
                t.setDaemon(true);
                t.start();
            }
        } catch (ClosedChannelException e) {
            // stopped
        } catch (IOException e) {
            log.accept("accept failed: " + e.getMessage());
            stop();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            synchronized (this) {
                listenerClosed = true;
                checkTerminated();
            }
        }
    }

    private synchronized void closed(Connection c, boolean negotiated) {
        connections.remove(c);
        if (negotiated && connections.isEmpty() && !persistent) {
            stop();
        }
        notifyAll();
        checkTerminated();
    }

    private void checkTerminated() {
        if (stopping && listenerClosed && connections.isEmpty()) {
            terminated.countDown();
        }
    }

    /** Stops accepting and asks every connection to finish; returns at once. */
    public synchronized void stop() {
        if (!stopping) {
            stopping = true;
            try {
                listener.close();
            } catch (IOException e) {
                // closed anyway
            }
            for (Connection c : connections) {
                c.shutdown();
            }
            notifyAll();
        }
        checkTerminated();
    }

    /** Waits until the server has stopped and every connection ended. */
    public boolean awaitTermination(long timeout, TimeUnit unit) throws InterruptedException {
        return terminated.await(timeout, unit);
    }

    /** Waits until the server has stopped (after {@link #stop()}, or its last client left when not persistent). */
    public void awaitTermination() throws InterruptedException {
        terminated.await();
    }

    /** Clients connected now. */
    public synchronized int connections() {
        return connections.size();
    }

    /**
     * Stops the server: no new client, requests in flight answered (clients that do not take their replies within
     * 10 s are cut off), connections closed, then every writable image flushed. The images stay open. Closing again
     * does nothing.
     */
    @Override
    public void close() throws IOException {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        stop();
        boolean interrupted = false;
        try {
            if (!terminated.await(DRAIN_MILLIS, TimeUnit.MILLISECONDS)) {
                List<Connection> left;
                synchronized (this) {
                    left = new ArrayList<>(connections);
                }
                left.forEach(Connection::abort);
                terminated.await(DRAIN_MILLIS, TimeUnit.MILLISECONDS);
            }
        } catch (InterruptedException e) {
            interrupted = true;
        }
        try {
            if (acceptor != null) {
                acceptor.join(DRAIN_MILLIS);
            }
        } catch (InterruptedException e) {
            interrupted = true;
        }
        IOException failure = null;
        Map<DiskImage, Boolean> flushed = new IdentityHashMap<>();
        for (ServedExport e : exports) {
            if (!e.readOnly() && flushed.put(e.export().image(), Boolean.TRUE) == null) {
                try {
                    e.flush();
                } catch (IOException ex) {
                    failure = failure == null ? ex : failure;
                }
            }
        }
        if (socketFile != null) {
            Files.deleteIfExists(socketFile);
            socketFile = null;
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        if (failure != null) {
            throw failure;
        }
    }
}
