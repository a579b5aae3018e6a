package org.qcow4j.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.qcow4j.QcowException;

/**
 * Runs a reader on a damaged input (for the fuzz tests of every module): it must finish within a time limit and
 * either succeed or fail with the refusal it documents (a {@link QcowException} naming the file for the library).
 * Anything else, or a hang, is an {@link AssertionError} carrying what was thrown.
 */
public final class DamagedInput {
    /** One worker thread, reused between runs (the coverage-guided targets run thousands a second). */
    private static ExecutorService worker = newWorker();
    private static Thread workerThread;

    private DamagedInput() {
    }

    /** The work to do on the input. */
    @FunctionalInterface
    public interface Reader {
        void read() throws Exception;
    }

    /** Returns true if {@code reader} succeeded, false if it refused the input with a QcowException. */
    public static boolean readOrRefuse(Path input, long millis, Reader reader) throws IOException {
        try {
            return runOrRefuse(millis, QcowException.class, reader);
        } catch (AssertionError e) {
            Path keep = input.resolveSibling("crash-" + System.nanoTime() + "-" + input.getFileName());
            Files.copy(input, keep);
            throw new AssertionError(e.getMessage() + " (input kept as " + keep + ")", e.getCause());
        }
    }

    /**
     * Returns true if {@code reader} succeeded within {@code millis}, false if it threw a {@code refusal} (a
     * QcowException must name its file). A hang or any other throwable is an AssertionError.
     */
    public static synchronized boolean runOrRefuse(long millis, Class<? extends Exception> refusal, Reader reader) {
        Future<?> run = worker.submit(() -> {
            reader.read();
            return null;
        });
        try {
            run.get(millis, TimeUnit.MILLISECONDS);
            return true;
        } catch (TimeoutException e) {
            AssertionError hang = new AssertionError("did not finish in " + millis + " ms (the stack: where it was)");
            hang.setStackTrace(workerThread.getStackTrace());
            run.cancel(true);
            worker.shutdownNow();
            worker = newWorker(); // the old thread may spin on: it is a daemon
            throw hang;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        } catch (ExecutionException e) {
            Throwable t = e.getCause();
            if (refusal.isInstance(t) && !(t instanceof QcowException && !t.getMessage().contains(": "))) {
                return false;
            }
            throw new AssertionError(refusal.isInstance(t) ? "message names no file: " + t.getMessage()
                    : "not a " + refusal.getSimpleName() + ": " + t, t);
        }
    }

    private static ExecutorService newWorker() {
        return Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "damaged-input");
            t.setDaemon(true);
            workerThread = t;
            return t;
        });
    }
}
