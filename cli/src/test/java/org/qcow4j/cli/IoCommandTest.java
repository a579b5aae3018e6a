package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code io} against qemu-io 7.2: the same command sequences run by qemu-io on one image and by qcow4j on a twin
 * made by the same {@code qemu-img create}; the same stdout (statistics lines aside, their timings differ), the
 * same exit code, images {@code qemu-img compare} finds identical, and ours clean by {@code qemu-img check}.
 */
class IoCommandTest {
    /** "4 KiB, 1 ops; 00.00 sec (1.891 MiB/sec and 484.1108 ops/sec)": timings, removed before comparing. */
    private static final Pattern STATS = Pattern.compile(
            "[0-9.]+ (bytes|[KMGTPE]iB), \\d+ ops; (\\d\\d\\.\\d\\d sec|\\d+:\\d\\d:\\d\\d\\.\\d\\d) "
                    + "\\([0-9.]+ (bytes|[KMGTPE]iB)/sec and [0-9.]+ ops/sec\\)");
    /** -C's "512,1,0:00:00.00,5157027.457,10072.319": the timings go, bytes and ops stay. */
    private static final Pattern CSV = Pattern.compile("(\\d+,\\d+),\\d+:\\d\\d:\\d\\d\\.\\d\\d,[0-9.]+,[0-9.]+");

    @TempDir
    Path dir;

    // ================================================================ images

    /** The image kinds: qemu-img create options (the backing variant gets a base image with data). */
    private record Kind(String name, List<String> createOptions, boolean backing) {
    }

    private static final List<Kind> KINDS = List.of(
            new Kind("v3-64k", List.of(), false),
            new Kind("compat-0.10", List.of("-o", "compat=0.10"), false),
            new Kind("cluster-512", List.of("-o", "cluster_size=512"), false),
            new Kind("extended-l2", List.of("-o", "extended_l2=on"), false),
            new Kind("backing", List.of(), true),
            new Kind("backing-compat-0.10", List.of("-o", "compat=0.10"), true),
            new Kind("lazy-refcounts", List.of("-o", "lazy_refcounts=on"), false));

    private static final String SIZE = "4M";

    /** Creates {@code name} as the kind says (the base image, if any, made once per directory). */
    private Path create(Path where, Kind kind, String name) throws IOException {
        Path img = where.resolve(name);
        List<String> args = Qemu.list("create", "-q", "-f", "qcow2");
        args.addAll(kind.createOptions());
        if (kind.backing()) {
            Path base = where.resolve("base.qcow2");
            if (!Files.exists(base)) {
                Qemu.img(where, "create", "-q", "-f", "qcow2", base.toString(), SIZE);
                Qemu.io(where, base.toString(), "write -P 0xba 0 3M", "write -z 1M 64k", "write -P 0xbb 2M 100k");
            }
            args.addAll(List.of("-b", base.toString(), "-F", "qcow2"));
        }
        args.addAll(List.of(img.toString(), SIZE));
        Qemu.img(where, args.toArray(String[]::new));
        return img;
    }

    // ================================================================ scripts

    private static final List<List<String>> SCRIPTS = List.of(
            // patterns at unaligned offsets, across clusters, read back (and one -v dump)
            List.of("write -P 0x11 0 4k", "write -P 0x22 1000 3000", "write -P 0x33 65000 1000", "write -P 0x44 130k 70k",
                    "write 300k 1", "read -P 0x11 0 1000", "read -P 0x22 1000 3000", "read -P 0x33 65000 1000",
                    "read -P 0x44 130k 70k", "read -P 0xcd 300k 1", "read -v 990 40", "read -P 0xba 3M 512",
                    "read -C 0 512", "write -C -P 7 2047k 2k", "flush", "read -P 7 2047k 2k"),
            // write -z (clusters stay allocated)
            List.of("write -P 0x55 0 256k", "write -z 4k 8k", "write -z 100 200", "write -z 64k 64k", "write -z 1M 1M",
                    "read -P 0 4k 8k", "read -P 0x55 0 100", "read -P 0 100 200", "read -P 0 64k 64k", "read -P 0x55 128k 128k",
                    "read -P 0 1M 1M", "read -P 0xba 2100k 4k"),
            // write -z -u (may unmap)
            List.of("write -P 0x66 0 256k", "write -z -u 64k 128k", "write -z -u 1000 5000", "write -u -z 3M 1M",
                    "read -P 0 64k 128k", "read -P 0x66 0 1000", "read -P 0 1000 5000", "read -P 0x66 6000 58k",
                    "read -P 0 3M 1M"),
            // discard: whole clusters go, partial ones stay
            List.of("write -P 0x77 0 512k", "discard 64k 128k", "discard 1000 5000", "discard -q 300k 100k", "discard 2M 2M",
                    "read -P 0x77 0 64k", "read -P 0 64k 128k", "read -P 0xba 64k 128k", "read -P 0x77 448k 64k",
                    "read -v 65530 12", "read -P 0xba 2M 100k"),
            // truncate: grow, shrink, grow again (the new tail reads as zeros), sizes not multiples of a cluster
            List.of("write -P 0x88 0 4M", "truncate 8M", "length", "read -P 0 4M 4M", "write -P 0x89 7M 4k",
                    "truncate 1M", "length", "read -P 0x88 0 1M", "truncate 3M", "length", "read -P 0 1M 2M",
                    "truncate 1573376", "length", "read -P 0x88 0 1M", "read -P 0 1M 512", "write -P 0x8a 1572864 512",
                    "read -P 0x8a 1572864 512", "truncate 1000", "truncate 4M"),
            // failures: pattern mismatches, requests past the end, bad arguments
            List.of("write -P 1 0 4k", "read -P 2 0 4k", "read -P 1 -s 100 -l 100 0 4k", "read -P 2 -s 100 -l 100 0 4k",
                    "read -P 1 -s 4000 -l 200 0 4k", "read 0 100M", "read 4M 0", "read 4M 1", "write 4095k 2k",
                    "write -z 5M 1", "discard 4M 512", "read -P 300 0 1", "write -z -P 1 0 1", "write -u 0 1", "read abc 1",
                    "read 0 1x", "read 0 3G", "write 0 3G", "bogus", "read 0", "read -x 0 1", "length 1", "read -l 5 0 1",
                    "w -P 0x12 8k 1k", "r -P 0x12 8k 1k", "read -q -P 0x12 -- 8k 1k", "read 8k 1k -P 0x12",
                    "truncate -m bogus 1M", "truncate abc", "write -P 017 9k 1", "read -P 15 9k 1", "write -P 0x 0 1"));

    @TestFactory
    Stream<DynamicTest> commandSequencesDoWhatQemuIoDoes() {
        List<DynamicTest> tests = new ArrayList<>();
        for (Kind kind : KINDS) {
            for (int s = 0; s < SCRIPTS.size(); s++) {
                List<String> script = new ArrayList<>(SCRIPTS.get(s));
                script.add("length");
                int n = s;
                tests.add(DynamicTest.dynamicTest(kind.name() + " script " + n, () -> {
                    Path where = Files.createDirectories(dir.resolve(kind.name() + "-" + n));
                    assertSameAsQemuIo(where, kind, script, false);
                    assertSameAsQemuIo(where, kind, script, true);
                }));
            }
        }
        return tests.stream();
    }

    /**
     * Runs {@code script} with qemu-io on one new image and with qcow4j on another; with {@code quiet}, qcow4j gets
     * -q and qemu-io the commands with -q added.
     */
    private void assertSameAsQemuIo(Path where, Kind kind, List<String> script, boolean quiet) throws IOException {
        String tag = quiet ? "-q" : "";
        Path theirs = create(where, kind, "theirs" + tag + ".qcow2");
        Path ours = create(where, kind, "ours" + tag + ".qcow2");
        List<String> qemuCommands = quiet ? script.stream().map(IoCommandTest::quietly).toList() : script;
        Qemu.Result want = Qemu.run(where, qemuIo(theirs, List.of(), qemuCommands));
        Qemu.Result got = Qemu.qcow4j(qcow4jIo(ours, quiet ? List.of("-q") : List.of(), script));
        String context = "\nqemu-io stdout:\n" + want.out() + "\nqemu-io stderr:\n" + want.err() + "\nqcow4j stdout:\n" + got.out()
                + "\nqcow4j stderr:\n" + got.err();
        assertAll(
                () -> assertEquals(normalize(want.out()), normalize(got.out()), "stdout" + context),
                () -> assertEquals(want.exit(), got.exit(), "exit code" + context),
                () -> assertWellFormedStats(got.out()),
                () -> assertEquals(stderrLines(want.err()), stderrLines(got.err()), "stderr" + context));
        Qemu.Result compare = Qemu.run(where, "qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", theirs.toString(), ours.toString());
        assertEquals(0, compare.exit(), () -> "qemu-img compare: " + compare.out() + compare.err() + context);
        assertClean(where, ours);
    }

    /** "read -P 1 0 4k" as "read -q -P 1 0 4k" (read, write and discard have -q). */
    private static String quietly(String command) {
        List<String> words = IoShell.breakline(command);
        // (Not where -q would make a bad argument count good.)
        if (words.size() < 3 || !List.of("read", "r", "write", "w", "discard", "d").contains(words.get(0))) {
            return command;
        }
        return words.get(0) + " -q" + command.substring(command.indexOf(words.get(0)) + words.get(0).length());
    }

    private static String[] qemuIo(Path image, List<String> options, List<String> commands) {
        return io("qemu-io", image, options, commands);
    }

    private static String[] qcow4jIo(Path image, List<String> options, List<String> commands) {
        return io("io", image, options, commands);
    }

    /** {@code program OPTIONS -c COMMAND... IMAGE}: qemu-io's command line, or io's (without "qcow4j"). */
    private static String[] io(String program, Path image, List<String> options, List<String> commands) {
        List<String> cmd = Qemu.list(program);
        cmd.addAll(options);
        for (String c : commands) {
            cmd.add("-c");
            cmd.add(c);
        }
        cmd.add(image.toString());
        return cmd.toArray(String[]::new);
    }

    /** Statistics lines removed, -C lines without their timings. */
    private static String normalize(String out) {
        return out.lines().filter(l -> !STATS.matcher(l).matches()).map(l -> CSV.matcher(l).replaceAll("$1"))
                .collect(Collectors.joining("\n"));
    }

    /** Every "wrote"/"read"/"discard" line of ours is followed by a statistics line in qemu-io's format. */
    private static void assertWellFormedStats(String out) {
        List<String> lines = out.lines().toList();
        for (int i = 0; i < lines.size(); i++) {
            if (lines.get(i).matches("(wrote|read|discard) \\d+/\\d+ bytes at offset \\d+")) {
                assertTrue(i + 1 < lines.size() && STATS.matcher(lines.get(i + 1)).matches(), () -> "no statistics line in\n" + out);
            }
        }
    }

    /** stderr with the program name made the same. */
    private static List<String> stderrLines(String err) {
        return err.lines().map(l -> l.replace("qemu-io: ", "qcow4j: ")).toList();
    }

    private static void assertClean(Path where, Path image) {
        Qemu.Result check = Qemu.run(where, "qemu-img", "check", image.toString());
        assertEquals(0, check.exit(), () -> "qemu-img check " + image + ": " + check.out() + check.err());
        assertTrue(check.out().contains("No errors were found on the image."), check.out());
    }

    // ================================================================ standard input

    /** Without -c the commands come from standard input, one a line, until EOF or quit; no prompt (not a terminal). */
    @Test
    void readsCommandsFromStandardInputUntilQuit() throws Exception {
        Kind kind = KINDS.get(0);
        Path theirs = create(dir, kind, "theirs.qcow2");
        Path ours = create(dir, kind, "ours.qcow2");
        StringBuilder input = new StringBuilder();
        for (int i = 0; i < 2000; i++) {
            input.append("write -P ").append(i & 0xff).append(' ').append(i * 1536L).append(" 1536\n");
        }
        input.append("\n  \nread -P 7 10752 1536\nread -P 8 10752 1536\nbogus\nlength\nquit\nwrite 0 4k\n");
        // (writeback caching: 2000 writes each made durable at once, qemu-io's default, are slow on both sides)
        Qemu.Result want = runWithStdin(dir, input.toString(), "qemu-io", "-t", "writeback", theirs.toString());
        Qemu.Result got = ioWithStdin(input.toString(), "-t", "writeback", ours.toString());
        assertEquals(normalize(want.out().replace("qemu-io> ", "")), normalize(got.out()));
        assertFalse(got.out().contains("> "), "no prompt");
        assertEquals(want.exit(), got.exit());
        assertEquals(1, got.exit(), "a command failed");
        assertEquals(List.of("command \"bogus\" not found"), stderrLines(got.err()));
        Qemu.img(dir, "compare", theirs.toString(), ours.toString());
        assertClean(dir, ours);

        // The last line may lack its newline; an empty input does nothing.
        assertEquals("", ioWithStdin("", ours.toString()).ok().out());
        assertEquals("4 MiB\n", ioWithStdin("length", ours.toString()).ok().out());
    }

    /** qcow4j io in-process with {@code input} as standard input. */
    private static Qemu.Result ioWithStdin(String input, String... args) throws Exception {
        IoCommand io = new IoCommand(() -> new ByteArrayInputStream(input.getBytes(StandardCharsets.UTF_8)), sig -> {
            throw new AssertionError("signal " + sig + " raised in-process");
        });
        List<CommandLine.Option> options = new ArrayList<>(io.options());
        options.add(Command.DEBUG);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int exit;
        try (PrintWriter o = new PrintWriter(out, false, StandardCharsets.UTF_8);
             Stderr e = new Stderr(err, Program.QCOW4J)) {
            exit = io.run(CommandLine.parse(List.of(args), options), o, e);
        }
        return new Qemu.Result(exit, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    private static Qemu.Result runWithStdin(Path where, String input, String... cmd) throws IOException, InterruptedException {
        Path in = Files.createTempFile(where, "stdin", ".txt");
        Files.writeString(in, input);
        Path out = where.resolve("stdout.txt");
        Path err = where.resolve("stderr.txt");
        Process p = new ProcessBuilder(cmd).directory(where.toFile()).redirectInput(in.toFile()).redirectOutput(out.toFile())
                .redirectError(err.toFile()).start();
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("timed out: " + String.join(" ", cmd));
        }
        return new Qemu.Result(p.exitValue(), Files.readString(out), Files.readString(err));
    }

    // ================================================================ read-only, errors

    @Test
    void readOnlyRefusesWritesAsQemuIoAndLeavesTheImageAlone() throws IOException {
        Path img = create(dir, KINDS.get(0), "ro.qcow2");
        Qemu.io(dir, img.toString(), "write -P 0x5a 0 64k");
        byte[] before = Files.readAllBytes(img);
        for (String command : List.of("write 0 1", "write -z 0 64k", "discard 0 64k", "truncate 1M", "w -P 1 0 1")) {
            Qemu.Result want = Qemu.run(dir, qemuIo(img, List.of("-r"), List.of(command, "read -P 0x5a 0 64k")));
            Qemu.Result got = Qemu.qcow4j(qcow4jIo(img, List.of("-r"), List.of(command, "read -P 0x5a 0 64k")));
            assertEquals(normalize(want.out()), normalize(got.out()), command);
            assertEquals(want.exit(), got.exit(), command);
            assertEquals(1, got.exit(), command);
            assertEquals(List.of("qcow4j: Block node is read-only"), stderrLines(got.err()), command);
        }
        Qemu.Result flush = Qemu.qcow4j(qcow4jIo(img, List.of("-r", "-U"), List.of("flush", "length", "read -v 0 16"))).ok();
        assertEquals("4 MiB", flush.out().lines().toList().get(0));
        assertTrue(flush.out().contains("00000000:  5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a  ZZZZZZZZZZZZZZZZ\n"), flush.out());
        assertEquals(-1, java.util.Arrays.mismatch(before, Files.readAllBytes(img)));
    }

    @Test
    void missingFileAndBadCommandsGiveOneLineAndQemuIosExitCode() throws IOException {
        Path missing = dir.resolve("missing.qcow2");
        Qemu.Result want = Qemu.run(dir, qemuIo(missing, List.of(), List.of("read 0 1")));
        Qemu.Result got = Qemu.qcow4j(qcow4jIo(missing, List.of(), List.of("read 0 1")));
        assertEquals(want.exit(), got.exit());
        assertEquals("", got.out());
        assertEquals(stderrLines(want.err()), stderrLines(got.err()));

        Path img = create(dir, KINDS.get(0), "img.qcow2");
        for (String bad : List.of("bogus", "read", "help bogus", "flush 1", "truncate", "read -P", "write -s /nonexistent/file 0 1")) {
            Qemu.Result w = Qemu.run(dir, qemuIo(img, List.of(), List.of(bad)));
            Qemu.Result g = Qemu.qcow4j(qcow4jIo(img, List.of(), List.of(bad)));
            assertEquals(w.exit(), g.exit(), bad);
            assertEquals(1, g.exit(), bad);
            assertEquals(w.out(), g.out(), bad);
            assertEquals(stderrLines(w.err()), stderrLines(g.err()), bad);
            assertFalse(g.err().contains("\tat "), "no stack trace");
        }

        // Options of io itself: one line and a hint, exit 1.
        Qemu.Result badOption = Qemu.qcow4j("io", "-x", img.toString());
        assertEquals(1, badOption.exit());
        assertTrue(badOption.err().startsWith("qcow4j: invalid option -- 'x'\n"), badOption.err());
        assertEquals(1, Qemu.qcow4j("io", img.toString(), img.toString()).exit());
        Qemu.Result unknownFormat = Qemu.qcow4j("io", "-f", "vmdk", "-c", "length", img.toString());
        assertEquals(1, unknownFormat.exit());
        assertEquals("qcow4j: can't open device " + img + ": the 'vmdk' driver is not supported by qcow4j (qcow2 and raw "
                + "images in local files)\n", unknownFormat.err());
        Qemu.Result bogusFormat = Qemu.qcow4j("io", "-f", "bogus", "-c", "length", img.toString());
        assertEquals("qcow4j: can't open device " + img + ": Unknown driver 'bogus'\n", bogusFormat.err());
        Qemu.Result notQcow2 = Qemu.qcow4j("io", "-f", "qcow2", "-c", "length", Files.writeString(dir.resolve("t.raw"), "x").toString());
        assertEquals(1, notQcow2.exit());
        assertEquals(1, notQcow2.err().lines().count(), notQcow2.err());
    }

    /** Numbers as qemu-io parses them: suffixes, hex, fractions, and its errors. */
    @Test
    void parsesNumbersAndPatternsLikeQemuIo() throws IOException {
        Path theirs = create(dir, KINDS.get(0), "theirs.qcow2");
        Path ours = create(dir, KINDS.get(0), "ours.qcow2");
        List<String> commands = new ArrayList<>();
        for (String n : List.of("0", "512", "1k", "1K", "1.5k", "0.5k", "1.k", "1.0", "+512", "1b", "1B", "0x10", "0X200",
                "0x10k", "1m", "3.999M", "0.0001k", "1.5", "0x", "0x1.8", "1.5e3k", "1.5e", "1e", "00x10", ".5k", "k", "-1",
                "1.5.3k", "0b1", "99999999999999999999", "99999999999999999999k", "18446744073709551615", "8E",
                "9223372036854775807", "7.99999E", "4M", "4194305")) {
            commands.add("read -- " + n + " 0");
        }
        for (String p : List.of("0", "255", "256", "0xff", "0x100", "017", "019", "+7", "-0", "-1", "0x", "1a", " 5")) {
            commands.add("write -P " + p + " 0 1");
            commands.add("read -P " + p + " 0 1");
        }
        Qemu.Result want = Qemu.run(dir, qemuIo(theirs, List.of(), commands));
        Qemu.Result got = Qemu.qcow4j(qcow4jIo(ours, List.of(), commands));
        assertEquals(normalize(want.out()), normalize(got.out()));
        assertEquals(stderrLines(want.err()), stderrLines(got.err()));
        assertEquals(want.exit(), got.exit());
    }

    @Test
    void formatsSizesAndTimesAsQemuIo() {
        assertEquals("0 bytes", IoFormat.cvtstr(0));
        assertEquals("512 bytes", IoFormat.cvtstr(512));
        assertEquals("1000 bytes", IoFormat.cvtstr(1000));
        assertEquals("4 KiB", IoFormat.cvtstr(4096));
        assertEquals("1.500 KiB", IoFormat.cvtstr(1536));
        assertEquals("1.062 KiB", IoFormat.cvtstr(1088), "glibc rounds the exact tie to even");
        assertEquals("213.270183 bytes", IoFormat.cvtstr(213.2701829));
        assertEquals("1 MiB", IoFormat.cvtstr(1 << 20));
        assertEquals("2 GiB", IoFormat.cvtstr(2147483648.0));
        assertEquals("00.00 sec", IoFormat.timestr(1, false));
        assertEquals("00.50 sec", IoFormat.timestr(500_000_000, false));
        assertEquals("0:00:01.50", IoFormat.timestr(1_500_000_000, false));
        assertEquals("1:01:01.00", IoFormat.timestr(3661_000_000_000L, false));
        assertEquals("0:00:00.01", IoFormat.timestr(12_345_678, true));
        assertEquals(List.of("read", "-P", "1", "0\t4k"), IoShell.breakline("  read  -P 1 0\t4k "), "tabs are no separators");
    }

    // ================================================================ abort

    /**
     * {@code abort} ends the process at once with qemu-io's status (134, SIGABRT), the image neither flushed nor closed,
     * and, as qemu-io's, what it had printed to a pipe but not written yet lost: what was written before is consistent
     * (at most leaked clusters) and what was flushed is there.
     */
    @Test
    void abortEndsTheProcessLikeACrash() throws Exception {
        Path theirs = create(dir, KINDS.get(0), "theirs.qcow2");
        Path ours = create(dir, KINDS.get(0), "ours.qcow2");
        List<String> commands = List.of("write -P 1 0 64k", "flush", "write -P 2 64k 64k", "abort", "write -P 3 0 1M");
        Qemu.Result want = Qemu.run(dir, qemuIo(theirs, List.of(), commands));
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        List<String> cmd = Qemu.list(java.toString(), "-cp", System.getProperty("java.class.path"), Main.class.getName());
        cmd.addAll(List.of(qcow4jIo(ours, List.of(), commands)));
        Qemu.Result got = Qemu.run(dir, cmd.toArray(String[]::new));
        assertEquals(134, want.exit());
        assertEquals(want.exit(), got.exit(), got.out() + got.err());
        assertEquals(want.out(), got.out(), "stdout's buffer is lost with the process");
        Qemu.Result check = Qemu.run(dir, "qemu-img", "check", ours.toString());
        assertTrue(check.exit() == 0 || check.exit() == 3, check.out() + check.err());
        Qemu.io(dir, ours.toString(), "read -P 1 0 64k");
    }

    // ================================================================ raw

    @Test
    void writesRawImagesLikeQemuIo() throws IOException {
        List<String> script = List.of("write -P 0x11 1000 3000", "write -z 2k 1k", "discard 8k 4k", "read -P 0x11 1000 1048",
                "read -P 0 2k 1k", "truncate 5000", "length", "write -P 0x22 4990 130", "read -v 4980 40", "truncate 1M",
                "read -P 0 8k 4k", "length");
        for (String name : List.of("theirs.raw", "ours.raw")) {
            Files.write(dir.resolve(name), new byte[100_000]);
        }
        Qemu.Result want = Qemu.run(dir, qemuIo(dir.resolve("theirs.raw"), List.of("-f", "raw"), script));
        Qemu.Result got = Qemu.qcow4j(qcow4jIo(dir.resolve("ours.raw"), List.of("-f", "raw"), script));
        assertEquals(normalize(want.out()), normalize(got.out()));
        assertEquals(want.exit(), got.exit());
        assertEquals(-1L, Files.mismatch(dir.resolve("theirs.raw"), dir.resolve("ours.raw")));

        // Probed raw: qemu's warning, and block 0 may not be made to look like qcow2.
        Files.write(dir.resolve("probed.raw"), new byte[4096]);
        Qemu.Result probed = Qemu.qcow4j(qcow4jIo(dir.resolve("probed.raw"), List.of(),
                List.of("write -P 0x51 0 1", "write -P 0x46 1 1", "write -P 0x49 2 1", "write -P 0xfb 3 1", "write -P 0xfb 4 1")));
        assertEquals(1, probed.exit());
        assertTrue(probed.err().startsWith("WARNING: Image format was not specified for '"), probed.err());
        assertTrue(probed.out().contains("write failed: Operation not permitted\n"), probed.out());
    }
}
