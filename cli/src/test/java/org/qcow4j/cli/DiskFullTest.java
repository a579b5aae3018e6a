package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.Images;

/**
 * A really full file system: a 4 MiB tmpfs mounted for each test. {@code io} writing past the space, {@code convert}
 * to an output larger than it, {@code check -r all} needing space for a new refcount structure, and {@code e2image
 * -Q} of metadata that does not fit each end with one line naming the file and exit 1; no output appears under its
 * name and no temporary file is left; the images left pass {@code qemu-img check} without corruption and open again.
 * Mounting needs root (CI and ./test.sh run as root); other users skip these tests, root failing to mount fails them.
 */
class DiskFullTest {
    private static final String NOSPC = "No space left on device";

    @TempDir
    Path outside;
    private Path full;
    private boolean mounted;

    @BeforeEach
    void mount() throws IOException {
        assumeTrue("root".equals(System.getProperty("user.name")), "mounting a tmpfs needs root");
        full = Files.createTempDirectory("qcow4j-full");
        Qemu.Result r = Qemu.run(outside, "mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", full.toString());
        if (r.exit() != 0) {
            fail("cannot mount a 4 MiB tmpfs on " + full + " (root is needed and enough): " + r.err());
        }
        mounted = true;
    }

    @AfterEach
    void unmount() throws IOException {
        if (mounted) {
            Qemu.Result r = Qemu.run(outside, "umount", full.toString());
            assertEquals(0, r.exit(), "umount " + full + ": " + r.err());
        }
        if (full != null) {
            Files.deleteIfExists(full);
        }
    }

    @Test
    void ioWritingPastTheSpaceFailsAndKeepsWhatWasFlushed() throws Exception {
        Path img = full.resolve("disk.qcow2");
        Qemu.img(full, "create", "-q", "-f", "qcow2", img.toString(), "64M");
        Qemu.Result r = Qemu.qcow4j("io", "-c", "write -P 7 0 1M", "-c", "flush", "-c", "write -P 8 1M 8M",
                img.toString());
        assertEquals(1, r.exit(), r.out() + r.err());
        assertTrue(r.out().contains("write failed: " + NOSPC), r.out());
        oneLineNaming(r, img);
        leftConsistent(img);
        byte[] first = new byte[1 << 20];
        try (var disk = Images.open(img)) {
            disk.read(ByteBuffer.wrap(first), 0);
        }
        byte[] expected = new byte[1 << 20];
        Arrays.fill(expected, (byte) 7);
        assertTrue(Arrays.equals(expected, first), "the flushed first MiB reads back");
    }

    @Test
    void convertToAnOutputLargerThanTheSpaceLeavesNothing() throws Exception {
        Path src = outside.resolve("src.raw");
        byte[] data = new byte[8 << 20];
        new Random(1).nextBytes(data); // incompressible: 8 MiB whatever the format
        Files.write(src, data);
        for (List<String> format : List.of(List.of("-O", "qcow2"), List.of("-O", "raw"), List.of("-c", "-O", "qcow2"))) {
            Path out = full.resolve("out.img");
            String[] args = Stream.concat(Stream.concat(Stream.of("convert"), format.stream()),
                    Stream.of(src.toString(), out.toString())).toArray(String[]::new);
            Qemu.Result r = Qemu.qcow4j(args);
            assertEquals(1, r.exit(), format + ": " + r.out() + r.err());
            oneLineNaming(r, out);
            try (Stream<Path> left = Files.list(full)) {
                assertEquals(List.of(), left.toList(), format + ": nothing left behind");
            }
        }
    }

    /**
     * An output that is the command's own input is kept until the new one is complete (an output no one uses is
     * removed when writing starts): a conversion failing on a full disk leaves the input as it was.
     */
    @Test
    void convertOverItsOwnInputFailingKeepsTheInput() throws Exception {
        Path in = full.resolve("in.raw");
        byte[] data = new byte[3 << 20];
        new Random(2).nextBytes(data);
        Files.write(in, data);
        Qemu.Result r = Qemu.qcow4j("convert", "-f", "raw", "-O", "raw", in.toString(), in.toString());
        assertEquals(1, r.exit(), r.out() + r.err());
        oneLineNaming(r, in);
        assertArrayEquals(data, Files.readAllBytes(in), "the input, untouched");
        try (Stream<Path> left = Files.list(full)) {
            assertEquals(List.of(in), left.toList(), "nothing else left behind");
        }
    }

    @Test
    void checkRepairNeedingSpaceFailsAndLosesNothing() throws Exception {
        // The first refcount table entry zeroed: qemu-img check -r all rebuilds the refcount structure, which needs
        // new clusters at the end of the file.
        Path img = full.resolve("disk.qcow2");
        Qemu.img(full, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", img.toString(), "64M");
        Qemu.io(full, img.toString(), "write -P 5 0 1M");
        long table;
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.allocate(8);
            ch.read(b, 48);
            table = b.flip().getLong();
            ch.write(ByteBuffer.allocate(8), table);
        }
        Qemu.Result before = Qemu.run(full, "qemu-img", "check", img.toString());
        assertEquals(2, before.exit(), before.out() + before.err());
        Path filler = fill(0);
        Qemu.Result r = Qemu.qcow4j("check", "-r", "all", img.toString());
        assertEquals(1, r.exit(), r.out() + r.err());
        oneLineNaming(r, img);
        Qemu.Result after = Qemu.run(full, "qemu-img", "check", img.toString());
        assertEquals(before.exit(), after.exit(), "no new damage:\n" + after.out() + after.err());
        assertEquals(errors(before.out()), errors(after.out()), "no new damage:\n" + after.out());
        Files.delete(filler);
        Qemu.qcow4j("check", "-r", "all", img.toString()).ok();
        Qemu.img(full, "check", img.toString());
        leftConsistent(img);
    }

    @Test
    void e2imageWhoseMetadataDoesNotFitLeavesNothing() throws Exception {
        Qemu.run(outside, "bash", "-c", "mkdir -p src/d && for i in $(seq 1 300); do echo $i > src/d/f$i; done"
                + " && mke2fs -q -F -t ext4 -d src fs.img 32M").ok();
        Path fs = outside.resolve("fs.img");
        Path out = full.resolve("fs.qcow2");
        fill(16 << 10);
        Qemu.Result r = Qemu.qcow4j("e2image", "-Q", fs.toString(), out.toString());
        assertEquals(1, r.exit(), r.out() + r.err());
        oneLineNaming(r, out);
        try (Stream<Path> left = Files.list(full)) {
            assertEquals(List.of(full.resolve("filler")), left.toList(), "nothing left behind but the filler");
        }
    }

    /** Fills the file system but for {@code leave} bytes (rounded to pages); returns the filler file. */
    private Path fill(long leave) throws IOException {
        Path filler = full.resolve("filler");
        try (FileChannel ch = FileChannel.open(filler, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ByteBuffer chunk = ByteBuffer.allocate(4096);
            try {
                while (true) {
                    ch.write(chunk.clear());
                }
            } catch (IOException e) {
                assertTrue(String.valueOf(e.getMessage()).contains(NOSPC), "filling: " + e);
            }
            ch.truncate(Math.max(0, ch.size() / 4096 * 4096 - leave));
        }
        return filler;
    }

    /**
     * The failure is one line on stderr, {@code qcow4j: FILE: ...}, with the cause: a full disk (check's diagnostics,
     * printed before it as qemu-img prints them, aside).
     */
    private static void oneLineNaming(Qemu.Result r, Path file) {
        List<String> lines = r.err().lines().filter(l -> l.startsWith("qcow4j:")).toList();
        assertEquals(1, lines.size(), "one line: " + r.err());
        assertTrue(lines.get(0).startsWith("qcow4j: " + file + ": ") && lines.get(0).contains(NOSPC), r.err());
    }

    /** qemu-img check finds no corruption (leaks allowed), and the image opens for writing again. */
    private void leftConsistent(Path img) throws IOException {
        Qemu.Result check = Qemu.run(full, "qemu-img", "check", img.toString());
        assertTrue(check.exit() == 0 || check.exit() == 3, check.out() + check.err());
        Images.openWritable(img).close();
    }

    private static String errors(String checkOutput) {
        return checkOutput.lines().filter(l -> l.contains("errors were found")).findFirst().orElse(checkOutput);
    }
}
