package org.qcow4j.testing;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * Runs the reference tools (qemu-img, qemu-io, e2fsprogs) for the tests of every module: no standard input,
 * stdout and stderr captured, 60 s at most. Shared through core's test jar.
 */
public final class Processes {
    private Processes() {
    }

    /** What a command did. */
    public record Result(int exit, String out, String err) {
    }

    /** Runs {@code cmd} in {@code dir} and waits for it. */
    public static Result run(Path dir, String... cmd) {
        try {
            ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile());
            // e2fsprogs lives in /sbin on Debian, which is not on every user's PATH.
            pb.environment().merge("PATH", "/usr/sbin:/sbin", (a, b) -> a + ":" + b);
            Process p = pb.start();
            p.getOutputStream().close();
            byte[][] streams = new byte[2][];
            Thread errReader = new Thread(() -> streams[1] = readAll(p.getErrorStream()));
            errReader.start();
            streams[0] = readAll(p.getInputStream());
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("timed out: " + String.join(" ", cmd));
            }
            errReader.join();
            return new Result(p.exitValue(), new String(streams[0], StandardCharsets.UTF_8),
                    new String(streams[1], StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException(String.join(" ", cmd), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    private static byte[] readAll(InputStream in) {
        try (in) {
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
