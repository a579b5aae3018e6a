package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code snapshot} against {@code qemu-img snapshot} on twin images: after each step of a sequence of creates,
 * writes, applies and deletes, the two files are byte for byte the same once the snapshots' dates are masked (QEMU's
 * allocation, table layout, COPIED flags, freed clusters zeroed), {@code qemu-img check} finds ours clean, and
 * {@code snapshot -l}, exit codes and messages (under the qemu-img name) are qemu-img's.
 */
class SnapshotCommandTest {
    @TempDir
    Path dir;

    /** Image kinds: qemu-img create options and size. */
    static final List<String[]> KINDS = List.of(new String[] {"compat=1.1", "64M"}, new String[] {"cluster_size=512", "8M"},
            new String[] {"extended_l2=on", "64M"}, new String[] {"lazy_refcounts=on", "64M"},
            new String[] {"compat=0.10", "64M"}, new String[] {"refcount_bits=64", "64M"},
            new String[] {"cluster_size=2M", "64M"}, new String[] {"cluster_size=4k,refcount_bits=8", "600M"});

    /** Steps: "io:CMD" for a qemu-io command run on both, else qemu-img snapshot's options. */
    static final List<String> STEPS = List.of("-c s1", "io:write -P 3 0 64k", "-c s2", "io:write -z 6M 64k",
            "io:discard 6M+64k 64k", "-l", "-a 1", "-c s3", "-d s2", "io:write -P 5 7M 1M", "-c s1", "-l", "-a s3",
            "-d s1", "-d s1", "-d s3", "-l");

    @TestFactory
    Stream<DynamicTest> stepsLeaveQemuImgsFile() {
        return stepsLikeQemuImg(KINDS, STEPS);
    }

    /**
     * The VM state area (qemu-io's write -b, past the disk, the L1 table grown for it) goes with the active L1 table:
     * a snapshot takes it along, applying one with a shorter L1 table drops it (iotest 029), deleting frees it.
     */
    @TestFactory
    Stream<DynamicTest> vmStateAreaGoesWithTheL1Table() {
        return stepsLikeQemuImg(List.of(KINDS.get(0), KINDS.get(1)), List.of("-c s1", "io:write -b -P 4 0 4k", "-l",
                "-a s1", "io:write -b -P 5 1G 4k", "-c s2", "io:write -b -P 6 1G 4k", "-d s1", "-a s2", "-c s3", "-d s2",
                "-l"));
    }

    private Stream<DynamicTest> stepsLikeQemuImg(List<String[]> kinds, List<String> steps) {
        return kinds.stream().map(k -> DynamicTest.dynamicTest(k[0], () -> {
            Path theirs = dir.resolve(k[0].replace(',', '_') + "-theirs.qcow2");
            Path ours = dir.resolve(k[0].replace(',', '_') + "-ours.qcow2");
            Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", k[0], theirs.toString(), k[1]);
            Qemu.io(dir, theirs.toString(), "write -P 1 0 1M", "write -P 2 3M 300k", "write -z 2M 128k");
            Files.copy(theirs, ours);
            for (String step : steps) {
                if (step.startsWith("io:")) {
                    String c = step.substring(3).replace("6M+64k", Long.toString((6 << 20) + 65536));
                    Qemu.io(dir, theirs.toString(), c);
                    Qemu.io(dir, ours.toString(), c);
                    continue;
                }
                String[] args = (step + " X").split(" ");
                args[args.length - 1] = theirs.toString();
                Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", Qemu.concat("snapshot", args)));
                args[args.length - 1] = ours.toString();
                Qemu.Result got = run(Program.QEMU_IMG, Qemu.concat("snapshot", args));
                assertEquals(want.exit(), got.exit(), step + ": " + got);
                assertEquals(want.err().replace(theirs.toString(), "IMG"), got.err().replace(ours.toString(), "IMG"), step);
                // the tools take their snapshots' dates a moment apart
                String date = "\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d";
                assertEquals(want.out().replaceAll(date, "DATE"), got.out().replaceAll(date, "DATE"), step);
                assertEquals(null, difference(theirs, ours), k[0] + " after " + step);
            }
            assertEquals(0, Qemu.run(dir, "qemu-img", "check", ours.toString()).exit());
        }));
    }

    @Test
    void refusalsAreQemuImgs() throws IOException {
        Path img = dir.resolve("a.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", img.toString(), "1M");
        Qemu.img(dir, "create", "-q", "-f", "raw", dir.resolve("r.raw").toString(), "1M");
        // an external data file: QEMU's qcow2 driver refuses snapshots (and lists none)
        Path df = dir.resolve("df.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "data_file=" + dir.resolve("df.data"), df.toString(), "1M");
        for (String line : List.of("-a nope IMG", "-d nope IMG", "-l -c x IMG", "-c x -c y IMG", "-c", "-f qcow2 -l IMG",
                "-l", "IMG", "-U -c x IMG", "-c x DIR/missing.qcow2", "-c x -f raw DIR/r.raw", "-c x DF", "-a x DF",
                "-d x DF", "-l DF")) {
            String[] args = line.replace("IMG", img.toString()).replace("DF", df.toString()).replace("DIR", dir.toString())
                    .split(" ");
            if (line.contains("-f raw")) {
                continue; // qemu-img has no -f here; see below
            }
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", Qemu.concat("snapshot", args)));
            Qemu.Result got = run(Program.QEMU_IMG, Qemu.concat("snapshot", args));
            assertEquals(want, got, line);
        }
        // qcow4j's own -f: a raw image cannot take snapshots (qemu-img: -95 Operation not supported)
        Qemu.Result raw = run(Program.QCOW4J, "snapshot", "-f", "raw", "-c", "x", dir.resolve("r.raw").toString());
        assertEquals(1, raw.exit());
        assertTrue(raw.err().contains("Could not create snapshot 'x': -95 (Operation not supported)"), raw.err());
    }

    /** {@code convert -l} reads a snapshot as qemu-img does: by id, by name, either, both; refusals in its words. */
    @Test
    void convertReadsASnapshotAsQemuImgDoes() throws IOException {
        Path img = dir.resolve("c.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", img.toString(), "64M");
        Qemu.io(dir, img.toString(), "write -P 7 0 1M");
        Qemu.img(dir, "snapshot", "-c", "s1", img.toString());
        Qemu.io(dir, img.toString(), "write -P 8 0 512k", "write -P 9 40M 64k");
        Qemu.img(dir, "snapshot", "-c", "5", img.toString());
        Qemu.io(dir, img.toString(), "write -z 0 2M");
        Qemu.img(dir, "resize", "-q", img.toString(), "80M"); // the snapshots keep 64M; QEMU reads them at 80M
        for (String param : List.of("snapshot.name=s1", "snapshot.id=1", "s1", "1", "2", "5", "snapshot.id=2,snapshot.name=5",
                "nope", "snapshot.id=9", "snapshot.foo=1", "snapshot.id=1,snapshot.name=x")) {
            for (String format : List.of("raw", "qcow2")) {
                Path want = dir.resolve("want." + format);
                Path got = dir.resolve("got." + format);
                Files.deleteIfExists(want);
                Files.deleteIfExists(got);
                Qemu.Result w = Qemu.run(dir, "qemu-img", "convert", "-l", param, "-O", format, img.toString(), want.toString());
                Qemu.Result g = run(Program.QEMU_IMG, "convert", "-l", param, "-O", format, img.toString(), got.toString());
                assertEquals(w, g, param);
                if (w.exit() == 0) {
                    assertEquals(0, Qemu.run(dir, "qemu-img", "compare", "-q", want.toString(), got.toString()).exit(), param);
                }
            }
        }
    }

    /**
     * A snapshot whose L1 table offset is not a cluster's (iotest 080): convert -l, amend's downgrade, snapshot -a and
     * -d fail as qemu-img's do (QEMU's qcow2_validate_table, in its words and errno), and leave the file as QEMU's.
     */
    @Test
    void invalidSnapshotL1OffsetFailsAsInQemuImg() throws IOException {
        snapshotL1FaultFailsAsInQemuImg(b -> b.putLong((int) b.getLong(64), 0x400200), "Invalid argument");
    }

    /**
     * A snapshot whose l1_size is past QEMU's limit (080's next case): the table is read as QEMU reads it, and only
     * what reads that L1 table fails, in the same words as above with EFBIG.
     */
    @Test
    void snapshotL1SizePastTheLimitFailsAsInQemuImg() throws IOException {
        snapshotL1FaultFailsAsInQemuImg(b -> b.putInt((int) b.getLong(64) + 8, 0x10000000), "File too large");
        assertTrue(run(Program.QEMU_IMG, "snapshot", "-l", dir.resolve("ours.qcow2").toString()).out().contains("test"));
    }

    private void snapshotL1FaultFailsAsInQemuImg(java.util.function.Consumer<ByteBuffer> poke, String strerror)
            throws IOException {
        Path theirs = dir.resolve("theirs.qcow2");
        Path ours = dir.resolve("ours.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", theirs.toString(), "64M");
        Qemu.io(dir, theirs.toString(), "write 0 512");
        Qemu.img(dir, "snapshot", "-c", "test", theirs.toString());
        byte[] d = Files.readAllBytes(theirs);
        poke.accept(ByteBuffer.wrap(d).order(ByteOrder.BIG_ENDIAN)); // the first entry's field
        Files.write(theirs, d);
        Files.write(ours, d);
        for (String line : List.of("convert -l test IMG IMG.snap", "amend -o compat=0.10 IMG", "snapshot -a test IMG",
                "snapshot -d test IMG")) {
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", line.replace("IMG", theirs.toString()).split(" ")));
            Qemu.Result got = run(Program.QEMU_IMG, line.replace("IMG", ours.toString()).split(" "));
            assertEquals(want.exit(), got.exit(), line);
            assertEquals(want.err().replace(theirs.toString(), "IMG"), got.err().replace(ours.toString(), "IMG"), line);
            assertEquals(null, difference(theirs, ours), line);
        }
        assertTrue(Qemu.run(dir, "qemu-img", "snapshot", "-a", "test", theirs.toString()).err()
                .contains("Could not apply snapshot 'test': Failed to load snapshot: " + strerror));
    }

    /**
     * An L2 entry naming a cluster no refcount block counts (080's huge physical offsets): snapshot -c fails as QEMU's
     * update_refcount makes it fail, with EFBIG where the refcount table cannot grow that far and EAGAIN where QEMU
     * adds the missing refcount block first, and the file is byte for byte what qemu-img leaves (that block included).
     */
    @Test
    void snapshotOfAnUncountedClusterFailsAsInQemuImg() throws IOException {
        for (long entry : new long[] {0xbfffffffffff0000L, 0x800000ffffff0000L}) {
            Path theirs = dir.resolve("huge-theirs.qcow2");
            Path ours = dir.resolve("huge-ours.qcow2");
            Files.deleteIfExists(theirs);
            Files.deleteIfExists(ours);
            Qemu.img(dir, "create", "-q", "-f", "qcow2", theirs.toString(), "64M");
            Qemu.io(dir, theirs.toString(), "write 0 512");
            byte[] d = Files.readAllBytes(theirs);
            ByteBuffer b = ByteBuffer.wrap(d).order(ByteOrder.BIG_ENDIAN);
            long l2 = b.getLong((int) b.getLong(40)) & 0x00fffffffffffe00L;
            b.putLong((int) l2, entry);
            Files.write(theirs, d);
            Files.write(ours, d);
            Qemu.Result want = Qemu.run(dir, "qemu-img", "snapshot", "-c", "test", theirs.toString());
            Qemu.Result got = run(Program.QEMU_IMG, "snapshot", "-c", "test", ours.toString());
            assertEquals(1, want.exit());
            assertEquals(want.exit(), got.exit());
            assertEquals(want.err().replace(theirs.toString(), "IMG"), got.err().replace(ours.toString(), "IMG"));
            assertTrue(got.err().contains(entry < 0xbfffffffffff0000L ? "-11 (Resource temporarily unavailable)"
                    : "-27 (File too large)"), got.err());
            assertEquals(null, difference(theirs, ours), Long.toHexString(entry));
        }
    }

    /** The first difference of two images once the snapshot table's dates are masked, or null. */
    static String difference(Path a, Path b) throws IOException {
        byte[] x = masked(a);
        byte[] y = masked(b);
        for (int i = 0; i < Math.min(x.length, y.length); i++) {
            if (x[i] != y[i]) {
                return "first difference at " + i + " (lengths " + x.length + " and " + y.length + ")";
            }
        }
        return x.length == y.length ? null : "lengths " + x.length + " and " + y.length;
    }

    /** The file with each snapshot table entry's date_sec and date_nsec zeroed. */
    static byte[] masked(Path p) throws IOException {
        byte[] d = Files.readAllBytes(p);
        ByteBuffer b = ByteBuffer.wrap(d).order(ByteOrder.BIG_ENDIAN);
        int nb = b.getInt(60);
        long pos = b.getLong(64);
        for (int i = 0; i < nb; i++) {
            pos = (pos + 7) & ~7L;
            int at = (int) pos;
            int ids = b.getShort(at + 12) & 0xffff;
            int names = b.getShort(at + 14) & 0xffff;
            int extra = b.getInt(at + 36);
            b.putLong(at + 16, 0);
            pos += 40 + extra + ids + names;
        }
        return d;
    }

    static Qemu.Result run(Program program, String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code;
        try (PrintStream o = new PrintStream(out, true, StandardCharsets.UTF_8);
             PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8)) {
            code = Main.run(program, args, o, e);
        }
        return new Qemu.Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }
}
