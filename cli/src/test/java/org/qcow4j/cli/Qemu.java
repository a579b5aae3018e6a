package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.qcow4j.testing.Processes;

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
        Processes.Result r = Processes.run(dir, cmd);
        return new Result(r.exit(), r.out(), r.err());
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
        return inProcess(Program.QCOW4J, args);
    }

    /** qcow4j's CLI in-process as the qemu-img drop-in (its command line, messages and exit codes). */
    static Result asQemuImg(String... args) {
        return inProcess(Program.QEMU_IMG, args);
    }

    /** qcow4j's CLI in-process as the qemu-io drop-in. */
    static Result asQemuIo(String... args) {
        return inProcess(Program.QEMU_IO, args);
    }

    private static Result inProcess(Program program, String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code;
        try (PrintStream o = new PrintStream(out, true, StandardCharsets.UTF_8);
             PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8)) {
            code = Main.run(program, args, o, e);
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

    /**
     * {@code qemu-img create -q -f qcow2 [ARGS...] NAME SIZE} in {@code dir}, the size being the last of {@code args};
     * the image's absolute path.
     */
    static Path createQcow2(Path dir, String name, String... args) {
        List<String> cmd = list("create", "-q", "-f", "qcow2");
        cmd.addAll(List.of(args).subList(0, args.length - 1));
        cmd.add(name);
        cmd.add(args[args.length - 1]);
        img(dir, cmd.toArray(String[]::new));
        return dir.resolve(name).toAbsolutePath();
    }
}
