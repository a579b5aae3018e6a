package org.qcow4j.cli;

import static org.qcow4j.cli.ImageBytes.getInt;
import static org.qcow4j.cli.ImageBytes.getLong;
import static org.qcow4j.cli.ImageBytes.put;
import static org.qcow4j.cli.ImageBytes.putInt;
import static org.qcow4j.cli.ImageBytes.putLong;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.qcow4j.format.Header;

/**
 * Malformed and hostile qcow2 images: each is made valid by qemu-img/qemu-io, then damaged by patching bytes,
 * and every qcow4j command that reads it must refuse it with exit code 1 and exactly one stderr line
 * "qcow4j: FILE: field = value: reason" (no stack trace), quickly, without allocating from the bad field, and
 * (for convert) without leaving an output or temporary file behind.
 */
class BadImageTest {
    /** Every command on a bad image must finish within this time. */
    private static final Duration LIMIT = Duration.ofSeconds(2);
    /** A refusal must not allocate more than this (the bad fields would ask for gigabytes). */
    private static final long ALLOCATION_BUDGET = 64L << 20;

    // Header offsets (Header.java's Javadoc table).
    private static final int OFF_VERSION = 4;
    private static final int OFF_BACKING_FILE_OFFSET = 8;
    private static final int OFF_BACKING_FILE_SIZE = 16;
    private static final int OFF_CLUSTER_BITS = 20;
    private static final int OFF_SIZE = 24;
    private static final int OFF_L1_SIZE = 36;
    private static final int OFF_L1_TABLE_OFFSET = 40;
    private static final int OFF_REFCOUNT_TABLE_OFFSET = 48;
    private static final int OFF_REFCOUNT_TABLE_CLUSTERS = 56;
    private static final int OFF_INCOMPATIBLE_FEATURES = 72;
    private static final int OFF_REFCOUNT_ORDER = 96;
    private static final int OFF_HEADER_LENGTH = 100;

    /**
     * What the one stderr line must hold: one of {@code files} (absolute names), every one of {@code mustContain}
     * and, unless empty, one of {@code anyOf} (the bad value, in any of its spellings).
     */
    private record Expect(List<String> files, List<String> mustContain, List<String> anyOf) {
    }

    private static final long L1_OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    private static final long L2_COMPRESSED = 1L << 62;

    @TempDir
    Path dir;

    // ---------------------------------------------------------------- header

    @Test
    void refusesTruncatedHeader() throws IOException {
        Path valid = validImage("full.qcow2");
        Path img = dir.resolve("truncated.qcow2");
        Files.write(img, Arrays.copyOf(Files.readAllBytes(valid), 50));
        assertAllCommandsRefuse(img, List.of(), List.of("header"), fieldValues("header", 50));
    }

    @Test
    void refusesBadMagicWhenFormatIsQcow2() throws IOException {
        Path img = validImage("magic.qcow2");
        putInt(img, 0, 0x12345678);
        assertAllCommandsRefuse(img, List.of("-f", "qcow2"), List.of("magic"), fieldValues("magic", 0x12345678));
    }

    @Test
    void refusesUnknownVersion() throws IOException {
        Path img = validImage("version.qcow2");
        putInt(img, OFF_VERSION, 5);
        assertAllCommandsRefuse(img, List.of(), List.of("version"), fieldValues("version", 5));
    }

    @ParameterizedTest(name = "cluster_bits {0}")
    @ValueSource(ints = {8, 22})
    void refusesClusterBitsOutOfRange(int bits) throws IOException {
        Path img = validImage("bits" + bits + ".qcow2");
        putInt(img, OFF_CLUSTER_BITS, bits);
        assertAllCommandsRefuse(img, List.of(), List.of("cluster_bits"), fieldValues("cluster_bits", bits));
    }

    @Test
    void refusesHugeL1Size() throws IOException {
        Path img = validImage("l1size.qcow2");
        putInt(img, OFF_L1_SIZE, 0x10000000);
        assertAllCommandsRefuse(img, List.of(), List.of("l1_size"), fieldValues("l1_size", 0x10000000L));
    }

    @Test
    void refusesUnalignedL1TableOffset() throws IOException {
        Path img = validImage("l1unaligned.qcow2");
        long bad = getLong(img, OFF_L1_TABLE_OFFSET) + 0x200;
        putLong(img, OFF_L1_TABLE_OFFSET, bad);
        assertAllCommandsRefuse(img, List.of(), List.of("l1_table_offset"), fieldValues("l1_table_offset", bad));
    }

    @Test
    void refusesL1TableOffsetPastEndOfFile() throws IOException {
        Path img = validImage("l1eof.qcow2");
        putLong(img, OFF_L1_TABLE_OFFSET, 0x7fff0000L);
        assertAllCommandsRefuse(img, List.of(), List.of("l1_table_offset"), fieldValues("l1_table_offset", 0x7fff0000L));
    }

    @Test
    void refusesUnalignedRefcountTableOffset() throws IOException {
        Path img = validImage("rtunaligned.qcow2");
        long bad = getLong(img, OFF_REFCOUNT_TABLE_OFFSET) + 0x200;
        putLong(img, OFF_REFCOUNT_TABLE_OFFSET, bad);
        assertAllCommandsRefuse(img, List.of(), List.of("refcount_table_offset"),
                fieldValues("refcount_table_offset", bad));
    }

    @Test
    void refusesRefcountTableOffsetPastEndOfFile() throws IOException {
        Path img = validImage("rteof.qcow2");
        putLong(img, OFF_REFCOUNT_TABLE_OFFSET, 0x7fff0000L);
        assertAllCommandsRefuse(img, List.of(), List.of("refcount_table_offset"),
                fieldValues("refcount_table_offset", 0x7fff0000L));
    }

    @Test
    void refusesHugeRefcountTableClusters() throws IOException {
        Path img = validImage("rtclusters.qcow2");
        putInt(img, OFF_REFCOUNT_TABLE_CLUSTERS, 0x100000);
        assertAllCommandsRefuse(img, List.of(), List.of("refcount_table_clusters"),
                fieldValues("refcount_table_clusters", 0x100000));
    }

    @Test
    void refusesUnknownIncompatibleFeatureBit() throws IOException {
        Path img = validImage("feature.qcow2");
        putLong(img, OFF_INCOMPATIBLE_FEATURES, getLong(img, OFF_INCOMPATIBLE_FEATURES) | 1L << 20);
        assertAllCommandsRefuse(img, List.of(), List.of("incompatible feature bit 20"), List.of());
    }

    @Test
    void refusesRefcountOrder7() throws IOException {
        Path img = validImage("order.qcow2");
        putInt(img, OFF_REFCOUNT_ORDER, 7);
        assertAllCommandsRefuse(img, List.of(), List.of("refcount_order"), fieldValues("refcount_order", 7));
    }

    @Test
    void refusesV3HeaderLengthBelow104() throws IOException {
        Path img = validImage("hlen.qcow2");
        putInt(img, OFF_HEADER_LENGTH, 100);
        assertAllCommandsRefuse(img, List.of(), List.of("header_length"), fieldValues("header_length", 100));
    }

    /** 1<<62 with the image's small l1_size, -1 (0xffff...), and Long.MAX_VALUE (overflows size_to_l1). */
    @ParameterizedTest(name = "size {0}")
    @ValueSource(longs = {1L << 62, -1L, Long.MAX_VALUE})
    void refusesAbsurdVirtualSize(long size) throws IOException {
        Path img = validImage("size.qcow2");
        putLong(img, OFF_SIZE, size);
        assertAllCommandsRefuse(img, List.of(), List.of("size"), fieldValues("size", size));
    }

    @Test
    void refusesBackingFileNamePastEndOfFile() throws IOException {
        Path img = validImage("backingname.qcow2");
        assertEquals(16, getInt(img, OFF_CLUSTER_BITS), "test expects a 64k-cluster image");
        putLong(img, OFF_BACKING_FILE_OFFSET, 0xFFFF00L);
        putInt(img, OFF_BACKING_FILE_SIZE, 10);
        // Either backing_file_offset or backing_file_size may be blamed, but the offset must be shown.
        assertAllCommandsRefuse(img, List.of(), List.of("backing_file_"), values(0xFFFF00L));
    }

    // ---------------------------------------------------------------- L1 entries

    @Test
    void refusesL1EntryPointingIntoHeader() throws IOException {
        Path img = validImage("l1header.qcow2");
        assertEquals(16, getInt(img, OFF_CLUSTER_BITS), "test expects a 64k-cluster image");
        long l1 = getLong(img, OFF_L1_TABLE_OFFSET);
        assertNotEquals(0, getLong(img, l1), "data was written, so L1 entry 0 must be in use");
        putLong(img, l1, 0x200L);
        assertReadingRefuses(img, List.of("L1 entry 0"), fieldValues("L1 entry 0", 0x200L));
    }

    @Test
    void refusesL1EntryPastEndOfFile() throws IOException {
        Path img = validImage("l1entryeof.qcow2");
        long l1 = getLong(img, OFF_L1_TABLE_OFFSET);
        assertNotEquals(0, getLong(img, l1), "data was written, so L1 entry 0 must be in use");
        putLong(img, l1, 0x7fff0000L);
        assertReadingRefuses(img, List.of("L1 entry 0"), fieldValues("L1 entry 0", 0x7fff0000L));
    }

    @Test
    void refusesUnalignedL1Entry() throws IOException {
        Path img = validImage("l1entryunaligned.qcow2");
        assertEquals(16, getInt(img, OFF_CLUSTER_BITS), "test expects a 64k-cluster image");
        long l1 = getLong(img, OFF_L1_TABLE_OFFSET);
        long entry = getLong(img, l1);
        assertNotEquals(0, entry, "data was written, so L1 entry 0 must be in use");
        long bad = entry + 0x1000;
        putLong(img, l1, bad);
        assertReadingRefuses(img, List.of("L1 entry 0"), fieldValues("L1 entry 0", bad));
    }

    // ---------------------------------------------------------------- backing chains

    @Test
    void refusesBackingFileLoop() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "b.qcow2", "1M");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "-u", "a.qcow2", "1M");
        Qemu.img(dir, "rebase", "-u", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2");
        Path a = dir.resolve("a.qcow2");
        Expect loop = new Expect(List.of(abs(a), abs(dir.resolve("b.qcow2"))), List.of("loop"), List.of());
        assertAll(
                () -> assertRefusal(cmd("map", List.of(), "--output=json", abs(a)), loop),
                () -> assertConvertRefuses(a, List.of(), loop),
                () -> assertInfoLikeQemuImg(a));
    }

    @Test
    void refusesMissingBackingFile() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", "missing.qcow2", "-F", "qcow2", "-u", "top.qcow2", "1M");
        Path top = dir.resolve("top.qcow2");
        // The line must name the missing file (naming the overlay too is welcome but not required).
        Expect missing = new Expect(List.of(abs(dir.resolve("missing.qcow2"))), List.of(), List.of());
        assertAll(
                () -> assertRefusal(cmd("map", List.of(), "--output=json", abs(top)), missing),
                () -> assertConvertRefuses(top, List.of(), missing),
                () -> assertRefusal(cmd("info", List.of(), "--backing-chain", abs(top)), missing),
                () -> assertInfoLikeQemuImg(top));
    }

    /**
     * qemu-img info opens the image alone (BDRV_O_NO_BACKING): a backing file missing or looping does not stop it.
     * With --backing-chain it follows the names and stops at the first one seen twice, with its own message
     * (iotest 043).
     */
    private void assertInfoLikeQemuImg(Path img) {
        for (List<String> opts : List.<List<String>>of(List.of(), List.of("--output=json"))) {
            String[] args = cmd("info", opts, abs(img));
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", args));
            Qemu.Result got = qcow4j(args);
            assertEquals(0, want.exit(), want.err());
            assertEquals(0, got.exit(), () -> describe(args, got));
            assertEquals(want.out(), got.out());
        }
        Qemu.Result want = Qemu.run(dir, "qemu-img", "info", "--backing-chain", abs(img));
        if (want.err().contains("creates an infinite loop")) {
            Qemu.Result got = qcow4j("info", "--backing-chain", abs(img));
            assertEquals(1, got.exit());
            assertEquals("", got.out());
            assertEquals(want.err().replace("qemu-img: ", "qcow4j: "), got.err());
        }
    }

    // ---------------------------------------------------------------- data

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"zlib", "zstd"})
    void refusesGarbageInCompressedCluster(String compression) throws IOException {
        Path raw = dir.resolve("text.raw");
        StringBuilder text = new StringBuilder();
        for (int i = 0; text.length() < 256 * 1024; i++) {
            text.append("qcow4j compressible line ").append(i % 1000).append('\n');
        }
        Files.write(raw, Arrays.copyOf(text.toString().getBytes(StandardCharsets.US_ASCII), 256 * 1024));
        List<String> cmd = Qemu.list("convert", "-q", "-c", "-f", "raw", "-O", "qcow2");
        if (compression.equals("zstd")) {
            cmd.addAll(List.of("-o", "compression_type=zstd"));
        }
        cmd.addAll(List.of("text.raw", "c.qcow2"));
        Qemu.img(dir, cmd.toArray(String[]::new));
        Files.delete(raw);
        Path img = dir.resolve("c.qcow2");

        int bits = getInt(img, OFF_CLUSTER_BITS);
        long l2 = getLong(img, getLong(img, OFF_L1_TABLE_OFFSET)) & L1_OFFSET_MASK;
        assertNotEquals(0, l2, "L1 entry 0 must point to an L2 table");
        long entry = getLong(img, l2);
        assertTrue((entry & L2_COMPRESSED) != 0, () -> "guest cluster 0 must be compressed: " + Long.toHexString(entry));
        int shift = 62 - (bits - 8);
        long offset = entry & ((1L << shift) - 1);
        long sectors = ((entry >>> shift) & ((1L << (bits - 8)) - 1)) + 1;
        long length = Math.min(sectors * 512 - (offset & 511), Files.size(img) - offset);
        byte[] garbage = new byte[(int) length];
        new Random(0x5eed).nextBytes(garbage);
        put(img, offset, ByteBuffer.wrap(garbage));

        String abs = abs(img);
        Qemu.Result info = qcow4j("info", abs);
        assertEquals(0, info.exit(), () -> "info reads no data and must still succeed\n" + describe(info));
        assertConvertRefuses(img, List.of(), new Expect(List.of(abs), List.of("compressed cluster"), List.of()));
    }

    @Test
    void luksEncryptedImageWithoutASecretIsReadOnlyForItsMetadata() throws IOException {
        Path img = dir.resolve("enc.qcow2");
        Encrypted.create(dir, img, "", "1M");
        assertReadingRefuses(img, List.of("encrypt.key-secret"), List.of());
    }

    @Test
    void refusesExtendedL2EntryWithAllocAndZeroBitsForOneSubcluster() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "x.qcow2", "1M");
        Qemu.io(dir, "x.qcow2", "write -P 0xcd 0 2k");
        Path img = dir.resolve("x.qcow2");
        long l2 = getLong(img, getLong(img, OFF_L1_TABLE_OFFSET)) & L1_OFFSET_MASK;
        assertNotEquals(0, l2, "L1 entry 0 must point to an L2 table");
        long bitmap = getLong(img, l2 + 8);
        assertEquals(1L, bitmap & 0xffff_ffffL, "subcluster 0 alone must be allocated");
        putLong(img, l2 + 8, bitmap | 1L << 32);
        assertReadingRefuses(img, List.of("L2 entry"), List.of());
    }

    // ---------------------------------------------------------------- resources

    /**
     * The huge l1_size and the absurd sizes ask for gigabytes; refusing them must not allocate any of it. Counted
     * per thread (allocation, not heap occupancy, so GC timing cannot make this flaky), 20 rounds of all commands.
     */
    @Test
    void hostileSizesAreRefusedWithoutAllocating() throws IOException {
        assumeTrue(allocationCounter() != null, "JVM does not count per-thread allocation");
        Path l1 = validImage("l1size.qcow2");
        putInt(l1, OFF_L1_SIZE, 0x10000000);
        Path huge = validImage("huge.qcow2");
        putLong(huge, OFF_SIZE, 1L << 62);
        Path minus = validImage("minus.qcow2");
        putLong(minus, OFF_SIZE, -1L);
        String out = abs(dir.resolve("out.raw"));
        Set<String> before = listing();
        long start = System.nanoTime();
        long worst = 0;
        for (int round = 0; round < 20; round++) {
            for (Path img : List.of(l1, huge, minus)) {
                for (String[] args : List.of(new String[] {"info", abs(img)},
                        new String[] {"map", "--output=json", abs(img)},
                        new String[] {"convert", "-O", "raw", abs(img), out})) {
                    Run run = runTimed(args);
                    assertEquals(1, run.result().exit(), () -> describe(args, run.result()));
                    assertTrue(run.allocated() < ALLOCATION_BUDGET, () -> String.join(" ", args) + " allocated "
                            + run.allocated() + " bytes");
                    worst = Math.max(worst, run.allocated());
                }
            }
        }
        long millis = (System.nanoTime() - start) / 1_000_000;
        assertTrue(millis < 20_000, "180 refusals took " + millis + " ms");
        assertEquals(before, listing(), "convert left files behind");
        System.out.println("hostile sizes: worst allocation per command " + worst + " bytes, 180 runs in " + millis + " ms");
    }

    // ================================================================ helpers

    /** A fresh 1 MiB v3 image with 64 KiB clusters and data in guest cluster 0 (so L1/L2 entry 0 are in use). */
    private Path validImage(String name) {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", name, "1M");
        Qemu.io(dir, name, "write -P 0xab 0 64k");
        return dir.resolve(name);
    }

    /** info, map --output=json and convert -O raw must all refuse the image. */
    private void assertAllCommandsRefuse(Path img, List<String> opts, List<String> mustContain, List<String> anyOf) {
        assertAllCommandsRefuse(img, opts, new Expect(List.of(abs(img)), mustContain, anyOf));
    }

    private void assertAllCommandsRefuse(Path img, List<String> opts, Expect expect) {
        // All three run and report, so one failure does not hide how the others behave.
        assertAll(
                () -> assertRefusal(cmd("info", opts, abs(img)), expect),
                () -> assertRefusal(cmd("map", opts, "--output=json", abs(img)), expect),
                () -> assertConvertRefuses(img, opts, expect));
    }

    /**
     * map and convert must refuse an image whose damage is found when reading; info may accept it (qemu-img
     * info does: it reads no tables) but if it refuses, it must refuse cleanly.
     */
    private void assertReadingRefuses(Path img, List<String> mustContain, List<String> anyOf) {
        Expect expect = new Expect(List.of(abs(img)), mustContain, anyOf);
        String[] info = {"info", abs(img)};
        Qemu.Result r = qcow4j(info);
        assertAll(
                () -> {
                    if (r.exit() != 0) {
                        assertRefusal(info, r, expect);
                    }
                },
                () -> assertRefusal(cmd("map", List.of(), "--output=json", abs(img)), expect),
                () -> assertConvertRefuses(img, List.of(), expect));
    }

    private void assertConvertRefuses(Path img, List<String> opts, Expect expect) {
        Path out = img.resolveSibling("converted.raw");
        Set<String> before = listing();
        assertRefusal(cmd("convert", opts, "-O", "raw", abs(img), abs(out)), expect);
        assertFalse(Files.exists(out), "convert left its output " + out + " behind");
        assertEquals(before, listing(), "convert left files behind in " + dir);
    }

    private static void assertRefusal(String[] args, Expect expect) {
        assertRefusal(args, qcow4j(args), expect);
    }

    private static void assertRefusal(String[] args, Qemu.Result r, Expect expect) {
        String what = describe(args, r);
        assertEquals(1, r.exit(), () -> "exit code\n" + what);
        String err = r.err();
        assertFalse(err.contains("\tat ") || err.contains("Exception"), () -> "stack trace or exception name\n" + what);
        assertTrue(err.endsWith("\n") && err.indexOf('\n') == err.length() - 1, () -> "not exactly one line\n" + what);
        assertTrue(err.startsWith("qcow4j: "), () -> "prefix\n" + what);
        assertTrue(expect.files().stream().anyMatch(err::contains), () -> "does not name " + expect.files() + "\n" + what);
        for (String s : expect.mustContain()) {
            assertTrue(err.contains(s), () -> "missing '" + s + "'\n" + what);
        }
        if (!expect.anyOf().isEmpty()) {
            assertTrue(expect.anyOf().stream().anyMatch(err::contains),
                    () -> "missing the value, one of " + expect.anyOf() + "\n" + what);
        }
    }

    /** "field = value" with the value as signed or unsigned decimal or hex: any of these is acceptable. */
    private static List<String> fieldValues(String field, long v) {
        return values(v).stream().map(s -> field + " = " + s).toList();
    }

    private static List<String> values(long v) {
        return List.of(Long.toString(v), Long.toUnsignedString(v), "0x" + Long.toHexString(v));
    }

    private static String[] cmd(String command, List<String> opts, String... rest) {
        List<String> all = new ArrayList<>();
        all.add(command);
        all.addAll(opts);
        all.addAll(List.of(rest));
        return all.toArray(String[]::new);
    }

    private static String describe(String[] args, Qemu.Result r) {
        return "qcow4j " + String.join(" ", args) + "\n" + describe(r);
    }

    private static String describe(Qemu.Result r) {
        String out = r.out().length() > 500 ? r.out().substring(0, 500) + "..." : r.out();
        return "exit: " + r.exit() + "\nstdout: " + out + "\nstderr: " + r.err();
    }

    private static String abs(Path p) {
        return p.toAbsolutePath().toString();
    }

    private Set<String> listing() {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).collect(TreeSet::new, Set::add, Set::addAll);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    // ---------------------------------------------------------------- running with a time limit

    private record Run(Qemu.Result result, long allocated) {
    }

    private static Qemu.Result qcow4j(String... args) {
        return runTimed(args).result();
    }

    /**
     * Runs the CLI in-process on its own thread and fails if it takes longer than {@link #LIMIT}. Returns the
     * bytes the command's thread allocated, or -1 if the JVM does not count them.
     */
    private static Run runTimed(String... args) {
        AtomicReference<Qemu.Result> result = new AtomicReference<>();
        AtomicReference<Throwable> thrown = new AtomicReference<>();
        AtomicLong allocated = new AtomicLong(-1);
        com.sun.management.ThreadMXBean counter = allocationCounter();
        Thread t = new Thread(() -> {
            long before = counter != null ? counter.getCurrentThreadAllocatedBytes() : 0;
            try {
                result.set(Qemu.qcow4j(args));
            } catch (Throwable e) {
                thrown.set(e);
            }
            if (counter != null) {
                allocated.set(counter.getCurrentThreadAllocatedBytes() - before);
            }
        }, "qcow4j " + String.join(" ", args));
        t.setDaemon(true);
        long start = System.nanoTime();
        t.start();
        try {
            t.join(LIMIT.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
        if (t.isAlive()) {
            stop(t);
            fail("qcow4j " + String.join(" ", args) + " did not finish within " + LIMIT.toMillis() + " ms");
        }
        long millis = (System.nanoTime() - start) / 1_000_000;
        if (thrown.get() != null) {
            throw new AssertionError("qcow4j " + String.join(" ", args) + " threw out of Main.run", thrown.get());
        }
        assertTrue(millis <= LIMIT.toMillis(), "qcow4j " + String.join(" ", args) + " took " + millis + " ms");
        return new Run(result.get(), allocated.get());
    }

    /**
     * A runaway command (e.g. an endless map over an absurd size) would keep a core busy for the rest of the run
     * and make the other tests' time limits flaky, so it is stopped, where the JVM still allows that.
     */
    @SuppressWarnings({"deprecation", "removal"})
    private static void stop(Thread t) {
        t.interrupt();
        try {
            t.stop();
        } catch (UnsupportedOperationException | SecurityException e) {
            // Newer JVMs: the daemon thread is abandoned.
        }
    }

    private static com.sun.management.ThreadMXBean allocationCounter() {
        if (ManagementFactory.getThreadMXBean() instanceof com.sun.management.ThreadMXBean mx
                && mx.isThreadAllocatedMemorySupported()) {
            if (!mx.isThreadAllocatedMemoryEnabled()) {
                mx.setThreadAllocatedMemoryEnabled(true);
            }
            return mx;
        }
        return null;
    }

    // ---------------------------------------------------------------- patching bytes
}
