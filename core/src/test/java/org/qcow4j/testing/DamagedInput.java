package org.qcow4j.testing;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.qcow4j.QcowException;

/**
 * Runs a reader on a damaged input (for the fuzz tests of every module): it must finish within a time limit and
 * either succeed or fail with a {@link QcowException}. Anything else fails the test, keeping a copy of the input.
 */
public final class DamagedInput {
    private DamagedInput() {
    }

    /** The work to do on the input. */
    @FunctionalInterface
    public interface Reader {
        void read() throws Exception;
    }

    /** Returns true if {@code reader} succeeded, false if it refused the input with a QcowException. */
    public static boolean readOrRefuse(Path input, long millis, Reader reader) throws IOException, InterruptedException {
        Boolean[] ok = new Boolean[1];
        Throwable[] thrown = new Throwable[1];
        Thread t = new Thread(() -> {
            try {
                reader.read();
                ok[0] = true;
            } catch (QcowException e) {
                ok[0] = false;
                thrown[0] = e.getMessage().contains(": ") ? null : new AssertionError("message names no file", e);
            } catch (Throwable e) {
                thrown[0] = e;
            }
        });
        t.setDaemon(true);
        t.start();
        t.join(millis);
        if (t.isAlive()) {
            fail("reading " + input + " did not finish in " + millis + " ms");
        }
        if (thrown[0] != null) {
            Path keep = input.resolveSibling("crash-" + System.nanoTime() + "-" + input.getFileName());
            Files.copy(input, keep);
            throw new AssertionError("not a QcowException on a damaged input (kept as " + keep + ")", thrown[0]);
        }
        assertTrue(ok[0] != null);
        return ok[0];
    }
}
