package org.qcow4j.cli;

import static org.qcow4j.cli.ImageBytes.getLong;
import static org.qcow4j.cli.ImageBytes.putLong;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code check -r leaks|all} against {@code qemu-img check -r}: each damaged image is copied twice, qemu-img repairs
 * one copy and qcow4j the other; the same stdout, stderr and exit code (human and JSON), the same repaired bytes,
 * qemu-img check agrees on the result and qemu-img compare finds the guest data of the undamaged original.
 */
class CheckRepairTest {
    private static final int OFF_L1_TABLE_OFFSET = 40;
    private static final long OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    private static final long COPIED = 1L << 63;
    private static final List<String> MODES = List.of("leaks", "all");

    @TempDir
    Path dir;

    // ================================================================ leaks

    @ParameterizedTest(name = "refcount_bits={0}")
    @ValueSource(ints = {1, 2, 4, 8, 16, 32, 64})
    void appendedLeakedClusterIsRepaired(int bits) throws IOException {
        Path img = create("leak.qcow2", "-o", "refcount_bits=" + bits + ",cluster_size=4k", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 12k");
        Path original = copy(img, "original.qcow2");
        long cluster = Files.size(img) / 4096;
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(4096), cluster * 4096);
        }
        CheckTest.setRefcount(img, cluster, 1);
        assertRepairsLikeQemu(img, original, CheckCommand.LEAKS);
    }

    /** A used cluster with a refcount too high leaks, and its COPIED flag no longer matches. */
    @ParameterizedTest(name = "refcount_bits={0}")
    @ValueSource(ints = {2, 4, 8, 16, 32, 64})
    void usedClusterWithRefcountTooHighIsRepaired(int bits) throws IOException {
        Path img = create("high.qcow2", "-o", "refcount_bits=" + bits, "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        Path original = copy(img, "original.qcow2");
        long data = getLong(img, CheckTest.l2TableOf(img, 0)) & OFFSET_MASK;
        CheckTest.setRefcount(img, data >> 16, 3);
        CheckTest.setRefcount(img, 0, 2); // the header cluster leaks too
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    // ================================================================ corruptions

    /** A cluster shared with a snapshot (reference 2) with refcount 1: raised by -r all, left by -r leaks. */
    @Test
    void refcountTooLowIsRaisedByRepairAll() throws IOException {
        Path img = create("low.qcow2", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        Qemu.img(dir, "snapshot", "-c", "snap", img.toString());
        Qemu.io(dir, img.toString(), "write -P 2 64k 64k");
        Path original = copy(img, "original.qcow2");
        long data = getLong(img, CheckTest.l2TableOf(img, 0)) & OFFSET_MASK;
        CheckTest.setRefcount(img, data >> 16, 1);
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    @Test
    void clearedCopiedFlagsInL1AndL2AreRepaired() throws IOException {
        Path img = create("copied.qcow2", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k", "write -P 3 512k 64k");
        Path original = copy(img, "original.qcow2");
        long l2 = CheckTest.l2TableOf(img, 0);
        putLong(img, l2, getLong(img, l2) & ~COPIED);
        putLong(img, l2 + 8 * 8, getLong(img, l2 + 8 * 8) & ~COPIED);
        long l1 = getLong(img, OFF_L1_TABLE_OFFSET);
        putLong(img, l1, getLong(img, l1) & ~COPIED);
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    @Test
    void copiedFlagsOfExtendedL2EntriesAreRepaired() throws IOException {
        Path img = create("xl2.qcow2", "-o", "extended_l2=on", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        Path original = copy(img, "original.qcow2");
        long l2 = CheckTest.l2TableOf(img, 0);
        putLong(img, l2 + 16, getLong(img, l2 + 16) & ~COPIED);
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    /** Leak, refcount too low and COPIED flags at once (the COPIED checks see the repaired refcounts). */
    @Test
    void everythingAtOnce() throws IOException {
        Path img = create("mixed.qcow2", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        Qemu.img(dir, "snapshot", "-c", "snap", img.toString());
        Qemu.io(dir, img.toString(), "write -P 2 64k 64k");
        Path original = copy(img, "original.qcow2");
        long l2 = CheckTest.l2TableOf(img, 0);
        CheckTest.setRefcount(img, (getLong(img, l2) & OFFSET_MASK) >> 16, 1);
        CheckTest.setRefcount(img, 0, 3);
        putLong(img, l2 + 8, getLong(img, l2 + 8) & ~COPIED);
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    @Test
    void cleanImageIsLeftAlone() throws IOException {
        Path img = create("clean.qcow2", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        assertRepairsLikeQemu(img, copy(img, "original.qcow2"), 0);
    }

    // ================================================================ refused

    /** A used cluster with refcount 0 needs QEMU's refcount structure rebuild: refused, nothing written. */
    @Test
    void imageNeedingARebuildIsRefusedUntouched() throws IOException {
        Path img = create("rebuild.qcow2", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        long data = getLong(img, CheckTest.l2TableOf(img, 0)) & OFFSET_MASK;
        CheckTest.setRefcount(img, data >> 16, 0);
        CheckTest.setRefcount(img, 0, 2); // a leak it would otherwise fix
        byte[] before = Files.readAllBytes(img);
        for (String mode : MODES) {
            Qemu.Result r = CheckTest.check("-r", mode, img.toString());
            assertEquals(1, r.exit(), r.err());
            assertEquals("", r.out());
            assertTrue(r.err().startsWith("qcow4j: ") && r.err().indexOf('\n') == r.err().length() - 1, r.err());
            assertTrue(r.err().contains("cannot repair"), r.err());
            assertArrayEquals(before, Files.readAllBytes(img), "-r " + mode + " wrote to a refused image");
        }
    }

    @Test
    void otherCorruptionsAreRefusedUntouched() throws IOException {
        Path img = create("reserved.qcow2", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        long l2 = CheckTest.l2TableOf(img, 0);
        putLong(img, l2, getLong(img, l2) | 0x0100_0000_0000_0000L);
        CheckTest.setRefcount(img, 0, 2);
        byte[] before = Files.readAllBytes(img);
        Qemu.Result r = CheckTest.check("-r", "all", img.toString());
        assertEquals(1, r.exit(), r.err());
        assertTrue(r.err().contains("reserved bits"), r.err());
        assertArrayEquals(before, Files.readAllBytes(img));
    }

    // ================================================================ comparing with qemu-img

    /**
     * For each of -r leaks and -r all, human and JSON (and -q): qemu-img check -r on one copy of {@code damaged},
     * qcow4j on another in a sibling directory of the same file name; asserts the same stdout, stderr, exit code
     * and resulting bytes, that qemu-img check then agrees with the second check reported, and that qemu-img
     * compare finds {@code original}'s guest data. First of all, a plain check must not change the file.
     */
    private void assertRepairsLikeQemu(Path damaged, Path original, int plainExit) throws IOException {
        byte[] before = Files.readAllBytes(damaged);
        assertEquals(plainExit, CheckTest.check(damaged.toString()).exit(), "plain check exit");
        assertEquals(plainExit, CheckTest.check("--output=json", damaged.toString()).exit(), "plain check exit (json)");
        assertArrayEquals(before, Files.readAllBytes(damaged), "a check without -r changed the file");

        int run = 0;
        for (String mode : MODES) {
            for (List<String> output : List.<List<String>>of(List.of(), List.of("--output=json"), List.of("-q"))) {
                run++;
                Path q = Files.createDirectories(dir.resolve("qemu-" + run)).resolve("img.qcow2");
                Path o = Files.createDirectories(dir.resolve("ours-" + run)).resolve("img.qcow2");
                Files.write(q, before);
                Files.write(o, before);
                List<String> qcmd = Qemu.list("qemu-img", "check", "-r", mode);
                qcmd.addAll(output);
                qcmd.add(q.toString());
                Qemu.Result qr = Qemu.run(q.getParent(), qcmd.toArray(String[]::new));
                List<String> ocmd = Qemu.list("-r", mode);
                ocmd.addAll(output);
                ocmd.add(o.toString());
                Qemu.Result or = CheckTest.check(ocmd.toArray(String[]::new));
                String what = "-r " + mode + " " + output + "\nqemu-img: exit " + qr.exit() + "\n" + qr.out() + qr.err()
                        + "\nqcow4j: exit " + or.exit() + "\n" + or.out() + or.err();
                if (mode.equals("all")) { // the test is no vacuous one: qemu-img repairs every damaged image with -r all
                    assertEquals(plainExit != 0, qr.err().contains("Repairing"), "repairs " + what);
                }
                assertEquals(qr.exit(), or.exit(), "exit code " + what);
                assertEquals(qr.out(), or.out().replace(o.toString(), q.toString()), "stdout " + what);
                assertEquals(qr.err(), or.err(), "stderr " + what);
                assertArrayEquals(Files.readAllBytes(q), Files.readAllBytes(o), "repaired bytes " + what);

                Qemu.Result after = Qemu.run(dir, "qemu-img", "check", o.toString());
                assertEquals(qr.exit(), after.exit(), "qemu-img check after the repair " + what + "\n" + after.out());
                Qemu.Result cmp = Qemu.run(dir, "qemu-img", "compare", original.toString(), o.toString());
                assertEquals(0, cmp.exit(), "guest data after the repair " + what + "\n" + cmp.out() + cmp.err());
            }
        }
        assertArrayEquals(before, Files.readAllBytes(damaged), "the damaged image itself was never touched");
    }

    private Path create(String name, String... args) {
        List<String> cmd = Qemu.list("create", "-q", "-f", "qcow2");
        cmd.addAll(List.of(args).subList(0, args.length - 1));
        cmd.add(name);
        cmd.add(args[args.length - 1]);
        Qemu.img(dir, cmd.toArray(String[]::new));
        return dir.resolve(name).toAbsolutePath();
    }

    private Path copy(Path img, String name) throws IOException {
        return Files.copy(img, dir.resolve(name).toAbsolutePath());
    }
}
