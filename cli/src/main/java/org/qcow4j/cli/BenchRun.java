package org.qcow4j.cli;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.qcow4j.DiskImage;
import org.qcow4j.IoBuffers;
import org.qcow4j.WritableImage;

/**
 * The requests of one {@code bench} run, sent as {@code qemu-img bench}'s {@code bench_cb} sends them, with threads
 * in place of QEMU's asynchronous I/O: a queue depth of N is N worker threads, each sending one synchronous request
 * at a time, so that at most N requests are in flight.
 *
 * <p>The order of the offsets is qemu's: request {@code i} goes to the {@code i}-th offset of the walk that starts at
 * {@code -o} and adds the step modulo the image size after each request ({@code b->offset += b->step;
 * b->offset %= b->image_size}). Requests are claimed in that order; with several threads they may complete in another
 * order, as they may in QEMU. A request that does not lie inside the image fails as QEMU's
 * {@code blk_check_byte_request} makes it fail, with EIO ("Input/output error").
 *
 * <p>Flushes ({@code --flush-interval=N}, writes only) come where qemu's {@code bench_cb} puts them: whenever a request
 * completes while the number of requests not yet sent is a multiple of N. With draining (the default) no request is
 * sent from then until the requests in flight have completed and the flush has finished; with {@code --no-drain}
 * the thread that completed the request flushes, while the others carry on.
 */
final class BenchRun {
    /** A failed request or flush: the text qemu-img prints ("Failed request: ..."). */
    static final class Failure extends Exception {
        private static final long serialVersionUID = 1L;

        Failure(String message, Throwable cause) {
            super(message, cause);
        }
    }

    private final DiskImage image;
    private final WritableImage writable;
    private final long imageSize;
    private final int bufsize;
    private final long step;
    private final long start;
    private final int count;
    private final int flushInterval;
    private final boolean drainOnFlush;
    private final byte pattern;

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    /** Requests not completed yet (qemu's {@code b->n}). */
    private int n;
    /** Requests sent and not completed (qemu's {@code b->in_flight}). */
    private int inFlight;
    /** Requests sent so far: the index of the next one in the walk. */
    private int sent;
    /** A drained flush is due or running: no request may be sent. */
    private boolean draining;
    private Failure failure;

    /**
     * @param writable the image to write, or null for a read run of {@code image}
     */
    BenchRun(DiskImage image, WritableImage writable, int bufsize, long step, long start, int count, int flushInterval,
             boolean drainOnFlush, int pattern) {
        this.image = image;
        this.writable = writable;
        this.imageSize = image.size();
        this.bufsize = bufsize;
        this.step = step;
        this.start = start;
        this.count = count;
        this.flushInterval = flushInterval;
        this.drainOnFlush = drainOnFlush;
        this.pattern = (byte) pattern;
        this.n = count;
    }

    /**
     * The guest offset of request {@code i}: {@code -o} itself first (even past the end of the image, where the
     * request then fails), then {@code (start + i * step) mod size}, which is what qemu's repeated
     * {@code offset = (offset + step) % size} gives. A 0-byte image, where qemu-img divides by zero (SIGFPE), keeps
     * every later offset at 0, as later QEMU versions do.
     */
    long offsetOf(int i) {
        if (i == 0) {
            return start;
        }
        if (imageSize == 0) {
            return 0;
        }
        long a = Long.remainderUnsigned(start, imageSize);
        long b = Long.remainderUnsigned((long) i * step, imageSize); // i, step < 2^31: no overflow
        return Long.remainderUnsigned(a + b, imageSize); // a + b < 2^64: exact as unsigned
    }

    /**
     * Sends every request on {@code threads} threads (1 or more), flushes as asked, and for a write run flushes once
     * more at the end (qemu-img flushes when it closes the image). Returns when all is done.
     */
    void run(int threads) throws Failure, InterruptedException {
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            ByteBuffer buf = IoBuffers.allocate(bufsize);
            if (writable != null) {
                for (int k = 0; k < bufsize; k++) {
                    buf.put(k, pattern);
                }
            }
            Thread w = new Thread(() -> work(buf), "bench-" + t);
            w.setDaemon(true);
            workers.add(w);
        }
        workers.forEach(Thread::start);
        for (Thread w : workers) {
            w.join();
        }
        if (failure != null) {
            throw failure;
        }
        if (writable != null) {
            flush();
        }
    }

    private void work(ByteBuffer buf) {
        try {
            while (true) {
                long offset;
                lock.lock();
                try {
                    while (failure == null && sent < count && draining) {
                        changed.await();
                    }
                    if (failure != null || sent >= count) {
                        return;
                    }
                    offset = offsetOf(sent++);
                    inFlight++;
                } finally {
                    lock.unlock();
                }

                request(buf, offset);

                boolean drainedFlush = false;
                boolean undrainedFlush = false;
                lock.lock();
                try {
                    int remaining = n - inFlight; // requests not sent yet
                    n--;
                    inFlight--;
                    if (flushInterval != 0 && remaining % flushInterval == 0) {
                        if (drainOnFlush) {
                            draining = true;
                            drainedFlush = inFlight == 0;
                        } else {
                            undrainedFlush = true;
                        }
                    }
                    changed.signalAll();
                } finally {
                    lock.unlock();
                }
                if (drainedFlush || undrainedFlush) {
                    flush();
                }
                if (drainedFlush) {
                    lock.lock();
                    try {
                        draining = false;
                        changed.signalAll();
                    } finally {
                        lock.unlock();
                    }
                }
            }
        } catch (Failure f) {
            fail(f);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            fail(new Failure("Failed request: interrupted", e));
        } catch (RuntimeException | Error e) {
            fail(new Failure("Failed request: " + e, e));
        }
    }

    private void request(ByteBuffer buf, long offset) throws Failure {
        // blk_check_byte_request: the whole request inside the image, or EIO.
        if (Long.compareUnsigned(offset, imageSize) > 0 || imageSize - offset < bufsize) {
            throw new Failure("Failed request: Input/output error", null);
        }
        buf.clear();
        try {
            if (writable != null) {
                writable.write(buf, offset);
            } else {
                image.read(buf, offset);
            }
        } catch (IOException e) {
            throw new Failure("Failed request: " + describe(e), e);
        }
    }

    private void flush() throws Failure {
        try {
            writable.flush();
        } catch (IOException e) {
            throw new Failure("Failed flush request: " + describe(e), e);
        }
    }

    private static String describe(IOException e) {
        return e.getMessage() != null ? e.getMessage() : e.toString();
    }

    private void fail(Failure f) {
        lock.lock();
        try {
            if (failure == null) {
                failure = f;
            }
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }
}
