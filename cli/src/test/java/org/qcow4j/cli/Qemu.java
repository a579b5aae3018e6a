package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs QEMU's tools (the reference) and qcow4j's CLI in-process for tests. ./test.sh installs qemu-utils, so
 * these tests never skip: a missing qemu-img is a failure.
 */
final class Qemu {
    private Qemu() {
    }

    /** Result of one command. */
    record Result(int exit, String out, String err) {
        Result ok() {
            assertEquals(0, exit, () -> "exit " + exit + "\nstdout: " + out + "\nstderr: " + err);
            return this;
        }
    }

    /** Runs an external command in {@code dir} and waits for it (60 s at most). */
    static Result run(Path dir, String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).directory(dir.toFile()).start();
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

    /** {@code qemu-img ARGS} in {@code dir}; must succeed. */
    static Result img(Path dir, String... args) {
        return run(dir, concat("qemu-img", args)).ok();
    }

    /** {@code qemu-io -f FMT IMAGE -c CMD...} in {@code dir}; must succeed. */
    static Result io(Path dir, String image, String... commands) {
        List<String> cmd = new ArrayList<>(List.of("qemu-io", image));
        for (String c : commands) {
            cmd.add("-c");
            cmd.add(c);
        }
        Result r = run(dir, cmd.toArray(String[]::new)).ok();
        if (r.out().contains("error") || r.err().contains("error")) {
            throw new AssertionError("qemu-io " + image + ": " + r.out() + r.err());
        }
        return r;
    }

    /**
     * Runs qcow4j's CLI in-process. The JVM's working directory cannot change, so tests give both tools
     * absolute file names (then qemu-img's and qcow4j's "filename" fields agree too).
     */
    static Result qcow4j(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code;
        try (PrintStream o = new PrintStream(out, true, StandardCharsets.UTF_8);
             PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8)) {
            code = Main.run(args, o, e);
        }
        return new Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    static String[] concat(String first, String... rest) {
        String[] all = new String[rest.length + 1];
        all[0] = first;
        System.arraycopy(rest, 0, all, 1, rest.length);
        return all;
    }

    static List<String> list(String... s) {
        return new ArrayList<>(Arrays.asList(s));
    }
}
