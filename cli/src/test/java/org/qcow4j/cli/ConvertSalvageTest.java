package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * convert's remaining options against qemu-img 7.2 on the same inputs (qcow4j run as the qemu-img drop-in, in
 * process): {@code --salvage} over sectors whose data (a compressed cluster that does not decompress) or block status
 * (an L2 entry QEMU calls corrupt) cannot be read; {@code -C} (copy offloading), {@code -W} and {@code -r}; and the
 * refusals of combinations qemu-img refuses. The same stdout, stderr and exit code, and the same output file. Also
 * {@code compare} of the same damaged images, which qemu-img fails with exit 3 (block status) or 4 (data).
 */
class ConvertSalvageTest {
    @TempDir
    Path dir;

    private String path(String name) {
        return dir.resolve(name).toString();
    }

    private static Qemu.Result dropIn(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code;
        try (PrintStream o = new PrintStream(out, true, StandardCharsets.UTF_8);
             PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8)) {
            code = Main.run(Program.QEMU_IMG, args, o, e);
        }
        return new Qemu.Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    /**
     * Runs {@code convert ARGS... want|got} with both tools; the results must agree, and so must the outputs (byte for
     * byte, or with {@code -W} by content).
     */
    private Qemu.Result both(List<String> args, boolean sortedErr) throws IOException {
        Files.deleteIfExists(dir.resolve("want"));
        Files.deleteIfExists(dir.resolve("got"));
        List<String> w = new ArrayList<>(args);
        w.add(path("want"));
        List<String> g = new ArrayList<>(args);
        g.add(path("got"));
        Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", w.toArray(String[]::new)));
        Qemu.Result got = dropIn(g.toArray(String[]::new));
        String what = String.join(" ", args);
        assertEquals(want.exit(), got.exit(), what + "\n" + got.err());
        assertEquals(want.out(), got.out(), what);
        if (sortedErr) {
            // several inputs: qemu-img's coroutines print the warnings of different inputs interleaved
            assertEquals(want.err().lines().sorted().toList(), got.err().lines().sorted().toList(), what);
        } else {
            assertEquals(want.err(), got.err(), what);
        }
        if (Files.exists(dir.resolve("want"))) {
            if (args.contains("-W")) {
                // out of order: where qemu-img's clusters land depends on which write finishes first
                Qemu.img(dir, "compare", path("want"), path("got"));
            } else {
                assertEquals(-1L, Files.mismatch(dir.resolve("want"), dir.resolve("got")), what + ": the output file");
            }
        }
        return want;
    }

    private static long u64(FileChannel ch, long pos) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(8);
        ch.read(b, pos);
        return b.flip().getLong();
    }

    /** The offset of L2 entry {@code index} of the first L2 table. */
    private static long l2Entry(FileChannel ch, int index) throws IOException {
        long l1 = u64(ch, 40);
        return (u64(ch, l1) & 0x00fffffffffffe00L) + 8L * index;
    }

    /**
     * 4 KiB clusters: data, a compressed cluster at 16k whose stream is overwritten (reads fail: 8 sectors), data; and
     * a second image whose L2 entry 1 is unaligned (block status and reads fail at 4k-8k).
     */
    private void damagedImages() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", path("c.qcow2"), "64k");
        Qemu.io(dir, path("c.qcow2"), "write -P 7 0 16k", "write -c -P 5 16k 4k", "write -P 8 20k 4k");
        try (FileChannel ch = FileChannel.open(dir.resolve("c.qcow2"), StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            long stream = u64(ch, l2Entry(ch, 4)) & ((1L << 58) - 1);
            ch.write(ByteBuffer.wrap(new byte[] {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1}), stream);
        }
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", path("u.qcow2"), "16k");
        Qemu.io(dir, path("u.qcow2"), "write -P 7 0 16k");
        try (FileChannel ch = FileChannel.open(dir.resolve("u.qcow2"), StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            long at = l2Entry(ch, 1);
            ch.write(ByteBuffer.allocate(8).putLong(0, u64(ch, at) + 0x200), at);
        }
    }

    @Test
    void salvageReadsUnreadableSectorsAsZerosWithQemuImgsWarnings() throws IOException {
        damagedImages();
        for (String image : List.of("c.qcow2", "u.qcow2")) {
            for (List<String> opts : List.of(List.of("-O", "raw"), List.of("-O", "qcow2"), List.of("-O", "raw", "-q"),
                    List.of("-O", "qcow2", "-m", "1"), List.of("-O", "raw", "-p"))) {
                List<String> args = Qemu.list("convert", "--salvage");
                args.addAll(opts);
                args.add(path(image));
                Qemu.Result r = both(args, false);
                assertEquals(0, r.exit());
                assertTrue(opts.contains("-q") || r.err().contains("warning: error while reading offset"), r.err());
            }
        }
        // Several inputs: offsets within each input; -n into an existing image (qemu-img's very file).
        both(Qemu.list("convert", "--salvage", "-O", "raw", path("c.qcow2"), path("u.qcow2"), path("c.qcow2")), true);
        for (String t : List.of("want", "got")) {
            Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", path(t + ".n"), "64k");
            Qemu.io(dir, path(t + ".n"), "write -P 9 0 64k");
        }
        Qemu.Result want = Qemu.run(dir, "qemu-img", "convert", "--salvage", "-n", "-O", "qcow2", path("c.qcow2"),
                path("want.n"));
        Qemu.Result got = dropIn("convert", "--salvage", "-n", "-O", "qcow2", path("c.qcow2"), path("got.n"));
        assertEquals(want, got);
        assertEquals(-1L, Files.mismatch(dir.resolve("want.n"), dir.resolve("got.n")));
        // Without --salvage both fail (in their own words).
        assertEquals(1, dropIn("convert", "-O", "raw", path("c.qcow2"), path("x")).exit());
    }

    /**
     * iotest 251's case, small: blkdebug above the image fails the block status of two sectors and the reads of others
     * (one shared, a run of four); --salvage reads them as zeros with qemu-img's warnings in its order.
     */
    @Test
    void salvageOverBlkdebugErrorInjectionAsQemuImg() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("orig.qcow2"), "4M");
        Qemu.io(dir, path("orig.qcow2"), "write -P 42 0 4M");
        StringBuilder rules = new StringBuilder();
        for (long sector : new long[] {2064, 4097}) {
            rules.append("{'event': 'none', 'iotype': 'block-status', 'errno': 5, 'sector': ").append(sector).append("},");
        }
        for (long sector : new long[] {3968, 4097, 6144, 6145, 6146, 6147}) {
            rules.append("{'event': 'none', 'iotype': 'read', 'errno': 5, 'sector': ").append(sector).append("},");
        }
        String source = "json:{'driver': 'blkdebug', 'image': {'driver': 'qcow2', 'file': {'driver': 'file', "
                + "'filename': '" + path("orig.qcow2") + "'}}, 'inject-error': [" + rules.substring(0, rules.length() - 1)
                + "]}";
        Qemu.Result r = both(Qemu.list("convert", "--salvage", source), false);
        assertEquals(0, r.exit());
        assertEquals(2 + 8, r.err().lines().count(), r.err());
        // Not the rules QEMU applies only after an event: refused by name.
        Qemu.Result refused = dropIn("convert", source.replace("'event': 'none', 'iotype': 'read'",
                "'event': 'l1_update', 'iotype': 'read'"), path("x"));
        assertEquals(1, refused.exit());
        assertTrue(refused.err().contains("blkdebug's event 'l1_update' is not supported by qcow4j"), refused.err());
    }

    /** iotest 074's case: compare through blkdebug:CONFIG:FILE whose config fails every data cluster read. */
    @Test
    void compareOverBlkdebugConfigFileAsQemuImg() throws IOException {
        Files.writeString(dir.resolve("blkdebug.conf"), "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nonce =\"off\"\n");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("t.qcow2"), "1G");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("t2.qcow2"), "1G");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("empty.qcow2"), "0");
        Qemu.io(dir, path("t.qcow2"), "write -P 102 512 512");
        String source = "blkdebug:" + path("blkdebug.conf") + ":" + path("t.qcow2");
        for (String other : List.of("t2.qcow2", "empty.qcow2")) {
            Qemu.Result want = Qemu.run(dir, "qemu-img", "compare", source, path(other));
            assertEquals(4, want.exit(), want.toString());
            assertEquals(want, dropIn("compare", source, path(other)), other);
        }
        Files.writeString(dir.resolve("other.conf"), "[inject-error]\nevent = \"l2_load\"\n");
        Qemu.Result refused = dropIn("compare", "blkdebug:" + path("other.conf") + ":" + path("t.qcow2"), path("t2.qcow2"));
        assertEquals(2, refused.exit());
        assertTrue(refused.err().contains("blkdebug's event 'l2_load' is not supported by qcow4j"), refused.err());
    }

    @Test
    void compareFailsOnUnreadableImagesAsQemuImg() throws IOException {
        damagedImages();
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", path("ok.qcow2"), "64k");
        Qemu.io(dir, path("ok.qcow2"), "write -P 7 0 64k");
        for (List<String> pair : List.of(List.of("u.qcow2", "ok.qcow2"), List.of("ok.qcow2", "u.qcow2"),
                List.of("c.qcow2", "ok.qcow2"), List.of("-p", "ok.qcow2", "c.qcow2"))) {
            String[] args = pair.stream().map(a -> a.startsWith("-") ? a : path(a)).toArray(String[]::new);
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", Qemu.concat("compare", args)));
            assertTrue(want.exit() == 3 || want.exit() == 4, want.toString());
            assertEquals(want, dropIn(Qemu.concat("compare", args)), String.join(" ", pair));
        }
    }

    @Test
    void copyOffloadingOutOfOrderAndRateLimitWriteQemuImgsFiles() throws IOException {
        // data with a zero run inside (copied whole with -C), a zero write, a compressed cluster late in the image
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("s.qcow2"), "6M");
        Qemu.io(dir, path("s.qcow2"), "write -P 7 0 1M", "write -P 0 1M 1M", "write -z 2M 64k", "write -P 3 3M 100k");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", path("s.qcow2"), "-F", "qcow2", path("t.qcow2"));
        Qemu.io(dir, path("t.qcow2"), "write -P 0 4M 128k");
        for (String image : List.of("s.qcow2", "t.qcow2")) {
            for (String format : List.of("raw", "qcow2")) {
                for (List<String> opts : List.of(List.of("-C"), List.of("-C", "-W", "-m", "2"), List.of("-W"),
                        List.of("-r", "1G"), List.of("-C", "-r", "0"))) {
                    List<String> args = Qemu.list("convert", "-O", format);
                    args.addAll(opts);
                    args.add(path(image));
                    assertEquals(0, both(args, false).exit());
                }
            }
        }
        // -n -C into an existing image
        for (String t : List.of("want", "got")) {
            Qemu.img(dir, "create", "-q", "-f", "qcow2", path(t + ".n"), "6M");
        }
        Qemu.Result want = Qemu.run(dir, "qemu-img", "convert", "-C", "-n", "-O", "qcow2", path("t.qcow2"), path("want.n"));
        Qemu.Result got = dropIn("convert", "-C", "-n", "-O", "qcow2", path("t.qcow2"), path("got.n"));
        assertEquals(want, got);
        assertEquals(-1L, Files.mismatch(dir.resolve("want.n"), dir.resolve("got.n")));
        // A compressed source: QEMU cannot offload it and falls back; the data is the same.
        Qemu.img(dir, "convert", "-c", "-O", "qcow2", path("s.qcow2"), path("z.qcow2"));
        assertEquals(0, dropIn("convert", "-C", "-O", "qcow2", path("z.qcow2"), path("zc.qcow2")).exit());
        Qemu.img(dir, "compare", path("s.qcow2"), path("zc.qcow2"));
        Qemu.img(dir, "check", path("zc.qcow2"));
    }

    @Test
    void rateLimitHoldsTheWritesBack() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("d.qcow2"), "3M");
        Qemu.io(dir, path("d.qcow2"), "write -P 3 0 3M");
        long start = System.nanoTime();
        assertEquals(0, dropIn("convert", "-r", "2M", "-O", "qcow2", path("d.qcow2"), path("o.qcow2")).exit());
        long ms = (System.nanoTime() - start) / 1_000_000;
        // 1 MiB goes at once; each later MiB waits for all but a tenth of a second's worth to drain: about 0.8 s
        assertTrue(ms >= 700, ms + " ms");
        Qemu.img(dir, "compare", path("d.qcow2"), path("o.qcow2"));
    }

    @Test
    void refusesAsQemuImgRefuses() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("s.qcow2"), "1M");
        String[][] cases = {
            {"-C", "-c", "-O", "qcow2"}, {"-C", "-S", "4k"}, {"-C", "-S", "0"}, {"-C", "--salvage"},
            {"-c", "-C", "-S", "0", "--salvage"}, {"-r", "1x"}, {"-r", "-1"}, {"-r", "99999999999999999999"},
            {"-r"}, {"-C", "-n", "-o", "cluster_size=4k"},
        };
        for (String[] c : cases) {
            List<String> args = Qemu.list("convert");
            args.addAll(List.of(c));
            args.add(path("s.qcow2"));
            assertEquals(1, both(args, false).exit(), String.join(" ", c));
        }
        assertTrue(Files.notExists(dir.resolve("got")));
    }
}
