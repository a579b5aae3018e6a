package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.DirtyBitmaps;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.WritableImage;

/**
 * Persistent dirty bitmaps against QEMU 7.2 on twin images: {@code bitmap} against {@code qemu-img bitmap} and
 * writes through our {@code io} against {@code qemu-io}'s, step by step, leave byte-identical files (QEMU's allocation
 * of bitmap clusters, directory and header, in-use flags set on open and cleared on close), the same exit codes and
 * messages, the same {@code qemu-img info} JSON, and the dirty maps {@code qemu-nbd -B} serves are the same.
 */
class BitmapCommandTest {
    @TempDir
    Path dir;

    /** Image kinds: qemu-img create options and size. */
    static final List<String[]> KINDS = List.of(new String[] {"compat=1.1", "16M"}, new String[] {"cluster_size=512", "8M"},
            new String[] {"extended_l2=on,lazy_refcounts=on", "16M"}, new String[] {"cluster_size=4096,refcount_bits=1", "16M"},
            new String[] {"compat=0.10", "16M"});

    /** Steps: "io:CMD" for a qemu-io command run on both, else qemu-img bitmap's options and the bitmap's name. */
    static final List<String> STEPS = List.of("--add b0", "--add -g 4k --disable b1", "io:write -P 1 0 64k",
            "io:write -P 2 1M 130k", "--enable b1", "io:info", "io:write -z 3M 64k", "io:discard 4M 1M", "--add b0",
            "--add -g 512 b2", "io:write -P 3 5000 1", "--merge b0 b1", "--clear b0", "io:write -P 4 6M 4k",
            "--disable b0", "--remove nope", "--merge nope b2", "--add -g 1000 x", "--remove b2",
            "--add --disable --clear --enable b3", "io:write -P 5 7M 8k", "--enable --add b0", "--add --merge b1 b4");

    @TestFactory
    Stream<DynamicTest> stepsLeaveQemuImgsFile() {
        return KINDS.stream().map(k -> DynamicTest.dynamicTest(k[0], () -> {
            Path theirs = dir.resolve(k[0].replace(',', '_') + "-theirs.qcow2");
            Path ours = dir.resolve(k[0].replace(',', '_') + "-ours.qcow2");
            Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", k[0], theirs.toString(), k[1]);
            Files.copy(theirs, ours);
            for (String step : STEPS) {
                if (step.startsWith("io:")) {
                    String c = step.substring(3);
                    Qemu.Result want = Qemu.run(dir, "qemu-io", "-c", c, theirs.toString());
                    Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IO, "-c", c, ours.toString());
                    assertEquals(want.exit(), got.exit(), step);
                    if (c.equals("info")) { // qemu-io's info reads the directory as it is on disk: flagged in use
                        assertEquals(want.out(), got.out(), step);
                    }
                } else {
                    List<String> args = new ArrayList<>(Arrays.asList(step.split(" ")));
                    args.add(args.size() - 1, "IMG");
                    Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", Qemu.concat("bitmap", with(args, theirs))));
                    Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, Qemu.concat("bitmap", with(args, ours)));
                    assertEquals(want.exit(), got.exit(), step + ": " + got);
                    assertEquals(masked(want.err(), theirs), masked(got.err(), ours), step);
                    assertEquals(want.out(), got.out(), step);
                }
                assertEquals(-1L, Files.mismatch(theirs, ours), k[0] + " after " + step);
            }
            assertEquals(info(theirs), info(ours));
            assertEquals(0, Qemu.run(dir, "qemu-img", "check", ours.toString()).exit());
            for (String b : List.of("b0", "b1", "b3", "b4")) {
                String map = dirtyMap(dir, ours, b);
                assertEquals(dirtyMap(dir, theirs, b), map, k[0] + " bitmap " + b);
                assertEquals(!k[0].equals("compat=0.10"), map.contains("dirty"), k[0] + " bitmap " + b + ": " + map);
            }
        }));
    }

    private static String[] with(List<String> args, Path image) {
        return args.stream().map(a -> a.equals("IMG") ? image.toString() : a).toArray(String[]::new);
    }

    /** A message with the image's name and QEMU's node names (which count up from run to run) masked. */
    private static String masked(String err, Path image) {
        return err.replace(image.toString(), "IMG").replaceAll("#block\\d+", "IMG").replaceFirst("^qcow4j: ", "qemu-img: ");
    }

    /** {@code qemu-img info --output=json} without what differs between twins (names; holes QEMU punches). */
    private String info(Path image) {
        return Qemu.img(dir, "info", "--output=json", image.toString()).out().replaceAll(".*\"(filename|actual-size)\".*\n", "");
    }

    /** The dirty map {@code qemu-nbd -B NAME} serves, as {@code nbdinfo --map} prints it ("" when no such bitmap). */
    static String dirtyMap(Path dir, Path image, String bitmap) {
        Qemu.Result r = Qemu.run(dir, "nbdinfo", "--map=qemu:dirty-bitmap:" + bitmap, "--", "[", "qemu-nbd", "-r", "-B",
                bitmap, "-f", "qcow2", image.toString(), "]");
        return r.exit() == 0 ? r.out() : "";
    }

    /**
     * Writes through the library into an image with an enabled bitmap (random writes, zero writes and discards, from
     * several threads): the dirty map qemu-nbd serves is exactly the granules written, the same bitmap disabled meanwhile
     * records nothing, and qemu-img check finds the image clean.
     */
    @Test
    void libraryWritesAreTheGranulesQemuNbdServes() throws IOException, InterruptedException {
        Path img = dir.resolve("lib.qcow2");
        long size = 32 << 20;
        Qemu.img(dir, "create", "-q", "-f", "qcow2", img.toString(), Long.toString(size));
        Images.addBitmap(img, OpenOptions.defaults(), "track", 8192, false);
        Images.addBitmap(img, OpenOptions.defaults(), "off", 0, true);
        TreeSet<Long> granules = new TreeSet<>();
        Random random = new Random(42);
        List<long[]> requests = new ArrayList<>();
        for (int i = 0; i < 60; i++) {
            long offset = random.nextInt((int) size - 300_000);
            requests.add(new long[] {offset, 1 + random.nextInt(200_000), random.nextInt(3)});
        }
        try (WritableImage disk = Images.openWritable(img)) {
            DirtyBitmaps bitmaps = disk.dirtyBitmaps().orElseThrow();
            assertEquals(List.of("track", "off"), bitmaps.list().stream().map(b -> b.name()).toList());
            Thread[] threads = new Thread[3];
            for (int t = 0; t < threads.length; t++) {
                int first = t;
                threads[t] = new Thread(() -> {
                    try {
                        for (int i = first; i < requests.size(); i += threads.length) {
                            long[] r = requests.get(i);
                            switch ((int) r[2]) {
                                case 0 -> disk.write(ByteBuffer.allocate((int) r[1]).put(0, (byte) 1), r[0]);
                                case 1 -> disk.writeZeroes(r[0], r[1], true);
                                default -> disk.discard(r[0], r[1]);
                            }
                        }
                    } catch (IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                });
                threads[t].start();
            }
            for (Thread t : threads) {
                t.join(60_000);
            }
            // on disk meanwhile: both flagged in use, so a crash would leave them inconsistent
            String during = Qemu.run(dir, "qemu-img", "info", "-U", img.toString()).out();
            assertEquals(2, during.split("in-use", -1).length - 1, during);
        }
        for (long[] r : requests) {
            for (long g = r[0] / 8192; g <= (r[0] + r[1] - 1) / 8192; g++) {
                granules.add(g);
            }
        }
        StringBuilder want = new StringBuilder();
        long pos = 0;
        for (Long g = granules.isEmpty() ? null : granules.first(); g != null; ) {
            long start = g;
            long end = g + 1;
            while (granules.contains(end)) {
                end++;
            }
            if (start * 8192 > pos) {
                want.append(String.format("%10d  %10d    0  clean%n", pos, start * 8192 - pos));
            }
            want.append(String.format("%10d  %10d    1  dirty%n", start * 8192, Math.min(size, end * 8192) - start * 8192));
            pos = Math.min(size, end * 8192);
            g = granules.higher(end);
        }
        if (pos < size) {
            want.append(String.format("%10d  %10d    0  clean%n", pos, size - pos));
        }
        assertEquals(want.toString(), dirtyMap(dir, img, "track"));
        assertEquals(String.format("%10d  %10d    0  clean%n", 0, size), dirtyMap(dir, img, "off"));
        assertEquals(0, Qemu.run(dir, "qemu-img", "check", img.toString()).exit());
        assertFalse(Qemu.img(dir, "info", img.toString()).out().contains("in-use"));
    }

    /** Refusals, option errors and inconsistent bitmaps: qemu-img's exit codes and messages, the same files after. */
    @Test
    void refusalsAreQemuImgs() throws IOException {
        Path theirs = dir.resolve("t.qcow2");
        Path ours = dir.resolve("o.qcow2");
        Path other = dir.resolve("other.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", theirs.toString(), "4M");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", other.toString(), "8M");
        Qemu.img(dir, "bitmap", "--add", other.toString(), "o1");
        Qemu.img(dir, "bitmap", "--add", theirs.toString(), "ok");
        Qemu.img(dir, "bitmap", "--add", theirs.toString(), "broken");
        // a crash while the image is open leaves its bitmaps in use: inconsistent
        Qemu.run(dir, "qemu-io", "-c", "write 0 4k", "-c", "abort", theirs.toString());
        Qemu.img(dir, "bitmap", "--add", theirs.toString(), "ok2");
        Files.copy(theirs, ours);
        for (String line : List.of("IMG b", "--add IMG", "-g 64k --clear IMG ok2", "-F qcow2 --add IMG x",
                "-b OTHER --add IMG x", "--add -g 1k IMG", "--enable IMG broken", "--disable IMG broken",
                "--clear IMG broken", "--merge broken IMG ok2", "--merge ok2 IMG broken", "--merge o1 -b OTHER IMG ok2",
                "--merge o2 -b OTHER IMG ok2", "--merge ok -b DIR/missing.qcow2 IMG ok2", "--add -g 2G IMG big",
                "--add -g 5G IMG big2", "--add -g 0x IMG x", "--remove IMG broken", "--add IMG broken", "--bogus IMG x",
                "--merge", "--add DIR/missing.qcow2 x")) {
            List<String> args = new ArrayList<>(Arrays.asList(line.replace("OTHER", other.toString())
                    .replace("DIR", dir.toString()).split(" ")));
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", Qemu.concat("bitmap", with(args, theirs))));
            Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, Qemu.concat("bitmap", with(args, ours)));
            assertEquals(want.exit(), got.exit(), line + ": " + got);
            assertEquals(masked(want.err(), theirs), masked(got.err(), ours), line);
            assertEquals(-1L, Files.mismatch(theirs, ours), line);
        }
        assertEquals(info(theirs), info(ours));
        // an inconsistent bitmap stops a resize (QEMU's qcow2_truncate_bitmaps_check), the first in the directory named
        Path t2 = dir.resolve("t2.qcow2");
        Path o2 = dir.resolve("o2.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", t2.toString(), "4M");
        Qemu.img(dir, "bitmap", "--add", t2.toString(), "first");
        Qemu.img(dir, "bitmap", "--add", t2.toString(), "second");
        Qemu.run(dir, "qemu-io", "-c", "write 0 4k", "-c", "abort", t2.toString());
        Files.copy(t2, o2);
        Qemu.Result want = Qemu.run(dir, "qemu-io", "-c", "truncate 8M", t2.toString());
        Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IO, "-c", "truncate 8M", o2.toString());
        assertEquals(want.exit(), got.exit(), got.toString());
        assertTrue(want.err().contains("Bitmap 'first' is inconsistent"), want.err());
        assertEquals(want.err(), got.err());
        assertEquals(-1L, Files.mismatch(t2, o2));
        // version 2 images cannot store bitmaps
        Path v2 = dir.resolve("v2.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", v2.toString(), "1M");
        Qemu.Result v2Add = SnapshotCommandTest.run(Program.QEMU_IMG, "bitmap", "--add", v2.toString(), "b");
        assertEquals(1, v2Add.exit());
        assertTrue(v2Add.err().endsWith("Cannot store dirty bitmaps in qcow2 v2 files\n"), v2Add.err());
    }

    /**
     * A bitmap over 2 TiB at 512-byte granularity (512 MiB of bits, QEMU's own limit: iotest 190) is added as by
     * qemu-img, file for file, and measured as by it; memory follows set bits only. A stored table whose entries all
     * say "all ones" would make loading it allocate all of them: refused in one line, nothing written.
     */
    @Test
    void hugeBitmapsAsQemuImgAndHostileTablesRefused() throws IOException {
        Path theirs = dir.resolve("huge-t.qcow2");
        Path ours = dir.resolve("huge-o.qcow2");
        for (Path p : List.of(theirs, ours)) {
            Qemu.img(dir, "create", "-q", "-f", "qcow2", p.toString(), "2T");
        }
        for (String[] add : List.of(new String[] {"--add", "--granularity", "512"}, new String[] {"--add", "-g", "2M"})) {
            String name = add[1].equals("--granularity") ? "b1" : "b2";
            List<String> args = new ArrayList<>(List.of("bitmap"));
            args.addAll(Arrays.asList(add));
            Qemu.img(dir, append(append(args.toArray(new String[0]), theirs.toString()), name));
            Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG,
                    append(append(args.toArray(new String[0]), ours.toString()), name));
            assertEquals(0, got.exit(), got.toString());
        }
        assertEquals(-1L, Files.mismatch(theirs, ours));
        for (String size : List.of("64k", "2M")) {
            String[] measure = {"measure", "-O", "qcow2", "-o", "cluster_size=" + size, "-f", "qcow2", ours.toString()};
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", measure));
            Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, measure);
            assertEquals(want.out(), got.out(), size);
            assertTrue(want.out().contains("bitmaps size: "), want.out());
        }
        // b1's table: every entry set to 1 ("all ones", no data cluster), 8,192 entries for 512 MiB of bits
        ByteBuffer file = ByteBuffer.wrap(Files.readAllBytes(ours));
        long table = bitmapTableOffset(file, "b1");
        for (int i = 0; i < 8192; i++) {
            file.putLong((int) table + 8 * i, 1L);
        }
        Files.write(ours, file.array());
        byte[] before = Files.readAllBytes(ours);
        Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, "bitmap", "--add", ours.toString(), "b3");
        assertEquals(1, got.exit(), got.toString());
        assertEquals("qemu-img: " + ours + ": bitmap 'b1' of granularity 512 has 536870912 bytes of set bits stored,"
                + " more than qcow4j loads (134217728)\n", got.err());
        assertTrue(Arrays.equals(before, Files.readAllBytes(ours)));
    }

    /** The bitmap table offset of the bitmap named {@code name}, found through the header's bitmaps extension. */
    private static long bitmapTableOffset(ByteBuffer file, String name) {
        int at = file.getInt(100); // header_length: the extensions follow the header
        while (file.getInt(at) != 0) {
            int type = file.getInt(at);
            int length = file.getInt(at + 4);
            if (type == 0x23852875) {
                long dir = file.getLong(at + 8 + 16);
                int nb = file.getInt(at + 8);
                long e = dir;
                for (int i = 0; i < nb; i++) {
                    int nameSize = file.getShort((int) e + 18) & 0xffff;
                    int extra = file.getInt((int) e + 20);
                    String n = new String(file.array(), (int) e + 24 + extra, nameSize,
                            java.nio.charset.StandardCharsets.UTF_8);
                    if (n.equals(name)) {
                        return file.getLong((int) e);
                    }
                    e += (24 + extra + nameSize + 7) & ~7;
                }
            }
            at += 8 + ((length + 7) & ~7);
        }
        throw new AssertionError("no bitmap " + name);
    }

    /** {@code convert --bitmaps} as qemu-img's: the bitmaps' info and dirty maps, its refusals and warnings. */
    @Test
    void convertCopiesBitmapsAsQemuImg() throws IOException {
        Path src = dir.resolve("src.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", src.toString(), "4M");
        Qemu.img(dir, "bitmap", "--add", src.toString(), "a");
        Qemu.img(dir, "bitmap", "--add", "-g", "4k", "--disable", src.toString(), "b");
        Qemu.io(dir, src.toString(), "write 0 64k", "write 1M 4k");
        Qemu.img(dir, "bitmap", "--add", src.toString(), "c");
        Qemu.img(dir, "bitmap", "--enable", src.toString(), "b");
        Qemu.io(dir, src.toString(), "write 2M 8k");
        Path broken = dir.resolve("broken.qcow2");
        Files.copy(src, broken);
        Qemu.run(dir, "qemu-io", "-c", "write 0 4k", "-c", "abort", broken.toString());
        for (String line : List.of("--bitmaps -O qcow2 SRC", "--bitmaps -O raw SRC", "--bitmaps -O qcow2 -o compat=0.10 SRC",
                "--skip-broken-bitmaps -O qcow2 SRC", "--bitmaps -O qcow2 SRC SRC", "--bitmaps -O qcow2 BROKEN",
                "--bitmaps --skip-broken-bitmaps -O qcow2 BROKEN")) {
            Path want = dir.resolve("want.img");
            Path got = dir.resolve("got.img");
            Files.deleteIfExists(want);
            Files.deleteIfExists(got);
            String[] args = line.replace("SRC", src.toString()).replace("BROKEN", broken.toString()).split(" ");
            Qemu.Result w = Qemu.run(dir, Qemu.concat("qemu-img", Qemu.concat("convert", append(args, want.toString()))));
            Qemu.Result g = SnapshotCommandTest.run(Program.QEMU_IMG, Qemu.concat("convert", append(args, got.toString())));
            assertEquals(w.exit(), g.exit(), line + ": " + g);
            assertEquals(w.err().replace(want.toString(), "OUT"), g.err().replace(got.toString(), "OUT"), line);
            assertEquals(Files.exists(want), Files.exists(got), line);
            if (w.exit() == 0) {
                assertEquals(info(want), info(got), line);
                assertEquals(0, Qemu.run(dir, "qemu-img", "check", got.toString()).exit(), line);
                for (String b : List.of("a", "b", "c")) {
                    assertEquals(dirtyMap(dir, want, b), dirtyMap(dir, got, b), line + " bitmap " + b);
                }
            }
        }
    }

    private static String[] append(String[] args, String last) {
        String[] all = Arrays.copyOf(args, args.length + 1);
        all[args.length] = last;
        return all;
    }
}
