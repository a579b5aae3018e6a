package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.OpenOptions;

/**
 * qcow4j as qemu-io (through {@link Program#QEMU_IO}) against QEMU 7.2's qemu-io: the whole command set and the
 * program options, each run by both on twin images made by the same commands, with the same stdout (timings masked),
 * stderr and exit code, and images that end the same ({@code qemu-img compare}) and clean ({@code qemu-img check}).
 * Where qcow4j refuses by name what QEMU does, the test says so and checks the refusal.
 */
class QemuIoDropInTest {
    /** print_report's statistics line: the timings go, the op count stays. */
    private static final Pattern STATS = Pattern.compile(
            "[0-9.]+ (bytes|[KMGTPE]iB), (\\d+) ops; (\\d\\d\\.\\d\\d sec|\\d+:\\d\\d:\\d\\d\\.\\d\\d) "
                    + "\\([0-9.]+ (bytes|[KMGTPE]iB)/sec and [0-9.]+ ops/sec\\)");
    private static final Pattern CSV = Pattern.compile("^(\\d+,\\d+),\\d+:\\d\\d:\\d\\d\\.\\d\\d,[0-9.]+,[0-9.]+$",
            Pattern.MULTILINE);

    @TempDir
    Path dir;

    // ================================================================ running both

    /** One setup for both tools: shell commands run in each tool's own directory before the tool (IMG there). */
    private record Case(String setup, List<String> args) {
    }

    private static Case c(String setup, String... args) {
        return new Case(setup, List.of(args));
    }

    /**
     * Runs {@code args} (IMG: the image, DIR: the directory) with qemu-io in one directory and with qcow4j as qemu-io in
     * another, after the same {@code setup} (sh -c, IMG and DIR replaced); returns both results with the directory
     * name made "DIR".
     */
    private Qemu.Result[] both(Path where, Case c) throws IOException {
        Qemu.Result[] r = new Qemu.Result[2];
        for (int i = 0; i < 2; i++) {
            Path d = Files.createDirectories(where.resolve(i == 0 ? "qemu" : "ours"));
            String img = d.resolve("t.qcow2").toString();
            if (!c.setup().isEmpty()) {
                Qemu.Result s = Qemu.run(d, "sh", "-c", c.setup().replace("IMG", img).replace("DIR", d.toString()));
                assertEquals(0, s.exit(), () -> "setup: " + s.out() + s.err());
            }
            String[] args = c.args().stream().map(a -> a.replace("IMG", img).replace("DIR", d.toString()))
                    .toArray(String[]::new);
            Qemu.Result res = i == 0 ? Qemu.run(d, Qemu.concat("qemu-io", args)) : qemuIo(args);
            r[i] = new Qemu.Result(res.exit(), res.out().replace(d.toString(), "DIR"), res.err().replace(d.toString(), "DIR"));
        }
        return r;
    }

    /** qcow4j as qemu-io, in-process (never with a signal raised: those run in a child JVM). */
    static Qemu.Result qemuIo(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code;
        try (PrintStream o = new PrintStream(out, true, StandardCharsets.UTF_8);
             PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8)) {
            code = Main.run(Program.QEMU_IO, args, o, e);
        }
        return new Qemu.Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    /** Statistics and -C timings masked. */
    static String masked(String out) {
        String s = STATS.matcher(out).replaceAll("STATS $2 ops");
        return CSV.matcher(s).replaceAll("$1,TIMES");
    }

    private void assertSame(Path where, Case c) throws IOException {
        Qemu.Result[] r = both(where, c);
        String context = String.join(" ", c.args()) + "\n--- qemu-io stdout:\n" + r[0].out() + "--- stderr:\n" + r[0].err()
                + "--- qcow4j stdout:\n" + r[1].out() + "--- stderr:\n" + r[1].err();
        assertAll(
                () -> assertEquals(masked(r[0].out()), masked(r[1].out()), "stdout of " + context),
                () -> assertEquals(r[0].err(), r[1].err(), "stderr of " + context),
                () -> assertEquals(r[0].exit(), r[1].exit(), "exit code of " + context),
                () -> assertFalse(r[1].err().contains("\tat "), "no stack trace"));
        Path theirs = where.resolve("qemu/t.qcow2");
        Path ours = where.resolve("ours/t.qcow2");
        if (Files.exists(theirs) && Files.exists(ours) && Files.size(ours) > 0 && isQcow2(ours)) {
            Qemu.Result compare = Qemu.run(where, "qemu-img", "compare", "-U", theirs.toString(), ours.toString());
            assertEquals(0, compare.exit(), () -> "qemu-img compare: " + compare.out() + compare.err() + "\n" + context);
            Qemu.Result check = Qemu.run(where, "qemu-img", "check", "-U", ours.toString());
            assertEquals(0, check.exit(), () -> "qemu-img check: " + check.out() + check.err() + "\n" + context);
        }
    }

    private static boolean isQcow2(Path p) throws IOException {
        byte[] head = new byte[4];
        try (var in = Files.newInputStream(p)) {
            return in.readNBytes(head, 0, 4) == 4 && head[0] == 'Q' && head[1] == 'F' && head[2] == 'I';
        }
    }

    private Stream<DynamicTest> cases(String prefix, List<Case> cases) {
        List<DynamicTest> tests = new ArrayList<>();
        for (int i = 0; i < cases.size(); i++) {
            Case c = cases.get(i);
            int n = i;
            tests.add(DynamicTest.dynamicTest(prefix + " " + n + ": " + String.join(" ", c.args()),
                    () -> assertSame(Files.createDirectories(dir.resolve(prefix + "-" + n)), c)));
        }
        return tests.stream();
    }

    private static final String IMG_1M = "qemu-img create -q -f qcow2 IMG 1M";
    private static final String IMG_4M = "qemu-img create -q -f qcow2 IMG 4M";
    private static final String IMG_64M = "qemu-img create -q -f qcow2 IMG 64M";
    /** A 4 MiB overlay over a base with data at 0 (1 MiB of 7s) and 2 MiB (100 KiB of 8s). */
    private static final String OVERLAY = "qemu-img create -q -f qcow2 DIR/b.qcow2 4M && "
            + "qemu-io -c 'write -P 7 0 1M' -c 'write -P 8 2M 100k' DIR/b.qcow2 >/dev/null && "
            + "qemu-img create -q -f qcow2 -b DIR/b.qcow2 -F qcow2 IMG";

    // ================================================================ help

    @Test
    void helpListsEveryCommandAsQemuIo() throws IOException {
        List<String> args = new ArrayList<>(List.of("-c", "help"));
        for (IoCommands c : IoCommands.values()) {
            args.addAll(List.of("-c", "help " + c.info.name()));
            if (c.info.altname() != null) {
                args.addAll(List.of("-c", "help " + c.info.altname()));
            }
        }
        args.addAll(List.of("-c", "help bogus", "-c", "? read", "-c", "help read write"));
        Qemu.Result[] r = both(dir, new Case("", args));
        assertEquals(r[0], r[1]);
        assertEquals(26, IoCommands.values().length);
    }

    // ================================================================ program options

    @TestFactory
    Stream<DynamicTest> programOptions() {
        List<Case> cases = new ArrayList<>();
        for (String options : List.of("--cache writeback --aio threads", "-t writethrough", "-t none", "-t directsync",
                "-t unsafe", "-t off", "-t bogus", "--cache=bogus", "-n", "--nocache", "-i threads", "-i io_uring",
                "-i native", "-i bogus", "--aio=native -n", "-k", "-k -t none", "--native-aio --nocache", "-d unmap",
                "-d on", "-d ignore", "-d off", "-d bogus", "--discard=bogus", "-m", "--misalign", "-s", "--snapshot",
                "-s -r", "-C", "--copy-on-read", "-C -r", "-r", "-U", "-r -U", "-T foo", "-T enable=foo", "-T -foo",
                "-T enable=foo,file=DIR/trace.log", "-T events=DIR/nonexistent", "-T bogus=1", "-T help", "-T foo*",
                "--trace enable=a,events=DIR/ev", "--object secret,id=s0,data=x", "--object help",
                "--object secret,help", "--object bogus", "--object secret,id=s0", "--object secret", "--object id=x",
                "--object secret,id=1s,data=a", "--object secret,id=s0,data=a,foo=bar",
                "--object secret,id=s0,data=a,format=bogus", "--object secret,id=s0,data=a,file=DIR/ev",
                "--object secret,id=s0,file=DIR/nonexistent", "--object secret,id=s0,data=a,keyid=k",
                "--object secret,id=s0,data=a --object secret,id=s0,data=b", "--object throttle-group,id=t0",
                "--image-opts -f qcow2", "-q", "-Z", "--bogus", "-t", "-f", "-f raw", "-f vmdk", "-f bogus")) {
            List<String> args = new ArrayList<>(List.of(options.split(" ")));
            args.addAll(List.of("-c", "write -P 5 0 512", "-c", "read -P 5 0 512", "IMG"));
            String setup = IMG_1M + " && printf 'foo\\n#c\\n\\nbar*\\n-baz\\n' > DIR/ev";
            cases.add(new Case(setup, args));
        }
        // the cases where qcow4j differs on purpose are below, checked on their own
        cases.removeIf(c -> String.join(" ", c.args()).matches(".*(-T foo\\*|-T help|--object help|--object throttle|"
                + "-f vmdk|-f raw |--object secret,id=s0,data=a,keyid).*"));
        return cases("option", cases);
    }

    /** What qcow4j refuses by name (or does otherwise) where qemu-io does something it has no counterpart for. */
    @Test
    void differencesAreRefusalsByName() throws IOException {
        Path d = Files.createDirectories(dir.resolve("diff"));
        String img = d.resolve("t.qcow2").toString();
        Qemu.img(d, "create", "-q", "-f", "qcow2", img, "1M");
        // a trace pattern: qemu-io traces (QEMU's trace events), qcow4j has none to trace and says nothing; the list
        // of events is empty
        Qemu.Result r = qemuIo("-T", "qcow2_*", "-c", "write 0 512", img);
        assertEquals(0, r.exit());
        assertEquals("", r.err());
        assertEquals(new Qemu.Result(0, "", ""), qemuIo("-T", "help", "-c", "write 0 512", img));
        // object types other than secret, and secrets encrypted with another
        r = qemuIo("--object", "throttle-group,id=t0", "-c", "length", img);
        assertEquals(new Qemu.Result(1, "", "qemu-io: objects of type 'throttle-group' are not supported by qcow4j (it has "
                + "'secret')\n"), r);
        r = qemuIo("--object", "secret,id=k,data=x", "--object", "secret,id=s0,data=a,keyid=k", "-c", "length", img);
        assertEquals(1, r.exit());
        assertEquals("qemu-io: secrets encrypted with another secret (keyid) are not supported by qcow4j\n", r.err());
        r = qemuIo("--object", "help");
        assertEquals(new Qemu.Result(0, "List of user creatable objects:\n  secret\n", ""), r);
        // drivers QEMU has and qcow4j not
        r = qemuIo("-f", "vmdk", "-c", "length", img);
        assertEquals(new Qemu.Result(1, "", "qemu-io: can't open device " + img + ": the 'vmdk' driver is not supported by "
                + "qcow4j (qcow2 and raw images in local files)\n"), r);
        // NBD names open over the NBD client: no server there is QEMU's message
        String none = d.resolve("none.sock").toString();
        r = qemuIo("-c", "read 0 1", "nbd:unix:" + none);
        assertEquals("qemu-io: can't open device nbd:unix:" + none + ": Failed to connect to '" + none
                + "': No such file or directory\n", r.err());
        // blkdebug passes requests through: its rules and breakpoints are refused
        Files.writeString(d.resolve("rules.cfg"), "[inject-error]\nevent = \"l1_update\"\n");
        r = qemuIo("-c", "read 0 1", "blkdebug:" + d.resolve("rules.cfg") + ":" + img);
        assertEquals("qemu-io: can't open device blkdebug:" + d.resolve("rules.cfg") + ":" + img + ": blkdebug rules (config "
                + "file " + d.resolve("rules.cfg") + ") are not supported by qcow4j\n", r.err());
        r = qemuIo("-c", "break write_aio A", "-c", "read 0 1", "blkdebug::" + img);
        assertEquals("qemu-io: break: blkdebug breakpoints are not supported by qcow4j\n", r.err());
        assertEquals(1, r.exit());
        // wait_break (qemu-io waits for ever without blkdebug)
        r = qemuIo("-c", "wait_break tag", img);
        assertEquals("qemu-io: wait_break: no request is ever suspended without blkdebug, which qcow4j does not have\n",
                r.err());
        assertEquals(1, r.exit());
    }

    // ================================================================ commands

    @TestFactory
    Stream<DynamicTest> vectoredAndAsynchronousRequests() {
        return cases("vector", List.of(
                c(IMG_4M, "-c", "writev -P 3 0 1k 2k 512", "-c", "readv -P 3 0 1k 2k 512", "-c", "readv -v 0 16 16",
                        "-c", "readv -P 4 0 512", "-c", "writev 0", "-c", "writev 0 3G", "-c", "writev 0 1G 1G 1G",
                        "-c", "readv 4M 1", "-c", "writev -C -q -f 4k 512", "-c", "readv -C 4k 512", "-c", "readv -q 0 1",
                        "-c", "writev -x 0 1", "-c", "readv", "-c", "readv 0 x", "-c", "writev -P 300 0 1", "IMG"),
                // (qemu-io runs aio requests concurrently: where two could overtake each other, aio_flush orders them)
                c(IMG_4M, "-c", "aio_write -P 5 1M 4k 4k", "-c", "aio_flush", "-c", "aio_write -z 2M 64k", "-c", "length",
                        "-c", "aio_flush", "-c", "aio_read -P 5 1M 8k", "-c", "aio_flush", "-c", "read -P 5 1M 8k", "-c",
                        "aio_read -P 6 1M 8k", "-c", "aio_flush", "-c", "aio_read -i 0 1", "-c", "aio_write -i 0 1", "-c",
                        "aio_write -z 0 1k 1k", "-c", "aio_write -u 0 1k", "-c", "aio_read 5M 1", "-c", "aio_flush", "-c",
                        "aio_read -v 1M 32", "-c", "aio_flush", "-c", "aio_write -f -q -P 9 3M 64k", "-c", "aio_flush", "-c",
                        "aio_read -C -P 9 3M 64k", "-c", "aio_flush", "-c", "aio_write -z -u 3M 64k", "-c", "aio_flush", "-c",
                        "read -P 0 3M 64k", "-c", "aio_write 0 x", "-c", "aio_read", "-c", "aio_write -x 0 1", "IMG"),
                // a completion at exit (one request: two racing ones complete in qemu-io in either order)
                c(IMG_4M, "-c", "aio_write -P 1 0 64k", "-c", "aio_flush", "-c", "aio_write -P 2 64k 64k", "IMG"),
                c(OVERLAY, "-c", "aio_write -P 1 4k 4k", "-c", "aio_flush", "-c", "aio_read -P 7 0 4k", "-c", "aio_flush",
                        "-c", "readv -P 1 4k 4k", "-c", "readv -P 8 2M 4k", "IMG")));
    }

    @TestFactory
    Stream<DynamicTest> allocationMapAndInfo() {
        return cases("alloc", List.of(
                c(IMG_64M, "-c", "write -P 1 0 64k", "-c", "write -P 2 200k 10k", "-c", "info", "-c", "map", "-c", "alloc 0",
                        "-c", "alloc 0 1M", "-c", "alloc 100k 200k", "-c", "alloc 60M 8M", "-c", "alloc 63M 8M", "-c",
                        "alloc x", "-c", "alloc 0 x", "-c", "alloc 1T", "-c", "alloc 0 64M", "-c", "a 1000 100", "-c",
                        "alloc", "-c", "alloc 1 2 3", "-c", "map 1", "-c", "info 1", "IMG"),
                c(OVERLAY, "-c", "write -P 1 64k 64k", "-c", "write -P 2 3M 4k", "-c", "map", "-c", "alloc 0 4M", "-c",
                        "alloc 0 64k", "-c", "alloc 60k 8k", "-c", "info", "IMG"),
                // copy-on-read: what a read finds below is written to the image (zeros as zero clusters)
                c(OVERLAY, "-C", "-c", "read -P 7 100k 10k", "-c", "map", "-c", "readv -P 8 2M 4k", "-c", "read 3M 4k",
                        "-c", "map", "-c", "alloc 0 4M", "-c", "aio_read -P 7 900k 200k", "-c", "aio_flush", "-c", "map",
                        "IMG"),
                c("qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4k IMG 3G", "-c", "info", "-c", "truncate 5G",
                        "-c", "info", "-c", "map", "IMG"),
                c("qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k,compression_type=zstd,lazy_refcounts=on "
                        + "IMG 100M", "-c", "write -P 3 1k 2k", "-c", "map", "-c", "alloc 0 16k", "-c", "info", "IMG"),
                c("qemu-img create -q -f qcow2 IMG 0", "-c", "map", "-c", "alloc 0", "-c", "info", "IMG"),
                c("qemu-img create -q -f raw IMG 1M", "-f", "raw", "-c", "info", "-c", "map", "-c", "alloc 0 1M", "IMG"),
                c("qemu-img create -q -f raw IMG 1M", "--image-opts", "-c", "info", "-c", "map", "-c", "alloc 0 1M",
                        "driver=file,filename=IMG")));
    }

    @TestFactory
    Stream<DynamicTest> openCloseAndReopen() {
        return cases("open", List.of(
                c(IMG_4M, "-c", "write -P 1 0 64k", "-c", "close", "-c", "read 0 1", "-c", "close", "-c", "info", "-c",
                        "open", "-c", "open -r IMG", "-c", "read -P 1 0 64k", "-c", "write 0 1", "-c", "open IMG", "-c",
                        "close", "-c", "open -o driver=qcow2 IMG", "-c", "info", "-c", "length", "IMG"),
                c(IMG_4M, "-c", "reopen -r", "-c", "write 0 1", "-c", "reopen -w", "-c", "write -P 2 0 1", "-c",
                        "reopen -r -w", "-c", "reopen -c none", "-c", "reopen -c bogus", "-c", "reopen -o foo=bar", "-c",
                        "reopen -o driver=raw", "-c", "reopen -r -o read-only=on", "-c",
                        "reopen -c none -o cache.direct=on", "-c", "reopen x", "-c", "reopen -o id=x", "-c",
                        "reopen -o file.filename=DIR/x", "-c", "reopen -o l2-cache-size=1M", "-c", "reopen -o discard=unmap",
                        "-c", "reopen -o detect-zeroes=on", "-c", "reopen -c writeback", "-c", "read -P 2 0 1", "-c",
                        "reopen -r", "-c", "reopen -o read-only=off", "-c", "write -P 3 1 1", "-c", "read -P 3 1 1", "IMG"),
                c(IMG_4M, "-r", "-c", "write 0 1", "-c", "reopen -w", "-c", "write -P 4 0 64k", "-c", "reopen -r", "-c",
                        "read -P 4 0 64k", "-c", "discard 0 64k", "IMG"),
                c(IMG_4M, "-c", "close", "-c", "open -t bogus IMG", "-c", "open -d bogus IMG", "-c", "open -i bogus IMG",
                        "-c", "open -x IMG", "-c", "open -i native IMG", "-c", "open -k -n IMG", "-c", "close", "-c",
                        "open -U IMG", "-c", "open -r -U IMG", "-c", "close", "-c", "open -s IMG", "-c", "write -P 9 0 4k",
                        "-c", "read -P 9 0 4k", "-c", "info", "-c", "map", "-c", "close", "-c", "read -P 0 0 4k", "-c",
                        "open -o driver=qcow2,foo=bar IMG", "-c", "open -o driver=raw,,x IMG", "-c", "open -o id=x IMG",
                        "-c", "open a b", "-c", "open DIR/nonexistent", "-c", "open -C -r IMG", "-c", "open -C IMG", "-c",
                        "read 0 1", "-c", "close", "-c", "open -d ignore -t writeback -i threads IMG", "-c", "write 0 1",
                        "IMG"),
                c(IMG_4M, "-c", "open -o driver=qcow2,file.align=512 blkdebug::IMG", "-c", "write -P 0xa 0x200 0x400",
                        "-c", "aio_write -z 0x400 0x20000", "-c", "aio_flush", "-c", "read -P 0 0x400 0x20000", "-c", "close",
                        "-c", "open -o driver=qcow2,file.align=3 blkdebug::IMG", "-c", "open blkdebug:IMG", "-c",
                        "open blkdebug:DIR/nonexistent:IMG", "-c", "open -o driver=qcow2,file.foo=1 blkdebug::IMG", "-c",
                        "open -o driver=qcow2,file.image.filename=IMG blkdebug::IMG", "-c",
                        "open -o driver=qcow2,file.image.foo=1 blkdebug::IMG", "-c",
                        "open -o driver=qcow2,file.max-transfer=100,file.opt-write-zero=4096 blkdebug::IMG", "-c", "info",
                        "-c", "read -P 0xa 0x200 0x200"),
                c(IMG_4M, "--image-opts", "-c", "read 0 1", "driver=qcow2,file.driver=blkdebug,file.image.filename=IMG"),
                c(IMG_4M, "--image-opts", "-c", "read 0 1", "driver=qcow2,file.driver=blkdebug"),
                c(IMG_4M, "--image-opts", "-c", "close", "-c", "open driver=qcow2,file.filename=IMG", "-c", "info",
                        "-c", "close", "-c", "open -o driver=qcow2 IMG", "-c", "open IMG", "-c", "open", "-c",
                        "open -r driver=qcow2,file.filename=IMG,read-only=on", "-c", "length",
                        "driver=qcow2,file.filename=IMG")));
    }

    /**
     * Damage met while writing that QEMU answers by marking the image corrupt (iotests 137 and 305): the same event
     * line, the same failure, and the same file, corrupt bit included.
     */
    @Test
    void corruptionMetWhileWritingMarksTheImageAsQemuDoes() throws IOException {
        String poke = " && printf '\\000\\000\\000\\000\\000\\000\\000\\000' | dd of=IMG bs=1 seek=131072 conv=notrunc status=none";
        String refblock = "qemu-img create -q -f qcow2 -o refcount_bits=64,cluster_size=1k IMG 1M"
                + " && qemu-io -c 'write 0 124k' IMG >/dev/null && qemu-io -c 'discard 121k 1k' IMG >/dev/null"
                + " && qemu-io -c 'discard 123k 1k' IMG >/dev/null"
                + " && printf '\\006' | dd of=IMG bs=1 seek=$((0x$(od -An -tx1 -j48 -N8 IMG | tr -d ' ') + 14)) conv=notrunc status=none";
        List<Case> cases = List.of(
                c(IMG_64M + poke, "-c", "write 64k 64k", "IMG"), // the header's refcount gone: an L2 table at 0
                c(refblock, "-c", "write 121k 3k", "IMG")); // a refcount block at an unaligned offset
        for (int i = 0; i < cases.size(); i++) {
            Path where = Files.createDirectories(dir.resolve("corrupt-" + i));
            Qemu.Result[] r = both(where, cases.get(i));
            assertTrue(r[0].err().startsWith("qcow2: Marking image as corrupt: "), r[0].err());
            assertEquals(r[0].err(), r[1].err());
            assertEquals(r[0].out(), r[1].out());
            assertEquals(r[0].exit(), r[1].exit());
            assertArrayEquals(Files.readAllBytes(where.resolve("qemu/t.qcow2")), Files.readAllBytes(where.resolve("ours/t.qcow2")));
        }
    }

    /**
     * QEMU's overlap check of inactive L2 tables (overlap-check.inactive-l2, or overlap-check=all), iotest 080: a
     * snapshot L1 table QEMU's check cannot validate fails every write with its errno, nothing written, and the
     * refcount block the allocation dirtied fails to flush at close; a write over a snapshot's L2 table (an active
     * entry damaged to point there) marks the image corrupt. Off (QEMU's default) the same write goes through. Each
     * time the same lines, exit code and file as qemu-io.
     */
    @Test
    void inactiveL2OverlapCheckAsQemu() throws IOException {
        Path base = dir.resolve("inactive.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", base.toString(), "64M");
        Qemu.io(dir, base.toString(), "write -P 1 0 64k");
        Qemu.img(dir, "snapshot", "-c", "s", base.toString());
        byte[] clean = Files.readAllBytes(base);
        java.nio.ByteBuffer h = java.nio.ByteBuffer.wrap(clean);
        int snapshotEntry = (int) h.getLong(64);
        int snapshotL1 = (int) h.getLong(snapshotEntry);
        record Variant(String name, java.util.function.Consumer<java.nio.ByteBuffer> poke, String options, String err) {
        }
        // the active table's first entry made to point, COPIED, at the snapshot's L2 table
        java.util.function.Consumer<java.nio.ByteBuffer> overSnapshotL2 = b -> {
            long activeL2 = b.getLong((int) b.getLong(40)) & 0x00fffffffffffe00L;
            b.putLong((int) activeL2, (b.getLong(snapshotL1) & 0x00fffffffffffe00L) | 1L << 63);
        };
        List<Variant> variants = List.of(
                new Variant("offset", b -> b.putLong(snapshotEntry, 0x400200), "overlap-check.inactive-l2=on",
                        "Failed to flush the refcount block cache: Invalid argument"),
                new Variant("size", b -> b.putInt(snapshotEntry + 8, 0x10000000), "overlap-check=all",
                        "Failed to flush the refcount block cache: File too large"),
                new Variant("overlap", overSnapshotL2, "overlap-check.inactive-l2=on",
                        "Preventing invalid write on metadata (overlaps with inactive L2 table)"),
                new Variant("overlap-unchecked", overSnapshotL2, "overlap-check=all,overlap-check.inactive-l2=off", null));
        for (Variant v : variants) {
            Path theirs = dir.resolve("inactive-" + v.name() + "-qemu.qcow2");
            Path ours = dir.resolve("inactive-" + v.name() + "-ours.qcow2");
            byte[] d = clean.clone();
            if (v.name().startsWith("overlap")) { // the active table copied from the snapshot's first
                Files.write(theirs, d);
                Qemu.io(dir, theirs.toString(), "write -P 2 0 64k");
                d = Files.readAllBytes(theirs);
            }
            v.poke().accept(java.nio.ByteBuffer.wrap(d));
            Files.write(theirs, d);
            Files.write(ours, d);
            String[] script = {"-c", "open -o " + v.options() + " IMG", "-c", "write -P 3 0 4k"};
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-io", with(script, theirs)));
            Qemu.Result got = qemuIo(with(script, ours));
            String context = v.name() + ": " + want + " / " + got;
            if (v.err() == null) {
                assertEquals(0, got.exit(), context);
            } else {
                assertTrue(want.err().contains(v.err()), context);
            }
            assertEquals(want.err().replace(theirs.toString(), "IMG"), got.err().replace(ours.toString(), "IMG"), context);
            assertEquals(masked(want.out()), masked(got.out()), context);
            assertEquals(want.exit(), got.exit(), context);
            assertArrayEquals(Files.readAllBytes(theirs), Files.readAllBytes(ours), context);
        }
    }

    private static String[] with(String[] script, Path image) {
        return java.util.Arrays.stream(script).map(a -> a.replace("IMG", image.toString())).toArray(String[]::new);
    }

    /**
     * Invalid extended L2 entries met by a request (iotest 271): QEMU's corruption event in the words of the request
     * (a read's has two spaces before the parenthesis, a write's one), fatal on a writable image (the corrupt bit
     * set, the same file) and a warning on a read-only one; a compressed cluster's bitmap is ignored, as QEMU ignores
     * it, on reads and on writes (which give the cluster a new, uncompressed, fully allocated entry).
     */
    @Test
    void invalidExtendedL2EntriesAreCorruptionAsInQemu() throws IOException {
        String ext = "qemu-img create -q -f qcow2 -o extended_l2=on IMG 1M";
        // cluster 1's bitmap: subcluster 0 both allocated and zero
        String bothBits = ext + " && qemu-io -c 'write -q 32k 128k' IMG"
                + " && printf '\\000\\000\\000\\001' | dd of=IMG bs=1 seek=$((0x40000 + 24)) conv=notrunc status=none";
        // cluster 0 unallocated with an allocation bit
        String allocBit = ext + " && qemu-io -c 'write -q 256k 1k' IMG"
                + " && printf '\\001' | dd of=IMG bs=1 seek=$((0x40000 + 15)) conv=notrunc status=none";
        // a compressed cluster 0 whose bitmap allocates subcluster 31 and zeroes subcluster 0
        String compressed = ext + " && qemu-io -c 'write -q -P 11 -c 0 64k' IMG"
                + " && printf '\\001\\200' | dd of=IMG bs=1 seek=$((0x40000 + 11)) conv=notrunc status=none";
        List<Case> cases = List.of(
                c(bothBits, "-c", "read 0 192k", "IMG"),
                c(bothBits, "-c", "write 0 192k", "IMG"),
                c(bothBits, "-r", "-c", "read 0 192k", "-c", "read 0 192k", "IMG"),
                c(allocBit, "-c", "read 0 1k", "IMG"),
                c(allocBit, "-c", "write 0 1k", "IMG"),
                c(compressed, "-c", "read -P 11 0 64k", "IMG"),
                c(compressed, "-c", "write -P 11 0 64k", "-c", "read -P 11 0 64k", "IMG"));
        for (int i = 0; i < cases.size(); i++) {
            Path where = Files.createDirectories(dir.resolve("invalid-l2-" + i));
            Case c = cases.get(i);
            Qemu.Result[] r = both(where, c);
            String what = String.join(" ", c.args()) + "\n" + r[0].out() + r[0].err() + "---\n" + r[1].out() + r[1].err();
            assertEquals(i < 5, r[0].err().startsWith("qcow2: "), "QEMU signals the corruption " + what);
            assertEquals(r[0].err(), r[1].err(), what);
            assertEquals(masked(r[0].out()), masked(r[1].out()), what);
            assertEquals(r[0].exit(), r[1].exit(), what);
            assertArrayEquals(Files.readAllBytes(where.resolve("qemu/t.qcow2")),
                    Files.readAllBytes(where.resolve("ours/t.qcow2")), "the same file " + what);
        }
    }

    /** An L2 cache of more than INT_MAX entries: QEMU's refusal (the images not compared: 32 PiB takes QEMU long). */
    @Test
    void l2CacheTooBigForAHugeImage() throws IOException {
        Qemu.Result[] r = both(dir, c("qemu-img create -q -f qcow2 -o cluster_size=256k IMG 32P", "-c",
                "reopen -o l2-cache-entry-size=512,l2-cache-size=1T", "-c", "reopen -o l2-cache-size=1G", "-c", "info",
                "IMG"));
        assertEquals("qemu-io: L2 cache size too big\n", r[0].err());
        assertEquals(r[0].err(), r[1].err());
        assertEquals(r[0].out(), r[1].out());
        assertEquals(r[0].exit(), r[1].exit());
    }

    /** qcow2's open options (QEMU's qcow2_runtime_opts), valid and not, in open, reopen and --image-opts (iotest 137). */
    @TestFactory
    Stream<DynamicTest> qcow2RuntimeOptions() {
        List<String> valid = new ArrayList<>();
        for (String o : List.of("lazy-refcounts=on,pass-discard-request=on", "lazy-refcounts=off,pass-discard-request=off",
                "pass-discard-snapshot=on,pass-discard-other=on", "overlap-check=all", "overlap-check=none",
                "overlap-check.template=cached", "overlap-check.main-header=on", "overlap-check.inactive-l2=off",
                "overlap-check.bitmap-directory=on", "cache-size=1M", "l2-cache-size=512k", "l2-cache-entry-size=512",
                "l2-cache-entry-size=4k", "l2-cache-entry-size=64k", "refcount-cache-size=128k", "cache-clean-interval=5",
                "cache-clean-interval=0")) {
            valid.addAll(List.of("-c", "reopen -o " + o));
        }
        valid.addAll(List.of("-c", "write -P 55 0 4M", "-c", "read -P 55 0 4M", "-c", "discard 0 4M", "-c",
                "write -z 0 4M", "-c", "read -P 0 0 4M", "IMG"));
        List<String> invalid = new ArrayList<>();
        for (String o : List.of("lazy-refcounts=42", "cache-size=1M,l2-cache-size=64k,refcount-cache-size=64k",
                "cache-size=1M,l2-cache-size=2M", "cache-size=1M,refcount-cache-size=2M", "l2-cache-entry-size=33k",
                "l2-cache-entry-size=128k", "refcount-cache-size=256T", "overlap-check=constant,overlap-check.template=all",
                "overlap-check=blubb", "overlap-check.template=blubb", "cache-clean-interval=-1",
                "overlap-check.foo=on", "pass-discard-other=x", "cache-clean-interval=x")) {
            invalid.addAll(List.of("-c", "reopen -o " + o));
        }
        invalid.addAll(List.of("-c", "write -P 1 0 64k", "-c", "read -P 1 0 64k", "IMG"));
        return cases("qcow2opts", List.of(
                c(IMG_64M, valid.toArray(String[]::new)),
                c(IMG_64M, invalid.toArray(String[]::new)),
                c("qemu-img create -q -f qcow2 -o compat=0.10 IMG 1M", "-c", "close", "-c",
                        "open -o lazy-refcounts=on IMG", "-c", "open -r -o lazy-refcounts=on IMG", "-c",
                        "open -o lazy-refcounts=off IMG", "-c", "write 0 1"),
                c(IMG_1M, "--image-opts", "-c", "write 0 1", "driver=qcow2,file.filename=IMG,cache-size=1M,l2-cache-size=2M"),
                // what reopen cannot change may be given again unchanged (iotest 133)
                c(OVERLAY, "-c", "reopen -o backing.node-name=foo", "-c", "reopen -o file.node-name=foo", "-c",
                        "reopen -o driver=qcow2", "-c", "reopen -o file.driver=file", "-c", "reopen -o backing.driver=qcow2",
                        "-c", "reopen -o backing.driver=file", "-c", "reopen -o driver=raw", "-c", "reopen -o read-only=foo",
                        "-c", "close", "-c", "open -o node-name=foo,backing.node-name=bar IMG", "-c",
                        "reopen -o node-name=foo", "-c", "reopen -o backing.node-name=bar", "-c", "reopen", "-c",
                        "reopen -o node-name=baz", "-c", "read -P 7 0 4k", "IMG"),
                c(IMG_1M, "--image-opts", "-c", "write 0 1",
                        "driver=qcow2,file.filename=IMG,lazy-refcounts=on,overlap-check=none,cache-size=1M"),
                // backing.driver overrides the header's backing format (iotest 114); without a backing file it fails
                c(OVERLAY, "-c", "close", "-c", "open -o backing.driver=raw IMG", "-c", "read -v 0 16", "-c", "close",
                        "-c", "open -o backing.driver=foo IMG", "-c", "open -o backing.driver=qcow2 IMG", "-c", "map"),
                c(IMG_1M, "-c", "close", "-c", "open -o backing.driver=qcow2 IMG", "-c", "read 0 1")));
    }

    @TestFactory
    Stream<DynamicTest> imageOptions() {
        String b = "driver=qcow2,file.filename=IMG";
        List<Case> cases = new ArrayList<>();
        for (String s : List.of(b, "driver=qcow2,file.driver=file,file.filename=IMG", "IMG", "filename=IMG",
                "driver=qcow2,filename=IMG", "file.filename=IMG", b + ",foo=bar", b + ",file.foo=bar", b + ",read-only=on",
                b + ",read-only=off", b + ",read-only=x", b + ",read-only=yes", b + ",force-share=on",
                b + ",force-share=on,read-only=on", b + ",cache.direct=on", b + ",cache.no-flush=on", b + ",discard=unmap",
                b + ",discard=ignore", b + ",discard=bogus", b + ",detect-zeroes=on", b + ",detect-zeroes=unmap",
                b + ",detect-zeroes=x", b + ",detect-zeroes=unmap,discard=ignore", "driver=bogus,file.filename=IMG",
                "driver=qcow2", "", b + ",,x", b + ",foo", b + ",nofoo", "driver=qcow2,file.filename=DIR/nonexistent",
                b + ",l2-cache-size=1M", b + ",l2-cache-size=x", b + ",refcount-cache-size=64k", b + ",cache-size=2M",
                b + ",cache-size=1M,l2-cache-size=1M,refcount-cache-size=1M", b + ",cache-clean-interval=x",
                b + ",overlap-check=none", b + ",overlap-check=x", b + ",pass-discard-request=off", b + ",file.aio=native",
                b + ",file.aio=x", b + ",file.locking=x", b + ",file.locking=on", b + ",id=x", b + ",id=1x", b + ",file=foo",
                b + ",node-name=n1", b + ",auto-read-only=on", "driver=file,filename=IMG,foo=1", "driver=file",
                "file.driver=file", b + ",cache.writeback=on", b + ",a.b=1,a=2", b + ",lazy-refcounts=x",
                b + ",help", "driver=qcow2,file.filename=IMG,file.cache.direct=on,file.aio=native")) {
            cases.add(c(IMG_1M, "--image-opts", "-c", "write -P 6 0 4k", "-c", "read -P 6 0 4k", "-c", "discard 0 64k",
                    "-c", "write -z 64k 64k", "-c", "info", s));
        }
        cases.add(c(IMG_1M, "--image-opts", "-U", "-r", "-c", "read 0 1", b + ",force-share=off"));
        cases.add(c(IMG_1M, "--image-opts", "-U", "-r", "-c", "read 0 1", b + ",force-share=on"));
        cases.add(c(IMG_1M, "--image-opts", "-r", "-c", "write 0 1", "-c", "read 0 1", b + ",read-only=off"));
        cases.add(c(IMG_1M, "--image-opts", "-c", "read 0 1", b, "IMG"));
        return cases("image-opts", cases);
    }

    @TestFactory
    Stream<DynamicTest> otherCommands() {
        return cases("misc", List.of(
                c(IMG_1M, "-c", "sleep 10", "-c", "sleep 0x10", "-c", "sleep x", "-c", "sleep -1", "-c", "sleep 10k", "-c",
                        "sleep", "-c", "sigraise x", "-c", "sigraise 99", "-c", "sigraise 1k", "-c", "sigraise 65", "-c",
                        "sigraise 0", "-c", "sigraise 10", "-c", "sigraise 14", "-c", "sigraise 17", "-c", "sigraise 32",
                        "-c", "break write_aio a", "-c", "remove_break a", "-c", "resume a", "-c", "break a", "-c",
                        "length", "IMG"),
                c("", "-c", "sleep 1", "-c", "sigraise 0", "-c", "read 0 1", "-c", "close", "-c", "map", "-c", "info",
                        "-c", "help close"),
                c(IMG_1M, "-c", "write -b 1 512", "-c", "write -b 0 1", "-c", "read -b 100 512",
                        "-c", "write -b -z 0 512", "-c", "write -f -b 0 512", "IMG"),
                c("qemu-img create -q -f raw IMG 1M", "-f", "raw", "-c", "read -b 0 512", "-c", "write -b 0 512", "-c",
                        "write -c 0 64k", "IMG")));
    }

    @TestFactory
    Stream<DynamicTest> compressedWrites() {
        return cases("compressed", List.of(
                c(IMG_4M, "-c", "write -c -P 1 0 64k", "-c", "write -c -P 2 64k 128k", "-c", "write -c 0 64k", "-c",
                        "write -c 100 512", "-c", "write -c 0 4k", "-c", "write -c 0 1000", "-c", "write -c -f 256k 64k",
                        "-c", "write -c -z 256k 64k", "-c", "write -c -P 3 4032k 64k", "-c", "read -P 1 0 64k", "-c",
                        "read -P 2 64k 128k", "-c", "read -P 3 4032k 64k", "-c", "write -P 4 32k 1k", "-c",
                        "read -P 4 32k 1k", "-c", "write -c 1M 0", "IMG"),
                c("qemu-img create -q -f qcow2 -o cluster_size=512 IMG 100k", "-c", "write -c -P 5 0 10k", "-c",
                        "write -c -P 6 99k 1k", "-c", "write -c 10k 100", "-c", "read -P 5 0 10k", "IMG"),
                c("qemu-img create -q -f qcow2 IMG 1000k", "-c", "write -c -P 7 960k 40k", "-c", "write -c 960k 64k",
                        "-c", "read -P 7 960k 40k", "IMG"),
                c(OVERLAY, "-c", "write -c -P 9 0 64k", "-c", "read -P 9 0 64k", "-c", "read -P 7 64k 64k", "IMG")));
    }

    /**
     * read -b and write -b: the VM state area past the disk, where qemu-img compare does not look, so the files are
     * compared byte for byte (the L1 table grown as QEMU grows it, the clusters where QEMU puts them); the limits
     * (EIO past QEMU's largest offset, EFBIG past its largest L1 table), the backing file read at the area's guest
     * offset, writethrough, and raw's ENOTSUP.
     */
    @TestFactory
    Stream<DynamicTest> vmStateArea() {
        List<Case> cases = List.of(
                c(IMG_64M, "-c", "write -b -P 1 0 4k", "-c", "read -b -P 1 0 4k", "-c", "read -b -P 0 4k 4k", "-c", "info",
                        "-c", "write -b -P 2 1T 4k", "-c", "read -b -P 2 1T 4k", "-c", "read -P 0 0 64k", "-c",
                        "read -b 0 511", "-c", "write -b -z 0 512", "-c", "write -b -f 0 512", "-c", "write -b 4P 512",
                        "-c", "read -b 9223372036854775296 512", "-c", "write -b -P 3 0 0", "-c", "read -b -v 1T 32", "IMG"),
                c("qemu-img create -q -f qcow2 -o cluster_size=1024 IMG 16M", "-t", "writethrough", "-c",
                        "write -b -P 4 0 4M", "-c", "read -b -P 4 0 4M", "-c", "write -P 5 0 64k", "IMG"),
                c("qemu-img create -q -f qcow2 DIR/b.qcow2 1G && qemu-io -c 'write -P 7 512M 64k' DIR/b.qcow2 >/dev/null && "
                        + "qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 IMG 64M", "-c", "read -b -P 7 0 64k", "-c",
                        "write -b -P 8 4k 4k", "-c", "read -b -P 7 0 4k", "-c", "read -b -P 8 4k 4k", "-c",
                        "read -b -P 7 8k 56k", "IMG"),
                c("qemu-img create -q -f qcow2 -o cluster_size=2M,extended_l2=on IMG 64M", "-c", "write -b -P 9 1k 512",
                        "-c", "write -b -P 10 3k 64k", "-c", "read -b -P 9 1k 512", "-c", "read -b -P 0 0 1k", "IMG"),
                c("qemu-img create -q -f raw IMG 1M", "-f", "raw", "-c", "write -b 0 512", "-c", "read -b 0 512", "IMG"));
        List<DynamicTest> tests = new ArrayList<>();
        for (int i = 0; i < cases.size(); i++) {
            Case c = cases.get(i);
            Path where = dir.resolve("vmstate-" + i);
            tests.add(DynamicTest.dynamicTest("vmstate " + i + ": " + String.join(" ", c.args()), () -> {
                assertSame(Files.createDirectories(where), c);
                assertArrayEquals(Files.readAllBytes(where.resolve("qemu/t.qcow2")),
                        Files.readAllBytes(where.resolve("ours/t.qcow2")), "the files");
            }));
        }
        return tests.stream();
    }

    /** The image of compressed writes holds compressed clusters, as qemu-io's does (qemu-img check counts them). */
    @Test
    void compressedWritesLeaveCompressedClusters() throws IOException {
        Case c = c(IMG_4M, "-c", "write -c -P 1 0 64k", "-c", "write -c -P 2 64k 128k", "-c", "write -c 1M 64k", "IMG");
        both(dir, c);
        List<String> counts = new ArrayList<>();
        for (String who : List.of("qemu", "ours")) {
            String check = Qemu.img(dir, "check", dir.resolve(who + "/t.qcow2").toString()).out();
            counts.add(check.lines().filter(l -> l.contains("compressed clusters")).findFirst().orElse(check));
        }
        assertEquals(counts.get(0), counts.get(1));
        assertTrue(counts.get(1).startsWith("4/64 = 6.25% allocated, ") && counts.get(1).endsWith(
                "100.00% compressed clusters"), counts.get(1));
    }

    /** -s: the writes go to a temporary overlay and vanish: the image is unchanged, byte for byte. */
    @Test
    void snapshotLeavesTheImageAsItWas() throws IOException {
        Path img = dir.resolve("s.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", img.toString(), "4M");
        Qemu.io(dir, img.toString(), "write -P 3 0 128k");
        byte[] before = Files.readAllBytes(img);
        Qemu.Result r = qemuIo("-s", "-c", "write -P 4 0 64k", "-c", "read -P 4 0 64k", "-c", "read -P 3 64k 64k",
                "-c", "discard 0 1M", "-c", "read -P 0 0 64k", img.toString());
        assertEquals(0, r.exit(), r.out() + r.err());
        assertFalse(masked(r.out()).contains("failed"), r.out());
        assertArrayEquals(before, Files.readAllBytes(img));
    }

    // ================================================================ standard input, signals, abort

    /** Without -c qemu-io prompts before each line, even when standard input is no terminal. */
    @Test
    void standardInputGetsQemuIosPrompt() throws Exception {
        Path theirs = dir.resolve("a.qcow2");
        Path ours = dir.resolve("b.qcow2");
        for (Path p : List.of(theirs, ours)) {
            Qemu.img(dir, "create", "-q", "-f", "qcow2", p.toString(), "1M");
        }
        String input = "write -P 1 0 4k\nopen " + ours + "\nbogus\naio_write 0 1\naio_flush\nread -P 1 0 4k\nlength";
        Path in = Files.writeString(dir.resolve("in.txt"), input.replace(ours.toString(), theirs.toString()));
        Qemu.Result want = Qemu.run(dir, "sh", "-c", "qemu-io " + theirs + " < " + in);
        IoCommand io = new IoCommand(() -> new ByteArrayInputStream(input.getBytes(StandardCharsets.UTF_8)), sig -> {
            throw new AssertionError("signal " + sig);
        });
        List<CommandLine.Option> options = new ArrayList<>(io.options());
        options.add(Command.DEBUG);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int exit;
        try (PrintWriter o = new PrintWriter(out, false, StandardCharsets.UTF_8);
             Stderr e = new Stderr(err, Program.QEMU_IO)) {
            exit = io.run(CommandLine.parse(List.of(ours.toString()), options), o, e);
        }
        assertEquals(masked(want.out()), masked(out.toString(StandardCharsets.UTF_8)));
        assertEquals(want.err().replace(theirs.toString(), ours.toString()), err.toString(StandardCharsets.UTF_8));
        assertEquals(want.exit(), exit);
        assertTrue(out.toString(StandardCharsets.UTF_8).startsWith("qemu-io> wrote 4096/4096 bytes at offset 0\n"));
    }

    /** The signals qemu-io raises: the same exit status, the output flushed first (except by abort). */
    @Test
    void sigraiseAndAbortEndTheProcessAsQemuIos() throws IOException {
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        for (String command : List.of("sigraise 9", "sigraise 15", "sigraise 6", "sigraise 1", "sigraise 34", "abort",
                "sigraise 10", "sigraise 12")) {
            Path d = Files.createDirectories(dir.resolve("sig-" + command.replace(' ', '-')));
            String[] io = {"-c", "write -P 1 0 64k", "-c", command, "-c", "write -P 2 0 64k", "-c", "length"};
            Path theirs = d.resolve("a.qcow2");
            Path ours = d.resolve("b.qcow2");
            for (Path p : List.of(theirs, ours)) {
                Qemu.img(d, "create", "-q", "-f", "qcow2", p.toString(), "1M");
            }
            List<String> q = Qemu.list("qemu-io");
            q.addAll(List.of(io));
            q.add(theirs.toString());
            Qemu.Result want = Qemu.run(d, q.toArray(String[]::new));
            List<String> cmd = Qemu.list(java.toString(), "-Dqcow4j.program=qemu-io", "-cp",
                    System.getProperty("java.class.path"), Main.class.getName());
            cmd.addAll(List.of(io));
            cmd.add(ours.toString());
            Qemu.Result got = Qemu.run(d, cmd.toArray(String[]::new));
            assertEquals(want.exit(), got.exit(), command + ": " + got.out() + got.err());
            assertEquals(masked(want.out()), masked(got.out()), command);
            if (want.exit() != 0) {
                // ended at the signal: the first write is all there is, and the image is consistent
                Qemu.Result check = Qemu.run(d, "qemu-img", "check", ours.toString());
                assertTrue(check.exit() == 0 || check.exit() == 3, check.out() + check.err());
            }
        }
    }

    /**
     * Lazy refcounts, from the header or from the {@code lazy-refcounts} open option, killed after a write: the same
     * file as qemu-io's, byte for byte (the new L2 table counted, its data cluster not, the dirty bit set, as QEMU's
     * l2_allocate leaves them), the same check verdict; and opening it again repairs it with QEMU's lines on stderr.
     */
    @Test
    void lazyRefcountsLeaveQemusFileAfterAKill() throws IOException {
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        record Kill(String create, String reopen) {
        }
        for (Kill k : List.of(new Kill("lazy_refcounts=on", null), new Kill("lazy_refcounts=off", "lazy-refcounts=on"),
                new Kill("lazy_refcounts=on", "lazy-refcounts=off"))) {
            Path d = Files.createDirectories(dir.resolve("lazy-" + k.create() + "-" + k.reopen()));
            List<String> io = new ArrayList<>();
            if (k.reopen() != null) {
                io.addAll(List.of("-c", "reopen -o " + k.reopen()));
            }
            io.addAll(List.of("-c", "write -P 0x5a 0 512", "-c", "write -P 7 600M 4k", "-c", "sigraise 9"));
            Path theirs = d.resolve("a.qcow2");
            Path ours = d.resolve("b.qcow2");
            for (Path p : List.of(theirs, ours)) {
                Qemu.img(d, "create", "-q", "-f", "qcow2", "-o", "compat=1.1," + k.create(), p.toString(), "1G");
            }
            List<String> q = Qemu.list("qemu-io");
            q.addAll(io);
            q.add(theirs.toString());
            Qemu.Result want = Qemu.run(d, q.toArray(String[]::new));
            List<String> cmd = Qemu.list(java.toString(), "-Dqcow4j.program=qemu-io", "-cp",
                    System.getProperty("java.class.path"), Main.class.getName());
            cmd.addAll(io);
            cmd.add(ours.toString());
            Qemu.Result got = Qemu.run(d, cmd.toArray(String[]::new));
            assertEquals(want.exit(), got.exit(), k + ": " + got.out() + got.err());
            assertArrayEquals(Files.readAllBytes(theirs), Files.readAllBytes(ours), k + ": the file after the kill");
            Qemu.Result wantCheck = Qemu.run(d, "qemu-img", "check", theirs.toString());
            Qemu.Result gotCheck = Qemu.run(d, "qemu-img", "check", ours.toString());
            assertEquals(wantCheck.exit(), gotCheck.exit(), k + ": " + gotCheck.out());
            assertEquals(wantCheck.out().replace(theirs.toString(), "IMG"), gotCheck.out().replace(ours.toString(), "IMG"));
            // opened for writing again: QEMU's repair, its lines on stderr, and the same file after it
            Qemu.Result wantOpen = Qemu.run(d, "qemu-io", "-c", "write -P 1 64k 512", theirs.toString());
            Qemu.Result gotOpen = qemuIo("-c", "write -P 1 64k 512", ours.toString());
            assertEquals(wantOpen.err(), gotOpen.err(), k + ": repair on open");
            assertEquals(masked(wantOpen.out()), masked(gotOpen.out()), k.toString());
            assertArrayEquals(Files.readAllBytes(theirs), Files.readAllBytes(ours), k + ": the file after the repair");
        }
    }

    // ================================================================ bad input

    /** Random command lines and option strings: one clear line at most, exit 0 or 1, never a stack trace. */
    @Test
    void badInputNeverGivesAStackTrace() throws IOException {
        Path img = dir.resolve("f.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", img.toString(), "1M");
        Random random = new Random(42);
        String[] words = {"open", "reopen", "-o", "-r", "-w", "-c", "driver=qcow2", "file.filename=" + img, ",", ",,", "=",
                "readv", "writev", "aio_read", "aio_write", "alloc", "map", "info", "-P", "0x", "1k", "-1", "9E", "x",
                "sleep", "close", "write", "-c", "-z", "-u", "help", "id=", "a.b=c", "no", "-i", "-C", "-q", "read",
                "truncate", "sigraise", "break", "0", "100", "4G", "discard", "--", "-", "\u00e9", "\t"};
        for (int i = 0; i < 300; i++) {
            StringBuilder line = new StringBuilder();
            int n = 1 + random.nextInt(6);
            for (int w = 0; w < n; w++) {
                line.append(words[random.nextInt(words.length)]).append(random.nextInt(4) == 0 ? "" : " ");
            }
            String l = line.toString();
            if (l.contains("sigraise") || l.contains("abort")) {
                continue; // they end the process, by design
            }
            Qemu.Result r = qemuIo("-c", l, "-c", "close", "-c", "open " + img, "-c", "read 0 1", img.toString());
            assertTrue(r.exit() == 0 || r.exit() == 1, l);
            assertFalse(r.err().contains("\tat ") || r.err().contains("Exception") || r.err().contains("internal error"),
                    l + "\n" + r.err());
        }
        for (int i = 0; i < 200; i++) {
            StringBuilder s = new StringBuilder();
            int n = random.nextInt(5);
            String[] parts = {"driver", "=", "qcow2", "raw", "file", ".", "filename", img.toString(), ",", ",,", "id",
                    "read-only", "on", "off", "x", "cache", "direct", "help", "no", "aio", "native", "l2-cache-size", "-1",
                    "99999999999999999999", "detect-zeroes", "discard", "unmap"};
            for (int w = 0; w < n * 3; w++) {
                s.append(parts[random.nextInt(parts.length)]);
            }
            Qemu.Result r = qemuIo("--image-opts", "-c", "read 0 1", s.toString());
            assertTrue(r.exit() == 0 || r.exit() == 1, s.toString());
            assertFalse(r.err().contains("\tat ") || r.err().contains("Exception") || r.err().contains("internal error"),
                    s + "\n" + r.err());
            // one error at most (QEMU's hint lines and deprecation warnings aside)
            assertTrue(r.err().lines().filter(l -> l.startsWith("qemu-io: ") && !l.startsWith("qemu-io: warning: "))
                    .count() <= 1, s + "\n" + r.err());
        }
    }

    // ================================================================ pieces

    @Test
    void qemuOptsParsesAsQemu() throws Exception {
        List<String> warnings = new ArrayList<>();
        assertEquals(Map.of("driver", "qcow2", "file.filename", "a,b"),
                QemuOpts.parse("driver=qcow2,file.filename=a,,b", null, QemuOpts.Kind.MERGED, warnings::add));
        assertEquals(Map.of("foo", "on", "bar", "off", "help", "on"),
                QemuOpts.parse("foo,nobar,help", null, QemuOpts.Kind.MERGED, warnings::add));
        assertEquals(List.of("warning: short-form boolean option 'foo' deprecated", "Please use foo=on instead",
                "warning: short-form boolean option 'nobar' deprecated", "Please use bar=off instead"), warnings);
        assertEquals(Map.of("enable", "a,b", "file", "f"),
                QemuOpts.parse("a,,b,file=f", "enable", QemuOpts.Kind.WITH_ID, w -> { }));
        assertEquals(List.of("id", "x"), List.copyOf(QemuOpts.parse("x=1,id=a", null, QemuOpts.Kind.WITH_ID, w -> { })
                .keySet()), "the id first, as qemu_opts_to_qdict puts it");
        QemuOpts.Keyval kv = QemuOpts.keyval("secret,id=s,data=a,,b,x.y=1", "qom-type");
        assertEquals(Map.of("qom-type", "secret", "id", "s", "data", "a,b", "x.y", "1"), kv.values());
        assertFalse(kv.help());
        assertTrue(QemuOpts.keyval("secret,help", "qom-type").help());
        for (String[] bad : new String[][] {{"a=1,a.b=2", "Parameters 'a.*' used inconsistently"},
                {"x,y", "Expected '=' after parameter 'y'"}, {"1a=b", "Invalid parameter '1a'"},
                {"a..b=1", "Invalid parameter 'a..b'"}}) {
            QemuOpts.Invalid e = assertThrows(QemuOpts.Invalid.class,
                    () -> QemuOpts.keyval(bad[0], "qom-type"));
            assertEquals(bad[1], e.getMessage());
        }
        // long strings cost their length, not its square
        StringBuilder many = new StringBuilder("secret");
        for (int i = 0; i < 200_000; i++) {
            many.append(",a").append(i).append(".b=").append(i);
        }
        long t0 = System.nanoTime();
        assertEquals(200_001, QemuOpts.keyval(many.toString(), "qom-type").values().size());
        assertEquals(200_000, QemuOpts.parse(many.substring(7), null, QemuOpts.Kind.MERGED, w -> { }).size());
        // linear takes well under a second; quadratic (4e11 byte copies) takes minutes: 30 s holds on a loaded machine
        assertTrue(System.nanoTime() - t0 < 30_000_000_000L, "linear");
    }

    @Test
    void imageSpecGivesTheLibraryItsOptions() throws Exception {
        ImageSpec s = ImageSpec.of(null, QemuOpts.parse("driver=qcow2,file.filename=/x/y.qcow2,l2-cache-size=2M,"
                + "discard=ignore,detect-zeroes=on,cache.direct=on", null, QemuOpts.Kind.WITH_ID, w -> { }));
        assertEquals("/x/y.qcow2", s.filename());
        assertEquals("qcow2", s.format());
        OpenOptions o = s.openOptions(OpenOptions.defaults());
        assertEquals(2 << 20, o.l2CacheBytes());
        assertFalse(o.discard());
        assertEquals(OpenOptions.DetectZeroes.ON, o.detectZeroes());
        assertEquals("qcow2", o.format());
        assertEquals(Boolean.TRUE, s.cacheDirect());
        assertEquals("/a/b", ImageSpec.of("file:/a/b", Map.of()).filename());
    }
}
