package org.qcow4j.cli;

import static org.qcow4j.cli.ImageBytes.getLong;
import static org.qcow4j.cli.ImageBytes.putLong;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.qcow4j.Images;
import org.qcow4j.QcowException;
import org.qcow4j.WritableImage;

/**
 * {@code check -r leaks|all} against {@code qemu-img check -r}: each damaged image is copied twice, qemu-img repairs
 * one copy and qcow4j the other; the same stdout, stderr and exit code (human and JSON), the same repaired bytes,
 * qemu-img check agrees on the result and qemu-img compare finds the guest data of the undamaged original. Where
 * QEMU itself fails to rebuild a refcount structure, qcow4j rebuilds it with the counts QEMU's findings give.
 */
class CheckRepairTest {
    private static final int OFF_L1_TABLE_OFFSET = 40;
    private static final int OFF_REFCOUNT_TABLE_OFFSET = 48;
    private static final int OFF_INCOMPATIBLE_FEATURES = 72;
    private static final long DIRTY = 1;
    private static final long CORRUPT = 2;
    private static final long OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    private static final long COPIED = 1L << 63;
    private static final List<String> MODES = List.of("leaks", "all");
    private static final List<List<String>> ALL_OUTPUTS = List.of(List.of(), List.of("--output=json"), List.of("-q"));
    /** What the rebuild tests write: 1 MiB at 0 and 200 KiB at 5 MiB of a 64 MiB disk. */
    private static final String[] DATA = {"write -P 0x11 0 1M", "write -P 0x22 5M 200k"};

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

    /** A used cluster with refcount 0 (and a leak): -r all rebuilds the refcount structure, -r leaks fails. */
    @Test
    void usedClusterWithRefcountZeroIsRebuilt() throws IOException {
        Path img = create("rebuild.qcow2", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        Path original = copy(img, "original.qcow2");
        long data = getLong(img, CheckTest.l2TableOf(img, 0)) & OFFSET_MASK;
        CheckTest.setRefcount(img, data >> 16, 0);
        CheckTest.setRefcount(img, 0, 2); // a leak, which the rebuild repairs too
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    /** A leaked cluster holding data: QEMU discards it when its refcount drops to 0, so it reads zeros after. */
    @Test
    void leakedDataClusterIsDiscarded() throws IOException {
        Path img = create("discard.qcow2", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k", "write -P 2 512k 64k");
        long l2 = CheckTest.l2TableOf(img, 0);
        putLong(img, l2 + 8 * 8, 0); // the guest cluster at 512k is gone, its host cluster leaks
        Path original = copy(img, "original.qcow2");
        assertRepairsLikeQemu(img, original, CheckCommand.LEAKS);
    }

    // ================================================================ refcount structure rebuilds

    /** Damage to the first refcount table entry that makes QEMU rebuild the refcount structure (-r all). */
    enum Damage {
        /** The entry zeroed: every used cluster it covered has refcount 0. */
        ZEROED_ENTRY,
        /** The block two clusters past the end of the file: QEMU grows the file to it, then rebuilds. */
        BLOCK_PAST_EOF,
        /** The block on the first L2 table: that cluster referenced twice, refcounts read from L2 entries. */
        BLOCK_ON_L2_TABLE,
        /** The block on the active L1 table. */
        BLOCK_ON_L1_TABLE,
        /** The entry pointing into the header (0x100: only reserved bits, no block). */
        ENTRY_INTO_HEADER,
        /**
         * The block offset misaligned by 512 bytes (with 512-byte clusters by 256, which sets reserved bits): QEMU
         * fails, it marks the image corrupt or refuses to write over the old block.
         */
        MISALIGNED_BLOCK,
        /** A reserved bit set in the entry: QEMU fails, its overlap check refuses to write over the old block. */
        RESERVED_BIT;

        /** Whether qemu-img check -r all repairs it (else it fails and qcow4j's rebuild is checked on its own). */
        boolean qemuRepairs() {
            return this != MISALIGNED_BLOCK && this != RESERVED_BIT;
        }
    }

    static Stream<Arguments> damages() {
        List<Arguments> all = new ArrayList<>();
        for (int clusterSize : new int[] {512, 65536}) {
            for (int bits : new int[] {1, 16, 64}) {
                for (Damage d : Damage.values()) {
                    all.add(Arguments.of(d, clusterSize, bits));
                }
            }
        }
        return all.stream();
    }

    @ParameterizedTest(name = "{0} cluster_size={1} refcount_bits={2}")
    @MethodSource("damages")
    void brokenRefcountStructureIsRebuilt(Damage damage, int clusterSize, int bits) throws IOException {
        Path img = create("broken.qcow2", "-o", "cluster_size=" + clusterSize + ",refcount_bits=" + bits, "64M");
        Qemu.io(dir, img.toString(), DATA);
        Path original = copy(img, "original.qcow2");
        long entry = getLong(img, OFF_REFCOUNT_TABLE_OFFSET); // the first refcount table entry
        long block = getLong(img, entry);
        long value = switch (damage) {
            case ZEROED_ENTRY -> 0;
            case BLOCK_PAST_EOF -> (Files.size(img) + clusterSize - 1) / clusterSize * clusterSize + 2L * clusterSize;
            case BLOCK_ON_L2_TABLE -> CheckTest.l2TableOf(img, 0);
            case BLOCK_ON_L1_TABLE -> getLong(img, OFF_L1_TABLE_OFFSET);
            case ENTRY_INTO_HEADER -> 0x100;
            case MISALIGNED_BLOCK -> block + Math.min(512, clusterSize / 2);
            case RESERVED_BIT -> block | 1;
        };
        putLong(img, entry, value);
        if (damage.qemuRepairs()) {
            int plainExit = Qemu.run(dir, "qemu-img", "check", img.toString()).exit();
            // One output format for the many cases; every format is compared in the tests below.
            assertRepairsLikeQemu(img, original, plainExit, List.of(List.of()));
        } else {
            assertRebuildsWhereQemuFails(img, original);
        }
    }

    /**
     * The first refcount table entry zeroed in images of other kinds: the rebuilt structure counts clusters shared
     * with a snapshot (refcount 2), compressed clusters sharing host clusters, extended L2 tables, a version 2 header.
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"snapshot", "compressed", "extended_l2", "compat=0.10"})
    void rebuildOfOtherImageKinds(String kind) throws IOException {
        Path img = switch (kind) {
            case "snapshot" -> create("kind.qcow2", "64M");
            case "compressed" -> create("kind.qcow2", "-o", "cluster_size=4096", "64M");
            case "extended_l2" -> create("kind.qcow2", "-o", "extended_l2=on", "64M");
            default -> create("kind.qcow2", "-o", kind, "64M");
        };
        switch (kind) {
            case "snapshot" -> {
                Qemu.io(dir, img.toString(), DATA);
                Qemu.img(dir, "snapshot", "-c", "snap", img.toString());
                Qemu.io(dir, img.toString(), "write -P 0x33 0 128k");
            }
            case "compressed" -> Qemu.io(dir, img.toString(), "write -c -P 1 0 64k", "write -P 2 1M 64k");
            case "extended_l2" -> Qemu.io(dir, img.toString(), "write -P 1 0 100k", "write -P 2 1M 4k");
            default -> Qemu.io(dir, img.toString(), DATA);
        }
        Path original = copy(img, "original.qcow2");
        putLong(img, getLong(img, OFF_REFCOUNT_TABLE_OFFSET), 0);
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT, List.of(List.of()));
    }

    /** A zeroed refcount table entry in the middle of the table (512-byte clusters: many blocks), every format. */
    @Test
    void zeroedEntryInTheMiddleOfTheTable() throws IOException {
        Path img = create("middle.qcow2", "-o", "cluster_size=512", "64M");
        Qemu.io(dir, img.toString(), DATA);
        Path original = copy(img, "original.qcow2");
        long table = getLong(img, OFF_REFCOUNT_TABLE_OFFSET);
        assertTrue(getLong(img, table + 8 * 3) != 0, "refcount block 3 exists");
        putLong(img, table + 8 * 3, 0);
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    /** Two refcount table entries naming the same block, every format. */
    @Test
    void blockNamedTwiceIsRebuilt() throws IOException {
        Path img = create("twice.qcow2", "-o", "cluster_size=512", "64M");
        Qemu.io(dir, img.toString(), DATA);
        Path original = copy(img, "original.qcow2");
        long table = getLong(img, OFF_REFCOUNT_TABLE_OFFSET);
        putLong(img, table + 8 * 2, getLong(img, table + 8));
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    // ================================================================ dirty and corrupt images

    /**
     * A lazy-refcounts image whose writer crashed (qemu-io abort): the dirty bit is set and the new clusters have no
     * refcounts. -r all rebuilds and clears the bit; -r leaks fails as in QEMU (which then clears the bit on close
     * all the same; qcow4j leaves the image untouched, dirty).
     */
    @ParameterizedTest(name = "cluster_size={0} refcount_bits={1}")
    @MethodSource("dirtyVariants")
    void crashedLazyRefcountsImageIsRepaired(int clusterSize, int bits) throws IOException {
        String options = "cluster_size=" + clusterSize + ",refcount_bits=" + bits;
        Path img = crashedLazyRefcountsImage("dirty.qcow2", options);
        Path original = create("original.qcow2", "-o", options, "64M");
        Qemu.io(dir, original.toString(), DATA);
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    static Stream<Arguments> dirtyVariants() {
        return Stream.of(Arguments.of(65536, 16), Arguments.of(512, 64), Arguments.of(65536, 1), Arguments.of(4096, 8));
    }

    /**
     * An image with an external data file (plain with lazy refcounts, left dirty; raw): only the image file's
     * metadata has refcounts, and an L2 table counted twice is repaired as qemu-img repairs it. (The data file's name
     * is absolute: both tools find it from their sibling directories, and no repair writes it.)
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"lazy_refcounts=on", "data_file_raw=on"})
    void imageWithADataFileIsRepaired(String options) throws IOException {
        Path data = dir.resolve("img.data").toAbsolutePath();
        Path img = create("df.qcow2", "-o", "data_file=" + data + "," + options, "4M");
        Qemu.io(dir, img.toString(), "write -P 1 0 1M", "write -P 2 2M 100k");
        Path original = copy(img, "original.qcow2");
        CheckTest.setRefcount(img, CheckTest.l2TableOf(img, 0) >> 16, 2);
        if (options.startsWith("lazy")) {
            setFeatures(img, DIRTY | 4); // 4: the external data file bit stays
        }
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    /** A dirty image whose refcounts only leak: -r leaks repairs them and clears the dirty bit, as QEMU. */
    @Test
    void dirtyImageWithLeaksOnly() throws IOException {
        Path img = create("dirtyleak.qcow2", "-o", "lazy_refcounts=on", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        Path original = copy(img, "original.qcow2");
        CheckTest.setRefcount(img, 0, 2);
        setFeatures(img, DIRTY);
        assertRepairsLikeQemu(img, original, CheckCommand.LEAKS);
    }

    /** A dirty image with nothing wrong: any -r clears the bit (QEMU's qcow2_mark_clean), nothing is reported. */
    @Test
    void dirtyBitAloneIsCleared() throws IOException {
        Path img = create("dirtyonly.qcow2", "-o", "lazy_refcounts=on", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        Path original = copy(img, "original.qcow2");
        setFeatures(img, DIRTY);
        assertRepairsLikeQemu(img, original, 0);
    }

    /** The corrupt bit with a leak and a refcount too low: repaired, and the bit cleared (qcow2_mark_consistent). */
    @Test
    void corruptBitIsClearedByTheRepair() throws IOException {
        Path img = create("corrupt.qcow2", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        Qemu.img(dir, "snapshot", "-c", "snap", img.toString());
        Path original = copy(img, "original.qcow2");
        CheckTest.setRefcount(img, (getLong(img, CheckTest.l2TableOf(img, 0)) & OFFSET_MASK) >> 16, 1);
        CheckTest.setRefcount(img, 0, 2);
        setFeatures(img, CORRUPT);
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    /** The corrupt bit and a broken refcount structure: rebuilt, the bit cleared. */
    @Test
    void corruptImageNeedingARebuild() throws IOException {
        Path img = create("corruptrebuild.qcow2", "64M");
        Qemu.io(dir, img.toString(), DATA);
        Path original = copy(img, "original.qcow2");
        putLong(img, getLong(img, OFF_REFCOUNT_TABLE_OFFSET), 0);
        setFeatures(img, CORRUPT);
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
    }

    /** The library's repair before a read-write open: the crashed image is rebuilt and no longer dirty. */
    @Test
    void openingADirtyImageForWritingRepairsIt() throws IOException {
        Path img = crashedLazyRefcountsImage("crashed.qcow2", "cluster_size=65536");
        Path original = create("original.qcow2", "64M");
        Qemu.io(dir, original.toString(), DATA);
        List<String> warnings;
        try (WritableImage w = Images.openWritable(img)) {
            warnings = w.warnings();
        }
        assertEquals(List.of(img + ": repaired the refcounts of a dirty image (lazy refcounts, not closed cleanly)"),
                warnings);
        assertEquals(0, getLong(img, OFF_INCOMPATIBLE_FEATURES) & DIRTY, "dirty bit cleared");
        assertCleanAndEqual(img, original);
    }

    /**
     * A crashed image whose first refcount block is also misaligned: the rebuild meets check errors (the block
     * cannot be read), after which QEMU keeps the dirty bit; the opener runs the repair again and clears it.
     */
    @Test
    void openingForWritingClearsTheDirtyBitAfterCheckErrors() throws IOException {
        Path img = crashedLazyRefcountsImage("crashed.qcow2", "cluster_size=65536");
        Path original = create("original.qcow2", "64M");
        Qemu.io(dir, original.toString(), DATA);
        long entry = getLong(img, OFF_REFCOUNT_TABLE_OFFSET);
        putLong(img, entry, getLong(img, entry) + 512);
        Images.openWritable(img).close();
        assertEquals(0, getLong(img, OFF_INCOMPATIBLE_FEATURES) & DIRTY, "dirty bit cleared");
        assertCleanAndEqual(img, original);
    }

    /** Opening a dirty image for writing refuses (untouched, one line) what repair refuses. */
    @Test
    void openingADirtyImageRefusesWhatRepairRefuses() throws IOException {
        Path img = crashedLazyRefcountsImage("crashed.qcow2", "cluster_size=65536");
        long l2 = CheckTest.l2TableOf(img, 0);
        putLong(img, l2, getLong(img, l2) | 0x0100_0000_0000_0000L); // reserved bits: no repair touches them
        byte[] before = Files.readAllBytes(img);
        QcowException e = assertThrows(QcowException.class, () -> Images.openWritable(img));
        assertTrue(e.getMessage().contains("cannot repair") && e.getMessage().indexOf('\n') < 0, e.getMessage());
        assertArrayEquals(before, Files.readAllBytes(img));
    }

    /**
     * iotest 036: an autoclear bit QEMU does not know is cleared by any -r (QEMU clears it on opening the image
     * read-write), with nothing else to repair or with a leak; the bytes are qemu-img's.
     */
    @Test
    void unknownAutoclearBitIsClearedByTheRepair() throws IOException {
        Path img = create("autoclear.qcow2", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        Path original = copy(img, "original.qcow2");
        putLong(img, 88, 1L << 63);
        assertRepairsLikeQemu(img, original, 0);
        CheckTest.setRefcount(img, 0, 2);
        assertRepairsLikeQemu(img, original, CheckCommand.LEAKS);
        Path repaired = copy(img, "repaired.qcow2");
        CheckTest.check("-r", "leaks", repaired.toString());
        assertEquals(0, getLong(repaired, 88));
    }

    /**
     * An image with persistent bitmaps (an enabled and a disabled one) and a leak: qemu-img's repair holds the image open
     * for writing, so the bitmaps are flagged in use and stored anew when it closes, after the double check. The same
     * bytes, output and exit code, for -r leaks and -r all, human, JSON and -q.
     */
    @Test
    void bitmapsAreStoredAnewAfterTheRepair() throws IOException {
        Path img = create("bitmaps.qcow2", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 128k");
        Qemu.img(dir, "bitmap", "--add", img.toString(), "b0");
        Qemu.img(dir, "bitmap", "--add", "-g", "128k", img.toString(), "b1");
        Qemu.io(dir, img.toString(), "write -P 2 512k 64k");
        Qemu.img(dir, "bitmap", "--disable", img.toString(), "b1");
        Path original = copy(img, "original.qcow2");
        CheckTest.setRefcount(img, 0, 2);
        assertRepairsLikeQemu(img, original, CheckCommand.LEAKS);
    }

    /**
     * A preallocated zero cluster (no data) at an unaligned host offset: -r all makes the entry a plain zero cluster
     * (QEMU's fix_l2_entry_by_zero; with extended L2 entries its allocated subclusters become zero ones, iotest 271),
     * and the cluster it pointed to leaks and is repaired; -r leaks leaves the entry as QEMU does.
     */
    @ParameterizedTest(name = "extended_l2={0}")
    @ValueSource(booleans = {false, true})
    void misalignedPreallocatedClusterBecomesAZeroCluster(boolean extendedL2) throws IOException {
        Path img = create("prealloc.qcow2", "-o", "extended_l2=" + (extendedL2 ? "on" : "off"), "1M");
        // cluster 1 zeroed in place: its host cluster kept, no data (the zero flag, or every subcluster zero)
        Qemu.io(dir, img.toString(), "write -P 1 0 128k", "write -z 64k 64k");
        Path original = copy(img, "original.qcow2");
        long slot = CheckTest.l2TableOf(img, 0) + (extendedL2 ? 16 : 8);
        assertEquals(extendedL2 ? 0xffff_ffff_0000_0000L : 1L, extendedL2 ? getLong(img, slot + 8) : getLong(img, slot) & 1);
        putLong(img, slot, getLong(img, slot) + 0x200);
        assertRepairsLikeQemu(img, original, CheckCommand.CORRUPT);
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

    private void assertRepairsLikeQemu(Path damaged, Path original, int plainExit) throws IOException {
        assertRepairsLikeQemu(damaged, original, plainExit, ALL_OUTPUTS);
    }

    /**
     * For each of -r leaks and -r all and each of {@code outputs} (human, JSON, -q): qemu-img check -r on one copy of
     * {@code damaged}, qcow4j on another in a sibling directory of the same file name; asserts the same stdout,
     * stderr (but the program name on "Check failed") and exit code, and the same resulting bytes; that qemu-img
     * check then agrees with what the second check reported, and that qemu-img compare finds {@code original}'s
     * guest data. Where qemu-img fails (a rebuild with -r leaks), qcow4j leaves the file untouched; QEMU's only
     * write then is clearing the dirty bit on close. First of all, a plain check must not change the file.
     */
    private void assertRepairsLikeQemu(Path damaged, Path original, int plainExit, List<List<String>> outputs)
            throws IOException {
        byte[] before = Files.readAllBytes(damaged);
        assertEquals(plainExit, CheckTest.check(damaged.toString()).exit(), "plain check exit");
        assertEquals(plainExit, Qemu.run(dir, "qemu-img", "check", damaged.toString()).exit(), "qemu-img check exit");
        assertEquals(plainExit, CheckTest.check("--output=json", damaged.toString()).exit(), "plain check exit (json)");
        assertArrayEquals(before, Files.readAllBytes(damaged), "a check without -r changed the file");

        int run = 0;
        for (String mode : MODES) {
            for (List<String> output : outputs) {
                run++;
                Path q = Files.createDirectories(dir.resolve("qemu-" + run)).resolve("img.qcow2");
                Path o = Files.createDirectories(dir.resolve("ours-" + run)).resolve("img.qcow2");
                Files.write(q, before);
                Files.write(o, before);
                Qemu.Result qr = qemuRepair(q, mode, output);
                Qemu.Result or = ourRepair(o, mode, output);
                String what = "-r " + mode + " " + output + "\nqemu-img: exit " + qr.exit() + "\n" + qr.out() + qr.err()
                        + "\nqcow4j: exit " + or.exit() + "\n" + or.out() + or.err();
                if (mode.equals("all")) { // the test is no vacuous one: qemu-img repairs every damaged image with -r all
                    assertEquals(plainExit != 0, qr.err().contains("Repairing"), "repairs " + what);
                }
                assertEquals(qr.exit(), or.exit(), "exit code " + what);
                assertEquals(qr.out(), or.out().replace(o.toString(), q.toString()), "stdout " + what);
                assertEquals(qr.err(), qemuCheckFailed(or.err(), o), "stderr " + what);
                if (qr.exit() == 1) {
                    assertArrayEquals(before, Files.readAllBytes(o), "qcow4j wrote to an image it failed to repair " + what);
                    assertArrayEquals(before, dirtyAgain(Files.readAllBytes(q), before), "qemu-img's bytes " + what);
                    continue;
                }
                assertArrayEquals(Files.readAllBytes(q), Files.readAllBytes(o), "repaired bytes " + what);

                Qemu.Result after = Qemu.run(dir, "qemu-img", "check", o.toString());
                assertEquals(qr.exit(), after.exit(), "qemu-img check after the repair " + what + "\n" + after.out());
                Qemu.Result cmp = Qemu.run(dir, "qemu-img", "compare", original.toString(), o.toString());
                assertEquals(0, cmp.exit(), "guest data after the repair " + what + "\n" + cmp.out() + cmp.err());
            }
        }
        assertArrayEquals(before, Files.readAllBytes(damaged), "the damaged image itself was never touched");
    }

    /**
     * A broken refcount structure qemu-img check -r all fails to rebuild (it marks the image corrupt on reading a
     * misaligned block, or its overlap check refuses to write the new first block over the old one): qcow4j's
     * findings are QEMU's, line for line up to "Rebuilding refcount structure" (but for the wording of QEMU's
     * corruption event, as qcow4j does not mark the image corrupt), the rebuild then succeeds with the counts those
     * findings give (each "ERROR" a corruption fixed, each "Leaked" a leak fixed), the double check is clean, and so
     * is qemu-img check, and the guest data is the original's. With -r leaks both fail, and qcow4j writes nothing.
     */
    private void assertRebuildsWhereQemuFails(Path damaged, Path original) throws IOException {
        byte[] before = Files.readAllBytes(damaged);
        Qemu.Result qemuPlain = Qemu.run(dir, "qemu-img", "check", damaged.toString());
        assertEquals(qemuPlain.exit(), CheckTest.check(damaged.toString()).exit(), "plain check exit");

        Path q = Files.createDirectories(dir.resolve("qemu-all")).resolve("img.qcow2");
        Path o = Files.createDirectories(dir.resolve("ours-all")).resolve("img.qcow2");
        Files.write(q, before);
        Files.write(o, before);
        Qemu.Result qr = qemuRepair(q, "all", List.of());
        Qemu.Result or = ourRepair(o, "all", List.of());
        String what = "-r all\nqemu-img: exit " + qr.exit() + "\n" + qr.out() + qr.err() + "\nqcow4j: exit " + or.exit()
                + "\n" + or.out() + or.err();
        assertEquals(1, qr.exit(), "qemu-img fails " + what);
        String rebuilding = "Rebuilding refcount structure\n";
        List<String> findings = Arrays.asList(readOnlyWording(qr.err()).split("\n", -1));
        int end = findings.indexOf("Rebuilding refcount structure");
        assertTrue(end > 0, what);
        findings = findings.subList(0, end);
        assertTrue(or.err().startsWith(String.join("\n", findings) + "\n" + rebuilding), "findings " + what);
        long corruptions = findings.stream().filter(l -> l.startsWith("ERROR")).count();
        long leaks = findings.stream().filter(l -> l.startsWith("Leaked")).count();
        assertEquals(0, or.exit(), what);
        assertTrue(or.out().startsWith("The following inconsistencies were found and repaired:\n\n    " + leaks
                + " leaked clusters\n    " + corruptions + " corruptions\n\nDouble checking the fixed image now...\n"
                + "No errors were found on the image.\n"), "report " + what);
        assertCleanAndEqual(o, original);

        Path j = Files.createDirectories(dir.resolve("ours-json")).resolve("img.qcow2");
        Files.write(j, before);
        Qemu.Result json = ourRepair(j, "all", List.of("--output=json"));
        assertEquals(0, json.exit(), json.err());
        assertTrue(json.out().contains("\"corruptions-fixed\": " + corruptions), json.out());
        assertArrayEquals(Files.readAllBytes(o), Files.readAllBytes(j), "the same rebuild, whatever the output");

        Path ql = Files.createDirectories(dir.resolve("qemu-leaks")).resolve("img.qcow2");
        Path ol = Files.createDirectories(dir.resolve("ours-leaks")).resolve("img.qcow2");
        Files.write(ql, before);
        Files.write(ol, before);
        Qemu.Result qLeaks = qemuRepair(ql, "leaks", List.of());
        Qemu.Result oLeaks = ourRepair(ol, "leaks", List.of());
        assertEquals(1, qLeaks.exit(), qLeaks.err());
        assertEquals(1, oLeaks.exit(), oLeaks.err());
        assertEquals(readOnlyWording(qLeaks.err()), qemuCheckFailed(oLeaks.err(), ol), "-r leaks stderr");
        assertTrue(oLeaks.err().contains("ERROR need to rebuild refcount structures\n"), oLeaks.err());
        assertArrayEquals(before, Files.readAllBytes(ol), "-r leaks wrote to the image");
    }

    private Qemu.Result qemuRepair(Path img, String mode, List<String> output) {
        List<String> cmd = Qemu.list("qemu-img", "check", "-r", mode);
        cmd.addAll(output);
        cmd.add(img.toString());
        return Qemu.run(img.getParent(), cmd.toArray(String[]::new));
    }

    private static Qemu.Result ourRepair(Path img, String mode, List<String> output) {
        List<String> cmd = Qemu.list("-r", mode);
        cmd.addAll(output);
        cmd.add(img.toString());
        return CheckTest.check(cmd.toArray(String[]::new));
    }

    /** qcow4j's "Check failed" line as qemu-img words it (the program name instead of ours and the file's). */
    private static String qemuCheckFailed(String err, Path img) {
        return err.replace("qcow4j: " + img + ": Check failed", "qemu-img: Check failed");
    }

    /** QEMU's corruption event on an image open for writing, worded as on a read-only one (qcow4j's wording). */
    private static String readOnlyWording(String err) {
        return err.replace("qcow2: Marking image as corrupt: ", "qcow2: Image is corrupt: ")
                .replace("; further corruption events will be suppressed", "; further non-fatal corruption events will be suppressed");
    }

    /** {@code bytes} with the dirty bit as {@code before} has it (QEMU clears it on close even after a failure). */
    private static byte[] dirtyAgain(byte[] bytes, byte[] before) {
        byte[] out = bytes.clone();
        out[OFF_INCOMPATIBLE_FEATURES + 7] = (byte) ((out[OFF_INCOMPATIBLE_FEATURES + 7] & ~DIRTY)
                | (before[OFF_INCOMPATIBLE_FEATURES + 7] & DIRTY));
        return out;
    }

    /** qemu-img check finds {@code img} clean and qemu-img compare finds the guest data of {@code original}. */
    private void assertCleanAndEqual(Path img, Path original) {
        Qemu.Result after = Qemu.run(dir, "qemu-img", "check", img.toString());
        assertEquals(0, after.exit(), "qemu-img check after the repair\n" + after.out() + after.err());
        Qemu.Result cmp = Qemu.run(dir, "qemu-img", "compare", original.toString(), img.toString());
        assertEquals(0, cmp.exit(), "guest data after the repair\n" + cmp.out() + cmp.err());
    }

    /**
     * A lazy-refcounts image (64 MiB, {@code options} more) written by qemu-io, which then aborts as if it crashed:
     * the header's dirty bit is set and the clusters written have no refcounts on disk.
     */
    private Path crashedLazyRefcountsImage(String name, String options) throws IOException {
        Path img = create(name, "-o", "lazy_refcounts=on,compat=1.1," + options, "64M");
        List<String> cmd = Qemu.list("qemu-io");
        for (String c : DATA) {
            cmd.add("-c");
            cmd.add(c);
        }
        cmd.addAll(List.of("-c", "abort", img.toString()));
        assertTrue(Qemu.run(dir, cmd.toArray(String[]::new)).exit() != 0, "qemu-io abort");
        assertEquals(DIRTY, getLong(img, OFF_INCOMPATIBLE_FEATURES) & DIRTY, "the crash left the dirty bit set");
        return img;
    }

    private static void setFeatures(Path img, long bits) throws IOException {
        putLong(img, OFF_INCOMPATIBLE_FEATURES, getLong(img, OFF_INCOMPATIBLE_FEATURES) | bits);
    }

    private Path create(String name, String... args) {
        return Qemu.createQcow2(dir, name, args);
    }

    private Path copy(Path img, String name) throws IOException {
        return Files.copy(img, dir.resolve(name).toAbsolutePath());
    }
}
