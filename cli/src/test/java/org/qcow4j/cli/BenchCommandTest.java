package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code bench} against {@code qemu-img bench}: the same report lines (but the time), the same refusals of bad
 * arguments (message and exit code), the same failures of requests outside the image, and after a write run an image
 * that {@code qemu-img check} finds clean and {@code qemu-img compare} finds identical to qemu-img bench's run on a
 * copy of the same image (a raw image: byte for byte).
 */
class BenchCommandTest {
    private static final String TIME = "Run completed in \\d+\\.\\d{3} seconds\\.";

    @TempDir
    Path dir;

    private String path(String name) {
        return dir.resolve(name).toString();
    }

    // ================================================================ output

    @TestFactory
    Stream<DynamicTest> printsWhatQemuImgBenchPrints() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("r.qcow2"), "4M");
        Qemu.io(dir, path("r.qcow2"), "write -P 1 0 1M", "write -z 2M 64k");
        List<List<String>> cases = List.of(
                List.of(),
                List.of("-c", "100"),
                List.of("-c", "0x100", "-d", "010"),
                List.of("-c", "500", "-d", "1", "-s", "512", "-S", "1000"),
                List.of("-c", "300", "-d", "3", "-S", "1M", "-o", "1.5k"),
                List.of("-c", "50", "-d", "2", "-s", "0"),
                List.of("-c", "50", "-o", "4M", "-s", "0"),
                List.of("-c", "64", "-d", "64", "-q", "-U", "-f", "qcow2", "-t", "none", "-n", "-i", "threads"),
                List.of("-c", "10", "-f", "raw", "-t", "writethrough", "--pattern=9"),
                List.of("-c", "1000", "-S", "3G"),
                List.of("-c", "1000", "-S", "0x10k"),
                List.of("-c", "7", "-c", "9", "-t", "writeback", "-t", "directsync", "-n", "-o", "1", "-o", "512"));
        return cases.stream().map(c -> DynamicTest.dynamicTest(c.isEmpty() ? "defaults" : String.join(" ", c), () -> {
            List<String> args = new ArrayList<>(c);
            args.add(path("r.qcow2"));
            assertSameAsQemu(args);
        }));
    }

    @Test
    void sendsTheCountAndFlushLinesOfWriteRuns() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("w.qcow2"), "8M");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("q.qcow2"), "8M");
        Qemu.Result ours = Qemu.qcow4j("bench", "-w", "-c", "200", "-d", "4", "--flush-interval", "50", path("w.qcow2")).ok();
        Qemu.Result theirs = Qemu.img(dir, "bench", "-w", "-c", "200", "-d", "4", "--flush-interval", "50", path("q.qcow2"));
        assertEquals(untimed(theirs.out()), untimed(ours.out()));
        assertEquals("Sending 200 write requests, 4096 bytes each, 4 in parallel (starting at offset 0, step size 4096)\n"
                + "Sending flush every 50 requests\nRun completed in T seconds.\n", untimed(ours.out()));
    }

    /**
     * Requests that do not fit in the image fail with EIO, as in qemu-img (which prints its first line too); a raw
     * image opened for writing without -f gets qemu's warning about probed raw images first.
     */
    @Test
    void requestsOutsideTheImageFailAsInQemu() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("s.qcow2"), "1M");
        Qemu.img(dir, "create", "-q", "-f", "raw", path("s.raw"), "1M");
        for (String image : List.of("s.qcow2", "s.raw")) {
            for (List<String> c : List.of(
                    List.of("-c", "1", "-o", "2M"),
                    List.of("-c", "1", "-o", "1022k"),
                    List.of("-c", "1", "-s", "2M"),
                    List.of("-c", "100", "-d", "3", "-S", "300k", "-s", "300k"),
                    List.of("-c", "10", "-S", "1023k"),
                    List.of("-w", "-c", "1", "-o", "1048577"))) {
                List<String> args = new ArrayList<>(c);
                args.add(path(image));
                Qemu.Result ours = assertSameAsQemu(args);
                assertEquals(1, ours.exit(), String.join(" ", args));
                assertTrue(ours.err().endsWith("qcow4j: Failed request: Input/output error\n"), ours.err());
            }
        }
    }

    /**
     * Where qemu-img bench 7.2 misbehaves, bench does not: {@code -d 0} with requests to send (qemu-img waits forever)
     * is refused; a 0-byte image (qemu-img divides by zero, SIGFPE) keeps the offset at 0, so requests of 1 byte or
     * more fail with EIO and empty ones succeed.
     */
    @Test
    void refusesDepthZeroAndSurvivesEmptyImages() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("a.qcow2"), "1M");
        Qemu.Result zeroDepth = Qemu.qcow4j("bench", "-d", "0", "-c", "5", path("a.qcow2"));
        assertEquals(1, zeroDepth.exit());
        assertEquals("qcow4j: Invalid queue depth specified: -d 0 never sends the 5 requests (qemu-img bench waits forever)\n",
                zeroDepth.err());
        assertEquals("", zeroDepth.out());

        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("empty.qcow2"), "0");
        Qemu.Result eio = Qemu.qcow4j("bench", "-c", "3", path("empty.qcow2"));
        assertEquals(1, eio.exit());
        assertEquals("qcow4j: Failed request: Input/output error\n", eio.err());
        Qemu.Result empty = Qemu.qcow4j("bench", "-w", "-c", "3", "-s", "0", "-o", "0", path("empty.qcow2")).ok();
        assertEquals("Sending 3 write requests, 0 bytes each, 64 in parallel (starting at offset 0, step size 0)\n"
                + "Run completed in T seconds.\n", untimed(empty.out()));
        assertEquals(0, Qemu.run(dir, "qemu-img", "check", path("empty.qcow2")).exit());
    }

    // ================================================================ argument errors

    @Test
    void refusesBadArgumentsWithQemuImgsMessages() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("a.qcow2"), "1M");
        String[][] cases = {
            {"-c", "-1"}, {"-c", "abc"}, {"-c", "2147483648"}, {"-c", "1k"}, {"-c", ""}, {"-c", "08"}, {"-c", "0x"},
            {"-c", "99999999999999999999"},
            {"-d", "abc"}, {"-d", "-1"}, {"-d", "4294967296"},
            {"-o", "-5"}, {"-o", "abc"}, {"-o", "1.5"}, {"-o", "1.5b"}, {"-o", "0x1.8k"}, {"-o", "1kb"}, {"-o", "1KiB"},
            {"-o", "16 "}, {"-o", "-0"}, {"-o", ""}, {"-o", ".5k"}, {"-o", "1e1"}, {"-o", "1.5e3k"}, {"-o", "1.5kk"},
            {"-o", "8E"}, {"-o", "8192P"}, {"-o", "16E"}, {"-o", "18446744073709551616"}, {"-o", "99999999999999999999k"},
            {"-o", "0x8000000000000000"}, {"-o", "0x1p3"}, {"-o", "1.0000000000000001b"},
            {"-s", "3G"}, {"-s", "abc"}, {"-s", "99999E"}, {"-s", "2147483648"},
            {"-S", "3G"}, {"-S", "x"}, {"-S", "-1"},
            {"-t", "bogus"}, {"-t", "None"}, {"-i", "bogus"},
            {"--pattern=256"}, {"--pattern=-1"}, {"--pattern=x"},
            {"--flush-interval=x"}, {"--flush-interval=10"}, {"-w", "--flush-interval=10"},
            {"-w", "-d", "8", "--flush-interval=7"},
            {"-n"}, {"-i", "native"}, {"-i", "native", "-t", "writeback"},
            {"-w", "-U"}, {"-w", "--force-share", "-n"}, {"-U", "-n"},
            // repeated options: every value is checked, in order; the last one counts
            {"-c", "abc", "-c", "5"}, {"-d", "x", "-d", "1"}, {"-o", "abc", "-o", "0"}, {"-s", "3G", "-s", "1k"},
            {"-t", "bogus", "-t", "none"}, {"-i", "bogus", "-i", "threads"}, {"-t", "none", "-n", "-t", "writeback"},
            {"-i", "native", "-i", "threads"},
        };
        for (String[] c : cases) {
            List<String> args = Qemu.list(c);
            args.add(0, "-c");
            args.add(1, "0");
            args.add(path("a.qcow2"));
            Qemu.Result ours = assertSameAsQemu(args);
            assertEquals(1, ours.exit(), String.join(" ", args));
        }
    }

    @Test
    void refusesAMissingFileAsQemuImgDoesBeforeTheAioCheck() {
        for (String[] c : new String[][] {{}, {"-n"}, {"-w"}}) {
            List<String> args = Qemu.list(c);
            args.addAll(List.of("-c", "1", path("missing.qcow2")));
            assertEquals(1, assertSameAsQemu(args).exit());
        }
        List<String> args = Qemu.list("-w", "-U", "-c", "1", path("missing.qcow2"));
        assertTrue(assertSameAsQemu(args).err().contains("force-share=on can only be used with read-only images"));
    }

    /**
     * Mistakes found by the shared option parser (and a missing or extra file name) give exit 1, the first line of
     * qemu-img's message where the parser's wording allows, and a hint line naming qcow4j's help.
     */
    @Test
    void usageMistakesExitOneWithAHint() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("a.qcow2"), "1M");
        String[][] cases = {{}, {path("a.qcow2"), path("a.qcow2")}, {"-c"}, {"-Z", path("a.qcow2")}, {"--bogus", path("a.qcow2")}};
        for (String[] c : cases) {
            Qemu.Result ours = Qemu.qcow4j(Qemu.concat("bench", c));
            Qemu.Result theirs = Qemu.run(dir, Qemu.concat("qemu-img", Qemu.concat("bench", c)));
            assertEquals(theirs.exit(), ours.exit(), String.join(" ", c));
            List<String> lines = ours.err().lines().toList();
            assertEquals(2, lines.size(), ours.err());
            assertTrue(lines.get(0).startsWith("qcow4j: "), ours.err());
            assertEquals("Try 'qcow4j bench --help' for more information.", lines.get(1));
            if (c.length == 0 || !c[0].equals("-c") && !c[0].equals("-Z")) {
                assertEquals(theirs.err().lines().findFirst().orElseThrow(), lines.get(0).replace("qcow4j: ", "qemu-img: "));
            }
            assertEquals("", ours.out());
        }
    }

    // ================================================================ what write runs leave

    /** Per case: the image's create options and size, writes made first with qemu-io (or none), the bench options. */
    private record WriteCase(String name, List<String> create, String prefill, List<String> bench) {
    }

    @TestFactory
    Stream<DynamicTest> writeRunsLeaveTheImageQemuImgBenchLeaves() {
        List<WriteCase> cases = List.of(
                new WriteCase("fresh, depth 1, sequential", List.of("16M"), null, List.of("-c", "2000", "-d", "1")),
                new WriteCase("fresh, scattered, depth 2", List.of("64M"), null,
                        List.of("-c", "3000", "-d", "2", "-S", "10129408", "--pattern=0xa5")),
                new WriteCase("fresh, scattered, depth 16, wraps many times", List.of("8M"), null,
                        List.of("-c", "5000", "-d", "16", "-S", "1003520", "--pattern=3")),
                new WriteCase("rewrite of an allocated image", List.of("16M"), "write -P 0x11 0 16M",
                        List.of("-c", "3000", "-d", "4", "-S", "536576", "--pattern=0x22")),
                new WriteCase("unaligned requests, 512 B clusters", List.of("-o", "cluster_size=512", "4M"), null,
                        List.of("-c", "1300", "-d", "3", "-s", "1000", "-S", "3001", "-o", "77", "--pattern=7")),
                new WriteCase("large requests across clusters", List.of("-o", "cluster_size=4k", "32M"), "write -P 9 1M 3M",
                        List.of("-c", "200", "-d", "5", "-s", "100k", "-S", "150k", "--pattern=0xff")),
                new WriteCase("flushes drained", List.of("8M"), null,
                        List.of("-c", "1000", "-d", "8", "--flush-interval=100", "-S", "69632")),
                new WriteCase("flushes not drained", List.of("8M"), null,
                        List.of("-c", "1000", "-d", "8", "--flush-interval=64", "--no-drain", "-S", "69632")),
                new WriteCase("compat 0.10", List.of("-o", "compat=0.10", "8M"), null,
                        List.of("-c", "800", "-d", "2", "-S", "12288", "--pattern=1")),
                new WriteCase("1-bit refcounts, 1k clusters", List.of("-o", "refcount_bits=1,cluster_size=1k", "8M"), null,
                        List.of("-c", "900", "-d", "3", "-S", "45056", "--pattern=2")),
                new WriteCase("extended L2, partly zero", List.of("-o", "extended_l2=on", "8M"), "write -z 0 4M",
                        List.of("-c", "700", "-d", "2", "-s", "2k", "-S", "6k", "--pattern=5")),
                new WriteCase("zero requests", List.of("1M"), null, List.of("-c", "5", "-s", "0")),
                new WriteCase("raw image", List.of("-f", "raw", "8M"), null,
                        List.of("-f", "raw", "-c", "700", "-d", "3", "-s", "3k", "-S", "10k", "--pattern=0x3c")),
                new WriteCase("over a backing file", List.of("-b", "base.qcow2", "-F", "qcow2", "8M"), null,
                        List.of("-c", "600", "-d", "3", "-s", "1536", "-S", "20480", "--pattern=0x42")));
        return cases.stream().map(c -> DynamicTest.dynamicTest(c.name(), () -> {
            Path caseDir = Files.createDirectories(dir.resolve(c.name().replaceAll("[^a-z0-9]+", "-")));
            if (c.create().contains("base.qcow2")) {
                Qemu.img(caseDir, "create", "-q", "-f", "qcow2", caseDir.resolve("base.qcow2").toString(), "8M");
                Qemu.io(caseDir, caseDir.resolve("base.qcow2").toString(), "write -P 0x33 0 8M");
            }
            Path ours = caseDir.resolve("ours.qcow2");
            Path theirs = caseDir.resolve("theirs.qcow2");
            List<String> create = Qemu.list("create", "-q", "-f", "qcow2");
            create.addAll(c.create().subList(0, c.create().size() - 1));
            create.add(ours.toString());
            create.add(c.create().get(c.create().size() - 1));
            Qemu.img(caseDir, create.toArray(String[]::new));
            if (c.prefill() != null) {
                Qemu.io(caseDir, ours.toString(), c.prefill());
            }
            Files.copy(ours, theirs, StandardCopyOption.COPY_ATTRIBUTES);

            List<String> args = new ArrayList<>(List.of("bench", "-w"));
            args.addAll(c.bench());
            List<String> oursArgs = new ArrayList<>(args);
            oursArgs.add(ours.toString());
            List<String> theirsArgs = new ArrayList<>(args);
            theirsArgs.add(theirs.toString());
            Qemu.Result o = Qemu.qcow4j(oursArgs.toArray(String[]::new)).ok();
            Qemu.Result t = Qemu.img(caseDir, theirsArgs.toArray(String[]::new));
            String format = c.create().contains("raw") ? "raw" : "qcow2";
            Qemu.Result check = Qemu.run(caseDir, "qemu-img", "check", "-f", format, ours.toString());
            Qemu.Result compare = Qemu.run(caseDir, "qemu-img", "compare", "-f", format, "-F", format, theirs.toString(), ours.toString());
            assertAll(
                    () -> assertEquals(untimed(t.out()), untimed(o.out())),
                    () -> assertEquals("", o.err()),
                    () -> assertEquals(format.equals("raw") ? CheckCommand.NOT_SUPPORTED : 0, check.exit(), check.out() + check.err()),
                    () -> assertEquals(0, compare.exit(), compare.out() + compare.err()));
        }));
    }

    // ================================================================ helpers

    /** Runs qemu-img bench and qcow4j bench with {@code args}; their stdout (but the time), stderr and exit must agree. */
    private Qemu.Result assertSameAsQemu(List<String> args) {
        Qemu.Result theirs = Qemu.run(dir, Qemu.concat("qemu-img", Qemu.concat("bench", args.toArray(String[]::new))));
        Qemu.Result ours = Qemu.qcow4j(Qemu.concat("bench", args.toArray(String[]::new)));
        String what = String.join(" ", args) + "\nqemu-img: exit " + theirs.exit() + "\n" + theirs.out() + theirs.err()
                + "\nqcow4j: exit " + ours.exit() + "\n" + ours.out() + ours.err();
        assertAll(
                () -> assertEquals(theirs.exit(), ours.exit(), what),
                () -> assertEquals(untimed(theirs.out()), untimed(ours.out()), what),
                () -> assertEquals(theirs.err().replace("qemu-img: ", "qcow4j: "), ours.err(), what));
        return ours;
    }

    private static String untimed(String out) {
        return out.replaceAll(TIME, "Run completed in T seconds.");
    }
}
