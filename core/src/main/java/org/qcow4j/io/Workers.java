package org.qcow4j.io;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/**
 * A pool of worker threads with a bounded window of tasks in flight, whose results are taken in submission
 * order: what the converters need to read and compress in parallel yet write in guest order with bounded memory.
 * A task's exception is rethrown as it was by {@link #next}.
 */
public final class Workers<T> implements AutoCloseable {
    private final ExecutorService pool;
    private final Deque<Future<T>> inFlight = new ArrayDeque<>();
    private final int window;

    /** {@code threads} workers, at most two tasks each in flight. */
    public Workers(int threads) {
        this.window = 2 * threads;
        this.pool = Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, "qcow4j-worker");
            t.setDaemon(true);
            return t;
        });
    }

    /** Whether the window is full: take the {@link #next} result before submitting more. */
    public boolean full() {
        return inFlight.size() >= window;
    }

    public boolean isEmpty() {
        return inFlight.isEmpty();
    }

    public void submit(Callable<T> task) {
        inFlight.add(pool.submit(task));
    }

    /** Waits for the oldest task and returns its result. */
    public T next() throws IOException {
        try {
            return inFlight.poll().get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted");
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof IOException io) {
                throw io;
            } else if (c instanceof RuntimeException re) {
                throw re;
            } else if (c instanceof Error err) {
                throw err;
            }
            throw new IOException(c);
        }
    }

    /**
     * Drops the tasks not started and waits (a minute at most) for the running ones. Not {@code shutdownNow}: an interrupt in the middle
     * of a read closes the {@code FileChannel} it reads (the input image, which the caller still owns), and the
     * error that stopped the work (a full disk) would then be followed by closed-channel errors.
     */
    @Override
    public void close() {
        for (Future<T> f : inFlight) {
            f.cancel(false);
        }
        inFlight.clear();
        pool.shutdown();
        try {
            pool.awaitTermination(1, TimeUnit.MINUTES); // a chunk each at most; the threads are daemons anyway
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
