package org.qcow4j.nbd.server;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.qcow4j.Extent;
import org.qcow4j.nbd.TlsCredentials;
import org.qcow4j.nbd.wire.Protocol;

/**
 * One client: the handshake, then the transmission phase. This connection's thread reads requests in order and
 * checks them as qemu-nbd's {@code nbd_co_receive_request} does; each valid request then runs on the connection's
 * own small worker pool, so up to {@link Protocol#MAX_REQUESTS} requests are in flight and answered as they complete
 * (a slow client or slow request holds only this connection's workers). Payload memory in flight is bounded by
 * {@link #BUFFER_BUDGET}.
 */
final class Connection implements Runnable {
    /** Payload bytes (write data and read buffers) one connection may hold at once. */
    static final int BUFFER_BUDGET = 2 * Protocol.MAX_BUFFER_SIZE;
    private static final AtomicInteger IDS = new AtomicInteger();

    private final Transport transport;
    private final List<ServedExport> exports;
    private final TlsCredentials tls;
    private final BufferPool buffers;
    private final Consumer<String> log;
    private final ConnectionListener listener;
    private final int workers;
    private final int id = IDS.incrementAndGet();
    private final Semaphore inFlight = new Semaphore(Protocol.MAX_REQUESTS);
    private final Semaphore budget = new Semaphore(BUFFER_BUDGET);
    private volatile boolean closing;
    /** What the handshake negotiated; set before the first request is read. */
    private Handshake.Result negotiated;

    /** Told when a connection ends, and whether it got past the handshake. */
    interface ConnectionListener {
        void closed(Connection connection, boolean negotiated);
    }

    Connection(Transport transport, List<ServedExport> exports, TlsCredentials tls, BufferPool buffers, int workers,
               Consumer<String> log, ConnectionListener listener) {
        this.transport = transport;
        this.buffers = buffers;
        this.exports = exports;
        this.tls = tls;
        this.workers = workers;
        this.log = log;
        this.listener = listener;
    }

    int id() {
        return id;
    }

    /**
     * Asks the connection to end: no further request is read; those in flight complete and are answered. The
     * socket's input is shut so that a reader waiting for a request wakes up (a handshake ends there too).
     */
    void shutdown() {
        closing = true;
        transport.shutdownInput();
    }

    /** Closes the socket at once: for a client that does not take its replies when the server stops. */
    void abort() {
        closing = true;
        try {
            transport.close();
        } catch (IOException e) {
            // closed anyway
        }
    }

    @Override
    public void run() {
        boolean negotiated = false;
        try {
            Handshake.Result r = new Handshake(transport, exports, tls).run();
            if (r != null && !closing) {
                negotiated = true;
                transmission(r);
            }
        } catch (Handshake.Dropped e) {
            log.accept(e.getMessage());
        } catch (IOException e) {
            if (!closing) {
                log.accept("Disconnect client, due to: " + describe(e));
            }
        } catch (RuntimeException e) {
            log.accept("Disconnect client, due to: " + e);
        } finally {
            try {
                transport.close();
            } catch (IOException e) {
                // closing anyway
            }
            listener.closed(this, negotiated);
        }
    }

    private static String describe(IOException e) {
        if (e instanceof EOFException) {
            return "Unexpected end-of-file before all data were read";
        }
        return e.getMessage() == null ? e.toString() : e.getMessage();
    }

    private void transmission(Handshake.Result r) throws IOException {
        negotiated = r;
        ServedExport exp = r.export();
        Replies replies = new Replies(transport, r.structured());
        ThreadPoolExecutor pool = new ThreadPoolExecutor(workers, workers, 10, TimeUnit.SECONDS,
                new LinkedBlockingQueue<>(), task -> {
                    Thread t = new Thread(task, "nbd-" + id + "-worker");
                    t.setDaemon(true);
                    return t;
                });
        pool.allowCoreThreadTimeOut(true);
        ByteBuffer head = ByteBuffer.allocate(28);
        try {
            while (!closing && !replies.broken()) {
                inFlight.acquireUninterruptibly();
                head.clear();
                boolean got;
                try {
                    got = transport.readFullyOrEof(head);
                } catch (IOException e) {
                    inFlight.release();
                    if (closing) {
                        return;
                    }
                    throw e;
                }
                if (!got) {
                    inFlight.release();
                    return; // the client hung up between requests
                }
                Request q = new Request(head.getInt(0), head.getShort(4) & 0xffff, head.getShort(6) & 0xffff,
                        head.getLong(8), head.getLong(16), head.getInt(24) & 0xffffffffL);
                if (!receive(q, exp, replies, pool)) {
                    inFlight.release();
                    return;
                }
            }
        } finally {
            pool.shutdown();
            try {
                if (!pool.awaitTermination(60, TimeUnit.SECONDS)) {
                    pool.shutdownNow();
                }
            } catch (InterruptedException e) {
                pool.shutdownNow();
                Thread.currentThread().interrupt();
            }
        }
    }

    private record Request(int magic, int flags, int type, long cookie, long offset, long length) {
    }

    /**
     * Checks one request (and reads a WRITE's payload), then hands it to a worker; an invalid one is answered with
     * EINVAL and qemu-nbd's message at once. Returns false when the connection must end.
     */
    private boolean receive(Request q, ServedExport exp, Replies replies, ExecutorService pool) throws IOException {
        if (q.magic != Protocol.REQUEST_MAGIC) {
            log.accept(String.format("Disconnect client, due to: invalid magic (got 0x%x)", q.magic));
            return false;
        }
        if (q.type == Protocol.CMD_DISC) {
            return false;
        }
        String error = null;
        ByteBuffer data = null;
        int held = 0;
        if (q.type == Protocol.CMD_READ || q.type == Protocol.CMD_WRITE || q.type == Protocol.CMD_CACHE) {
            if (q.length > Protocol.MAX_BUFFER_SIZE) {
                error = "len (" + q.length + " ) is larger than max len (" + Protocol.MAX_BUFFER_SIZE + ")";
                if (q.type == Protocol.CMD_WRITE) {
                    // the payload was not read: answer, then the stream is lost
                    replies.generic(q.cookie, Protocol.EINVAL, error);
                    log.accept("Disconnect client, due to: Request handling failed in intermediate state");
                    return false;
                }
            } else if (q.type != Protocol.CMD_CACHE) {
                held = (int) q.length;
                budget.acquireUninterruptibly(held);
                if (q.type == Protocol.CMD_WRITE) {
                    data = buffers.acquire(held);
                    try {
                        transport.readFully(data);
                    } catch (IOException e) {
                        buffers.release(data);
                        budget.release(held);
                        throw e;
                    }
                    data.flip();
                }
            }
        }
        if (error == null) {
            error = check(q, exp, replies.structured());
        }
        if (error != null) {
            buffers.release(data);
            budget.release(held);
            replies.generic(q.cookie, Protocol.EINVAL, error);
            inFlight.release();
            return true;
        }
        ByteBuffer payload = data;
        int bytes = held;
        try {
            pool.execute(() -> {
                try {
                    handle(q, exp, replies, payload);
                } catch (IOException e) {
                    // the reply could not be sent: Replies closed the socket, the reader ends
                } finally {
                    buffers.release(payload);
                    budget.release(bytes);
                    inFlight.release();
                }
            });
        } catch (RejectedExecutionException e) {
            buffers.release(payload);
            budget.release(bytes);
            inFlight.release();
            return false;
        }
        return true;
    }

    /** qemu's sanity checks, in its order; the message for the client, or null. */
    private static String check(Request q, ServedExport exp, boolean structured) {
        if (exp.readOnly() && (q.type == Protocol.CMD_WRITE || q.type == Protocol.CMD_WRITE_ZEROES
                || q.type == Protocol.CMD_TRIM)) {
            return "Export is read-only";
        }
        if (q.offset < 0 || Long.compareUnsigned(q.offset, exp.size()) > 0 || q.length > exp.size() - q.offset) {
            return "operation past EOF; From: " + Long.toUnsignedString(q.offset) + ", Len: " + q.length + ", Size: "
                    + exp.size();
        }
        int valid = Protocol.CMD_FLAG_FUA;
        if (q.type == Protocol.CMD_READ && structured) {
            valid |= Protocol.CMD_FLAG_DF;
        } else if (q.type == Protocol.CMD_WRITE_ZEROES) {
            valid |= Protocol.CMD_FLAG_NO_HOLE | Protocol.CMD_FLAG_FAST_ZERO;
        } else if (q.type == Protocol.CMD_BLOCK_STATUS) {
            valid |= Protocol.CMD_FLAG_REQ_ONE;
        }
        if ((q.flags & ~valid) != 0) {
            return String.format("unsupported flags for command %s (got 0x%x)", Protocol.commandName(q.type), q.flags);
        }
        return null;
    }

    /** Runs one checked request and answers it (qemu's {@code nbd_handle_request}). */
    private void handle(Request q, ServedExport exp, Replies replies, ByteBuffer payload) throws IOException {
        boolean fua = (q.flags & Protocol.CMD_FLAG_FUA) != 0;
        switch (q.type) {
            case Protocol.CMD_READ -> read(q, exp, replies, fua);
            case Protocol.CMD_CACHE -> replies.generic(q.cookie, 0, null);
            case Protocol.CMD_WRITE -> {
                int err = 0;
                try {
                    exp.write(payload, q.offset, fua);
                } catch (IOException e) {
                    err = errno(e);
                }
                replies.generic(q.cookie, err, "writing to file failed");
            }
            case Protocol.CMD_WRITE_ZEROES -> {
                int err = 0;
                try {
                    if (!exp.writeZeroes(q.offset, q.length, (q.flags & Protocol.CMD_FLAG_NO_HOLE) == 0,
                            (q.flags & Protocol.CMD_FLAG_FAST_ZERO) != 0, fua)) {
                        err = Protocol.ENOTSUP;
                    }
                } catch (IOException e) {
                    err = errno(e);
                }
                replies.generic(q.cookie, err, "writing to file failed");
            }
            case Protocol.CMD_FLUSH -> {
                int err = 0;
                try {
                    exp.flush();
                } catch (IOException e) {
                    err = errno(e);
                }
                replies.generic(q.cookie, err, "flush failed");
            }
            case Protocol.CMD_TRIM -> {
                int err = 0;
                try {
                    exp.trim(q.offset, q.length, fua);
                } catch (IOException e) {
                    err = errno(e);
                }
                replies.generic(q.cookie, err, "discard failed");
            }
            case Protocol.CMD_BLOCK_STATUS -> blockStatus(q, exp, replies);
            default -> replies.generic(q.cookie, Protocol.EINVAL, "invalid request type (" + q.type + ") received");
        }
    }

    /** The NBD error for a failed image operation: ENOSPC for a full disk, else EIO. */
    private int errno(IOException e) {
        log.accept("nbd: " + (e.getMessage() == null ? e.toString() : e.getMessage()));
        for (Throwable t = e; t != null; t = t.getCause()) {
            String m = t.getMessage();
            if (m != null && (m.contains("No space left on device") || m.contains("Disk quota exceeded"))) {
                return Protocol.ENOSPC;
            }
        }
        return Protocol.EIO;
    }

    private void read(Request q, ServedExport exp, Replies replies, boolean fua) throws IOException {
        if (fua) {
            try {
                exp.flush();
            } catch (IOException e) {
                replies.generic(q.cookie, errno(e), "flush failed");
                return;
            }
        }
        int len = (int) q.length;
        boolean df = (q.flags & Protocol.CMD_FLAG_DF) != 0;
        if (replies.structured() && !df && len > 0) {
            sparseRead(q, exp, replies);
            return;
        }
        ByteBuffer data = buffers.acquire(len);
        try {
            try {
                exp.read(data, q.offset);
            } catch (IOException e) {
                replies.generic(q.cookie, errno(e), "reading from file failed");
                return;
            }
            data.flip();
            if (!replies.structured()) {
                replies.simple(q.cookie, 0, data);
            } else if (len > 0) {
                replies.data(q.cookie, q.offset, data, true);
            } else {
                replies.done(q.cookie);
            }
        } finally {
            buffers.release(data);
        }
    }

    /** A structured read: zero runs as OFFSET_HOLE chunks, the rest as OFFSET_DATA (qemu's sparse read). */
    private void sparseRead(Request q, ServedExport exp, Replies replies) throws IOException {
        long end = q.offset + q.length;
        long pos = q.offset;
        while (pos < end) {
            long runEnd;
            boolean zero;
            try {
                Extent e = exp.blockStatus(pos, end - pos);
                zero = e.zero();
                runEnd = Math.min(end, e.end());
                while (runEnd < end) { // join the runs that read alike: fewer chunks
                    Extent next = exp.blockStatus(runEnd, end - runEnd);
                    if (next.zero() != zero) {
                        break;
                    }
                    runEnd = Math.min(end, next.end());
                }
            } catch (IOException e) {
                replies.error(q.cookie, errno(e), "unable to check for holes: " + e.getMessage());
                return;
            }
            if (zero) {
                replies.hole(q.cookie, pos, (int) (runEnd - pos), runEnd == end);
                pos = runEnd;
                continue;
            }
            while (pos < runEnd) { // data in chunks of at most a pooled buffer
                int n = (int) Math.min(runEnd - pos, BufferPool.SLAB);
                ByteBuffer data = buffers.acquire(n);
                try {
                    try {
                        exp.read(data, pos);
                    } catch (IOException e) {
                        replies.error(q.cookie, errno(e), "reading from file failed");
                        return;
                    }
                    replies.data(q.cookie, pos, data.flip(), pos + n == end);
                } finally {
                    buffers.release(data);
                }
                pos += n;
            }
        }
    }

    private void blockStatus(Request q, ServedExport exp, Replies replies) throws IOException {
        if (q.length == 0) {
            replies.generic(q.cookie, Protocol.EINVAL, "need non-zero length");
            return;
        }
        Handshake.Result r = this.negotiated;
        int remaining = (r.metaBase() ? 1 : 0) + (r.metaDepth() ? 1 : 0) + r.metaBitmaps().size();
        if (remaining == 0) {
            replies.generic(q.cookie, Protocol.EINVAL, "CMD_BLOCK_STATUS not negotiated");
            return;
        }
        boolean one = (q.flags & Protocol.CMD_FLAG_REQ_ONE) != 0;
        for (int context : new int[] {Protocol.META_BASE_ALLOCATION, Protocol.META_ALLOCATION_DEPTH}) {
            if (context == Protocol.META_BASE_ALLOCATION ? !r.metaBase() : !r.metaDepth()) {
                continue;
            }
            remaining--;
            Extents list = new Extents(one ? 1 : Protocol.MAX_BLOCK_STATUS_EXTENTS);
            try {
                long pos = q.offset;
                long end = q.offset + q.length;
                while (pos < end) {
                    Extent e = context == Protocol.META_BASE_ALLOCATION ? exp.blockStatus(pos, end - pos)
                            : exp.extentAt(pos, end - pos);
                    long n;
                    int flags;
                    if (context == Protocol.META_BASE_ALLOCATION) {
                        n = Math.min(end, e.end()) - pos;
                        flags = (e.data() ? 0 : Protocol.STATE_HOLE) | (e.zero() ? Protocol.STATE_ZERO : 0);
                    } else {
                        long[] depth = exp.allocationDepth(e, end);
                        n = depth[1] - pos;
                        flags = (int) depth[0];
                    }
                    if (!list.add(n, flags)) {
                        break;
                    }
                    pos += n;
                }
            } catch (IOException e) {
                replies.error(q.cookie, errno(e), "can't get block status");
                return;
            }
            replies.blockStatus(q.cookie, context, list.pairs, list.count, remaining == 0);
        }
        for (int i : r.metaBitmaps()) {
            remaining--;
            Extents list = new Extents(one ? 1 : Protocol.MAX_BLOCK_STATUS_EXTENTS);
            // qemu's bitmap_to_extents: clean and dirty runs within the request, then the clean rest
            long pos = q.offset;
            long end = q.offset + q.length;
            boolean full = false;
            try {
                for (long[] run : exp.dirtyRanges(i, pos, end - pos)) {
                    if ((run[0] > pos && !list.add(run[0] - pos, 0)) || !list.add(run[1], Protocol.STATE_DIRTY)) {
                        full = true;
                        break;
                    }
                    pos = run[0] + run[1];
                }
            } catch (IOException e) {
                replies.error(q.cookie, errno(e), "can't get block status");
                return;
            }
            if (!full && end > pos) {
                list.add(end - pos, 0);
            }
            replies.blockStatus(q.cookie, Protocol.META_DIRTY_BITMAP + i, list.pairs, list.count, remaining == 0);
        }
    }

    /** Extents of one block-status chunk, neighbours with equal flags merged (qemu's {@code nbd_extent_array_add}). */
    private static final class Extents {
        private final int max;
        int[] pairs = new int[16];
        int count;

        Extents(int max) {
            this.max = max;
        }

        /** Adds a run; false when the array is full (the reply then covers less than asked, as allowed). */
        boolean add(long length, int flags) {
            if (count > 0 && pairs[2 * count - 1] == flags
                    && (pairs[2 * count - 2] & 0xffffffffL) + length <= 0xffffffffL) {
                pairs[2 * count - 2] += (int) length;
                return true;
            }
            if (count >= max) {
                return false;
            }
            if (2 * count + 2 > pairs.length) {
                pairs = java.util.Arrays.copyOf(pairs, pairs.length * 2);
            }
            pairs[2 * count] = (int) length;
            pairs[2 * count + 1] = flags;
            count++;
            return true;
        }
    }
}
