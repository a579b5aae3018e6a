package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code rebase} and {@code commit} against qemu-img on twin copies of the same chains (base, mid, top and an
 * unrelated new base; qcow2 of several kinds, a raw base, compressed clusters, internal snapshots, 4 TiB sparse):
 * the same stdout, stderr and exit code; every file byte for byte qemu-img's, except a commit's base, whose layout
 * follows the completion order of QEMU's concurrent copy operations: there the guest data ({@code qemu-img
 * compare}), {@code qemu-img check}, {@code info} JSON and the map without host offsets are qemu-img's.
 */
class RebaseCommitTest {
    @TempDir
    Path dir;

    /**
     * name, qemu-img create options of every qcow2 image, size, extra qemu-io write option ("-c" compressed), internal
     * snapshots, persistent bitmaps (an enabled and a disabled one in top and mid).
     */
    private record Kind(String name, String options, String size, boolean rawBase, String writeFlag, boolean snapshots,
                        boolean bitmaps) {
    }

    private static final List<Kind> KINDS = List.of(
            new Kind("v3", "compat=1.1", "8M", false, "", false, false),
            new Kind("v2", "compat=0.10", "8M", false, "", false, false),
            new Kind("extended-l2", "extended_l2=on", "8M", false, "", false, false),
            new Kind("512", "cluster_size=512", "8M", false, "", false, false),
            new Kind("2M", "cluster_size=2M", "8M", false, "", false, false),
            new Kind("raw-base", "compat=1.1", "8M", true, "", false, false),
            new Kind("compressed", "compat=1.1", "8M", false, "-c ", false, false),
            new Kind("snapshots", "compat=1.1", "8M", false, "", true, false),
            new Kind("sparse-4T", "compat=1.1", "4T", false, "", false, false),
            new Kind("bitmaps", "compat=1.1", "8M", false, "", false, true));

    private static final List<String> OPERATIONS = List.of("rebase -b nb.qcow2 -F qcow2 TOP",
            "rebase -b BASE -F BASEFMT TOP", "rebase -b \"\" TOP", "commit TOP",
            "commit -q -b BASE TOP");
    /** Also on the first kind: the progress line (elsewhere qemu-img's steps follow its driver's block status runs). */
    private static final List<String> FIRST_KIND_ONLY = List.of("rebase -p -b nb.qcow2 -F qcow2 MID", "commit -d MID",
            "rebase -u -b nb.qcow2 -F qcow2 MID");

    /** Each kind's chain, made once and copied for each operation. */
    private final java.util.Map<Kind, Path> templates = new java.util.HashMap<>();

    @TestFactory
    Stream<DynamicTest> sameAsQemuImg() {
        List<DynamicTest> tests = new ArrayList<>();
        for (Kind k : KINDS) {
            List<String> ops = new ArrayList<>(OPERATIONS);
            if (k == KINDS.get(0)) {
                ops.addAll(FIRST_KIND_ONLY);
            }
            if (k.bitmaps()) {
                ops.add("rebase -u -b nb.qcow2 -F qcow2 TOP"); // QEMU stores the bitmaps anew: the open flags them in use
            }
            for (String op : ops) {
                if (k.size().equals("4T") && op.startsWith("rebase") && !op.contains("-u")) {
                    continue; // qemu-img reads 4 TiB of zeros twice (minutes); ours skips them
                }
                tests.add(DynamicTest.dynamicTest(k.name() + ": " + op, () -> compare(k, op)));
            }
        }
        return tests.stream();
    }

    private void compare(Kind k, String op) throws IOException {
        Path theirs = Files.createDirectories(dir.resolve("theirs"));
        Path ours = Files.createDirectories(dir.resolve("ours"));
        clean(theirs);
        clean(ours);
        Path template = templates.get(k);
        if (template == null) {
            template = Files.createDirectories(dir.resolve("template-" + k.name()));
            makeChain(template, k);
            templates.put(k, template);
        }
        for (Path f : list(template)) {
            Files.copy(f, theirs.resolve(f.getFileName()));
            Files.copy(f, ours.resolve(f.getFileName()));
        }
        Qemu.Result want = Qemu.run(theirs, args("qemu-img", op, theirs, k));
        Qemu.Result got = RebaseCommitTest.run(args(null, op, ours, k));
        assertEquals(want.exit(), got.exit(), op + ": " + got);
        assertEquals(want.out(), got.out(), op);
        assertEquals(want.err().replace(theirs.toString(), "D"), got.err().replace(ours.toString(), "D"), op);
        for (Path f : list(theirs)) {
            Path g = ours.resolve(f.getFileName());
            boolean layoutFree = op.startsWith("commit") && f.getFileName().toString().equals(committedInto(op));
            if (!layoutFree) {
                assertArrayEquals(Files.readAllBytes(f), Files.readAllBytes(g), k.name() + " " + op + ": " + f.getFileName());
                continue;
            }
            String fmt = f.toString().endsWith(".raw") ? "raw" : "qcow2";
            assertEquals(0, Qemu.run(dir, "qemu-img", "compare", "-f", fmt, "-F", fmt, f.toString(), g.toString()).exit(),
                    op + ": guest data of " + f.getFileName());
            if (fmt.equals("qcow2")) {
                assertEquals(0, Qemu.run(dir, "qemu-img", "check", g.toString()).exit(), op + ": check " + g);
                assertEquals(info(theirs, f), info(ours, g), op + ": info of " + f.getFileName());
                assertEquals(map(theirs, f), map(ours, g), op + ": map of " + f.getFileName());
            }
        }
    }

    /** The file a commit writes into: its -b, else the image's backing file. */
    private static String committedInto(String op) {
        if (op.contains("-b BASE")) {
            return "base.qcow2";
        }
        return op.endsWith("MID") ? "base.qcow2" : "mid.qcow2";
    }

    private static String info(Path d, Path f) {
        return Qemu.run(d, "qemu-img", "info", "-U", "--output=json", f.getFileName().toString()).out()
                .replaceAll("\"actual-size\": \\d+", "");
    }

    /** qemu-img map without host offsets, entries that then read alike merged (they split where offsets jump). */
    private static String map(Path d, Path f) {
        String out = Qemu.run(d, "qemu-img", "map", "-U", "--output=json", f.getFileName().toString()).out();
        StringBuilder merged = new StringBuilder();
        java.util.regex.Matcher m = java.util.regex.Pattern.compile(
                "\\{ \"start\": (\\d+), \"length\": (\\d+), (\"depth\"[^}]*?)(, \"offset\": \\d+)?}").matcher(out);
        long start = -1;
        long length = 0;
        String status = null;
        while (m.find()) {
            if (m.group(3).equals(status) && start + length == Long.parseLong(m.group(1))) {
                length += Long.parseLong(m.group(2));
                continue;
            }
            if (status != null) {
                merged.append(start).append('+').append(length).append(' ').append(status).append('\n');
            }
            start = Long.parseLong(m.group(1));
            length = Long.parseLong(m.group(2));
            status = m.group(3);
        }
        return merged.append(start).append('+').append(length).append(' ').append(status).toString();
    }

    /** base (qcow2 of the kind, or raw), mid and top over it, nb: an unrelated new base; names relative. */
    private static void makeChain(Path d, Kind k) {
        String base = k.rawBase() ? "base.raw" : "base.qcow2";
        String baseFmt = k.rawBase() ? "raw" : "qcow2";
        long big = k.size().equals("4T") ? 1L << 40 : 0;
        if (k.rawBase()) {
            Qemu.img(d, "create", "-q", "-f", "raw", base, k.size());
            Qemu.run(d, "qemu-io", "-f", "raw", "-c", "write -P 1 0 3M", "-c", "write -P 2 5M 512k", base).ok();
        } else {
            Qemu.img(d, "create", "-q", "-f", "qcow2", "-o", k.options(), base, k.size());
            Qemu.io(d, base, "write " + k.writeFlag() + "-P 1 0 3M", "write -P 2 " + (5 * (1 << 20) + big) + " 512k");
        }
        if (k.snapshots()) {
            Qemu.img(d, "snapshot", "-c", "s1", base);
        }
        Qemu.img(d, "create", "-q", "-f", "qcow2", "-o", k.options(), "-b", base, "-F", baseFmt, "mid.qcow2");
        Qemu.io(d, "mid.qcow2", "write " + k.writeFlag() + "-P 7 704k 320k", "write -P 8 " + (6 * (1 << 20) + 2 * big) + " 100k");
        if (k.snapshots()) {
            Qemu.img(d, "snapshot", "-c", "s2", "mid.qcow2");
            Qemu.io(d, "mid.qcow2", "write -P 9 0 64k");
        }
        Qemu.img(d, "create", "-q", "-f", "qcow2", "-o", k.options(), "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2");
        if (k.bitmaps()) {
            for (String image : new String[] {"mid.qcow2", "top.qcow2"}) {
                Qemu.img(d, "bitmap", "--add", image, "b0");
                Qemu.img(d, "bitmap", "--add", "-g", "128k", image, "b1");
                Qemu.io(d, image, "write -P 10 7M 64k");
                Qemu.img(d, "bitmap", "--disable", image, "b1");
            }
        }
        Qemu.io(d, "top.qcow2", "write -P 3 1000k 1M", "write -P 4 " + (7 * (1 << 20) + 3 * big) + " 4k",
                "write -z 4M 128k", "write " + k.writeFlag() + "-P 5 2M 64k");
        Qemu.img(d, "create", "-q", "-f", "qcow2", "-o", k.options(), "nb.qcow2", k.size());
        Qemu.io(d, "nb.qcow2", "write -P 1 0 1M", "write -P 6 " + (5 * (1 << 20) + big) + " 64k");
    }

    /** The command line of {@code op} over the chain in {@code d} (absolute image names, as in-process runs need). */
    private static String[] args(String program, String op, Path d, Kind k) {
        List<String> a = new ArrayList<>();
        if (program != null) {
            a.add(program);
        }
        for (String w : op.split(" ")) {
            a.add(switch (w) {
                case "TOP" -> d.resolve("top.qcow2").toString();
                case "MID" -> d.resolve("mid.qcow2").toString();
                case "BASE" -> k.rawBase() ? "base.raw" : "base.qcow2";
                case "BASEFMT" -> k.rawBase() ? "raw" : "qcow2";
                case "\"\"" -> "";
                default -> w;
            });
        }
        return a.toArray(String[]::new);
    }

    /** Refusals: one line (or qemu-img's two), qemu-img's exit code, no file changed. */
    @Test
    void refusalsAreQemuImgs() throws IOException {
        Path theirs = Files.createDirectories(dir.resolve("theirs"));
        Path ours = Files.createDirectories(dir.resolve("ours"));
        Kind k = KINDS.get(0);
        makeChain(theirs, k);
        Qemu.img(theirs, "create", "-q", "-f", "qcow2", "lone.qcow2", "1M");
        Qemu.img(theirs, "create", "-q", "-f", "raw", "r.raw", "1M");
        Qemu.img(theirs, "create", "-q", "-f", "qcow2", "-b", "gone.qcow2", "-F", "qcow2", "-u", "orphan.qcow2", "1M");
        for (Path f : list(theirs)) {
            Files.copy(f, ours.resolve(f.getFileName()));
        }
        for (String op : List.of("rebase TOP", "rebase -b nb.qcow2 TOP", "rebase -b nope.qcow2 -F qcow2 TOP",
                "rebase -b nb.qcow2 -F qcow3 TOP", "rebase -t bogus -b nb.qcow2 -F qcow2 TOP", "rebase -T bogus -u -b x TOP",
                "rebase -b nb.qcow2 -F qcow2 TOP TOP", "rebase -u -b nb.qcow2 -F qcow2 D/r.raw",
                "rebase -b nb.qcow2 -F qcow2 D/orphan.qcow2", "rebase -u -b x -F qcow2 D/missing.qcow2",
                "rebase -b " + "x".repeat(1100) + " -F qcow2 -u TOP", "commit D/lone.qcow2", "commit -b nope.qcow2 TOP",
                "commit -b top.qcow2 TOP", "commit -r 1x TOP", "commit -t bogus TOP", "commit D/orphan.qcow2",
                "commit -f raw D/r.raw", "commit")) {
            String[] a = args(null, op.replace("D/", theirs + "/"), theirs, k);
            Qemu.Result want = Qemu.run(theirs, Qemu.concat("qemu-img", a));
            String[] b = args(null, op.replace("D/", ours + "/"), ours, k);
            Qemu.Result got = run(b);
            assertEquals(want.exit(), got.exit(), op + ": " + got);
            assertEquals(want.out(), got.out(), op);
            assertEquals(want.err().replace(theirs.toString(), "D"), got.err().replace(ours.toString(), "D"), op);
            for (Path f : list(theirs)) {
                assertArrayEquals(Files.readAllBytes(f), Files.readAllBytes(ours.resolve(f.getFileName())), op + ": " + f);
            }
        }
    }

    /** A backing file loop: one line, exit 1, nothing changed (qemu-img fails on its own lock instead). */
    @Test
    void loopIsRefused() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "a.qcow2", "1M");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2");
        Qemu.img(dir, "rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2");
        byte[] a = Files.readAllBytes(dir.resolve("a.qcow2"));
        byte[] b = Files.readAllBytes(dir.resolve("b.qcow2"));
        for (String[] line : List.of(new String[] {"rebase", "-b", "", dir + "/a.qcow2"},
                new String[] {"commit", dir + "/b.qcow2"})) {
            Qemu.Result got = run(line);
            assertEquals(1, got.exit(), got.toString());
            assertEquals(1, got.err().lines().count(), got.err());
            assertArrayEquals(a, Files.readAllBytes(dir.resolve("a.qcow2")));
            assertArrayEquals(b, Files.readAllBytes(dir.resolve("b.qcow2")));
        }
    }

    private static Qemu.Result run(String... args) {
        return SnapshotCommandTest.run(Program.QEMU_IMG, args);
    }

    private static List<Path> list(Path d) throws IOException {
        try (Stream<Path> s = Files.list(d)) {
            return s.filter(Files::isRegularFile).sorted().toList();
        }
    }

    private static void clean(Path d) throws IOException {
        for (Path f : list(d)) {
            Files.delete(f);
        }
    }
}
