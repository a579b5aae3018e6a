package org.qcow4j.cli;

import static org.qcow4j.cli.ImageBytes.get;
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

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.qcow4j.CheckResult;
import org.qcow4j.Images;
import org.qcow4j.format.Header;

/**
 * {@code check} against {@code qemu-img check}: the same exit code, the same JSON (field by field, then layout), the
 * same human report and the same diagnostic lines on stderr, on every image variant QEMU writes, on images written
 * by qcow4j's own {@code convert -O qcow2}, and on images damaged by patching bytes (leaks, refcounts too low,
 * wrong COPIED flags, tables overlapping, entries past the end of the file, bad bitmaps, overflowing refcounts...).
 */
class CheckTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    // Header offsets (format/Header.java's table).
    private static final int OFF_CLUSTER_BITS = 20;
    private static final int OFF_SIZE = 24;
    private static final int OFF_L1_SIZE = 36;
    private static final int OFF_L1_TABLE_OFFSET = 40;
    private static final int OFF_REFCOUNT_TABLE_OFFSET = 48;
    private static final int OFF_REFCOUNT_TABLE_CLUSTERS = 56;
    private static final int OFF_SNAPSHOTS_OFFSET = 64;
    private static final int OFF_INCOMPATIBLE_FEATURES = 72;
    private static final int OFF_REFCOUNT_ORDER = 96;

    private static final long OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    private static final long COPIED = 1L << 63;
    private static final long COMPRESSED = 1L << 62;

    @TempDir
    static Path root;

    @TempDir
    Path dir;

    // ================================================================ clean images

    @TestFactory
    Stream<DynamicTest> everyVariantQemuWritesChecksLikeQemu() {
        return CompatibilityTest.variants().stream().map(v -> DynamicTest.dynamicTest(v.name(), () -> {
            Path image = Path.of(v.build(root.resolve("variants")));
            int exit = assertChecksLikeQemu(image);
            if (!v.name().equals("lazy-refcounts-dirty") && !v.name().equals("e2image-Q")) {
                // A dirty lazy-refcounts image may leak, e2image -Q leaks; everything else is clean (raw has no check).
                assertEquals(v.image().endsWith(".raw") ? CheckCommand.NOT_SUPPORTED : 0, exit, "exit code");
            }
        }));
    }

    /** Images written by qcow4j's convert -O qcow2 (plain, -c zlib, -c zstd, 512 B clusters, 1-bit refcounts). */
    @TestFactory
    Stream<DynamicTest> imagesWrittenByQcow4jConvertCheckLikeQemu() {
        List<String> names = List.of("v3-64k-mixed", "internal-snapshots", "chain-3-deep-zero-hides-backing", "extended-l2");
        List<List<String>> modes = List.of(List.of(), List.of("-c"), List.of("-c", "-o", "compression_type=zstd"),
                List.of("-o", "cluster_size=512,refcount_bits=1"), List.of("-c", "-o", "cluster_size=4k,refcount_bits=64"));
        return CompatibilityTest.variants().stream().filter(v -> names.contains(v.name())).flatMap(v -> modes.stream().map(mode ->
                DynamicTest.dynamicTest(v.name() + " " + String.join(" ", mode), () -> {
                    Path source = Path.of(v.build(root.resolve("converted-" + modes.indexOf(mode))));
                    Path out = source.resolveSibling("out.qcow2");
                    List<String> args = Qemu.list("convert", "-O", "qcow2");
                    args.addAll(mode);
                    args.addAll(List.of(source.toString(), out.toString()));
                    Qemu.qcow4j(args.toArray(String[]::new)).ok();
                    assertEquals(0, assertChecksLikeQemu(out), "exit code");
                })));
    }

    @Test
    void zeroFlagInVersion2ImagePassesAsInQemu() throws IOException {
        Path img = image("v2.qcow2", "-o", "compat=0.10", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 64k");
        long l2 = l2TableOf(img, 0);
        putLong(img, l2, getLong(img, l2) | 1); // the zero flag, which v2 does not have
        assertChecksLikeQemu(img);
    }

    /** 1 of 800 clusters is 0.125%: glibc prints the tie "0.12" (to even), Java's %.2f would print "0.13". */
    @Test
    void percentagesRoundLikeGlibc() throws IOException {
        Path img = imageWithData("pct.qcow2", "50M", "write -P 1 0 64k");
        assertEquals(0, assertChecksLikeQemu(img));
        assertTrue(check(img.toString()).out().contains("1/800 = 0.12% allocated"));
    }

    @Test
    void coreApiCollectsTheDiagnosticsQemuPrints() throws IOException {
        Path img = imageWithData("api.qcow2", "1M", "write -P 1 0 192k");
        long l2 = l2TableOf(img, 0);
        putLong(img, l2 + 8, getLong(img, l2 + 8) & ~COPIED);
        setRefcount(img, 2, 0);
        CheckResult r = Images.check(img);
        Qemu.Result q = qemuCheck(img, "--output=json", img.toString());
        assertEquals(diagnostics(q.err()), r.diagnostics());
        assertEquals(JSON.readTree(q.out()).get("corruptions").asLong(), r.corruptions());
        assertEquals(0, r.leaks());
        assertFalse(r.isClean());
    }

    // ================================================================ leaks (exit 3)

    @Test
    void unusedClusterInsideTheFileWithRefcountOneIsALeak() throws IOException {
        Path img = imageWithData("leak.qcow2", "1M", "write -P 1 0 192k", "discard 64k 64k");
        assertEquals(0, getLong(img, l2TableOf(img, 0) + 8) & OFFSET_MASK, "the discarded cluster is unmapped");
        long cluster = findCluster(img, 0); // a cluster of the file with refcount 0
        setRefcount(img, cluster, 1);
        assertEquals(CheckCommand.LEAKS, assertChecksLikeQemu(img));
    }

    @ParameterizedTest(name = "refcount_bits={0}")
    @ValueSource(ints = {1, 2, 4, 8, 16, 32, 64})
    void appendedClusterWithARefcountIsALeak(int bits) throws IOException {
        Path img = image("append.qcow2", "-o", "refcount_bits=" + bits + ",cluster_size=4k", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 12k");
        long cluster = Files.size(img) / 4096;
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(4096), cluster * 4096);
        }
        setRefcount(img, cluster, 1);
        assertEquals(CheckCommand.LEAKS, assertChecksLikeQemu(img));
    }

    @Test
    void hugeSixtyFourBitRefcountIsPrintedUnsigned() throws IOException {
        Path img = image("r64.qcow2", "-o", "refcount_bits=64", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 64k");
        setRefcount(img, 0, 0x8000_0000_0000_0005L);
        assertChecksLikeQemu(img);
    }

    // ================================================================ corruptions (exit 2)

    @Test
    void usedClusterWithRefcountZeroIsACorruption() throws IOException {
        Path img = imageWithData("low.qcow2", "1M", "write -P 1 0 128k");
        long data = getLong(img, l2TableOf(img, 0)) & OFFSET_MASK;
        setRefcount(img, data >> 16, 0);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void usedClusterWithRefcountTwoLeaksAndBreaksCopied() throws IOException {
        Path img = imageWithData("high.qcow2", "1M", "write -P 1 0 128k");
        long data = getLong(img, l2TableOf(img, 0)) & OFFSET_MASK;
        setRefcount(img, data >> 16, 2);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void copiedFlagClearedInL2AndL1Entries() throws IOException {
        Path img = imageWithData("copied.qcow2", "1M", "write -P 1 0 128k");
        long l2 = l2TableOf(img, 0);
        putLong(img, l2, getLong(img, l2) & ~COPIED);
        long l1 = getLong(img, OFF_L1_TABLE_OFFSET);
        putLong(img, l1, getLong(img, l1) & ~COPIED);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void copiedFlagOnClusterSharedWithASnapshot() throws IOException {
        Path img = imageWithData("shared.qcow2", "1M", "write -P 1 0 128k");
        Qemu.img(dir, "snapshot", "-c", "snap", img.toString());
        long l2 = l2TableOf(img, 0);
        putLong(img, l2, getLong(img, l2) | COPIED);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void l2TableOverlappingTheRefcountTable() throws IOException {
        Path img = imageWithData("overlap.qcow2", "1M", "write -P 1 0 128k");
        long l1 = getLong(img, OFF_L1_TABLE_OFFSET);
        putLong(img, l1, getLong(img, OFF_REFCOUNT_TABLE_OFFSET) | COPIED);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void l2EntryPastTheEndOfTheFile() throws IOException {
        Path img = imageWithData("l2eof.qcow2", "1M", "write -P 1 0 128k");
        putLong(img, l2TableOf(img, 0) + 8, COPIED | 0x7fff0000L);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void l1EntryPastTheEndOfTheFile() throws IOException {
        Path img = imageWithData("l1eof.qcow2", "1M", "write -P 1 0 128k");
        putLong(img, getLong(img, OFF_L1_TABLE_OFFSET), COPIED | 0x7fff0000L);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void reservedBitsInL1AndL2Entries() throws IOException {
        Path img = imageWithData("reserved.qcow2", "1M", "write -P 1 0 128k");
        long l1 = getLong(img, OFF_L1_TABLE_OFFSET);
        long l2 = l2TableOf(img, 0);
        putLong(img, l2, getLong(img, l2) | 0x0100_0000_0000_0002L);
        putLong(img, l1, getLong(img, l1) | 0x0200_0000_0000_0001L);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void unalignedL2TableAndDataAndPreallocatedOffsets() throws IOException {
        Path img = imageWithData("unaligned.qcow2", "4M", "write -P 1 0 128k", "write -z 128k 64k", "write -P 2 2M 64k");
        long l2 = l2TableOf(img, 0);
        putLong(img, l2, getLong(img, l2) + 0x200);
        putLong(img, l2 + 16, (getLong(img, l2 + 8) + 0x400) | 1); // a preallocated zero cluster
        long l1 = getLong(img, OFF_L1_TABLE_OFFSET);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
        putLong(img, l1, getLong(img, l1) + 0x1000);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void compressedEntryWithCopiedFlag() throws IOException {
        Path raw = dir.resolve("text.raw");
        Files.write(raw, "qcow4j compressible\n".repeat(20000).getBytes());
        Qemu.img(dir, "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", raw.toString(), "c.qcow2");
        Path img = dir.resolve("c.qcow2");
        long l2 = l2TableOf(img, 0);
        assertTrue((getLong(img, l2) & COMPRESSED) != 0, "guest cluster 0 is compressed");
        putLong(img, l2, getLong(img, l2) | COPIED);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void invalidExtendedL2Bitmaps() throws IOException {
        Path img = image("x.qcow2", "-o", "extended_l2=on", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 2k", "write -P 2 64k 64k");
        long l2 = l2TableOf(img, 0);
        putLong(img, l2 + 8, getLong(img, l2 + 8) | 1L << 32);     // allocated and zero
        putLong(img, l2 + 16 * 5 + 8, 3);                          // unallocated with allocation bits
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void refcountOverflowWithOneBitRefcounts() throws IOException {
        Path img = image("ovf.qcow2", "-o", "refcount_bits=1,cluster_size=4k", "16M");
        Qemu.io(dir, img.toString(), "write -P 1 0 4k");
        long l1 = getLong(img, OFF_L1_TABLE_OFFSET);
        putLong(img, l1 + 8, getLong(img, l1)); // a second L1 entry sharing the L2 table and its data
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void refcountTableEntryWithReservedBitsAndBlockOutsideTheImage() throws IOException {
        Path img = image("rt.qcow2", "-o", "cluster_size=512", "16M");
        Qemu.io(dir, img.toString(), "write -P 1 0 300k");
        long rt = getLong(img, OFF_REFCOUNT_TABLE_OFFSET);
        assertNotEquals(0, getLong(img, rt + 8), "a second refcount block is in use");
        putLong(img, rt + 16, 0x7000_0000L);                     // a block far past the end of the file
        putLong(img, rt + 8, getLong(img, rt + 8) | 0x100);     // reserved bits
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    @Test
    void snapshotWithUnalignedL1Table() throws IOException {
        Path img = imageWithData("snap.qcow2", "1M", "write -P 1 0 128k");
        Qemu.img(dir, "snapshot", "-c", "one", img.toString());
        Qemu.img(dir, "snapshot", "-c", "two", img.toString());
        long table = getLong(img, OFF_SNAPSHOTS_OFFSET);
        putLong(img, table, getLong(img, table) + 0x200);
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    /**
     * QEMU measures the file in whole 512-byte sectors: a snapshot table ending less than a cluster past the
     * sector-rounded end of the file is referenced (and is a refcount error), not "past the end of the file".
     */
    @Test
    void fileLengthCountsInWholeSectorsAsInQemu() throws IOException {
        Path img = image("sectors.qcow2", "-o", "cluster_size=4k", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 64k");
        Qemu.img(dir, "snapshot", "-c", "one", img.toString());
        long length = Files.size(img);
        long table = getLong(img, OFF_SNAPSHOTS_OFFSET);
        int idSize = get(img, table + 12, 2).getShort() & 0xffff;
        int nameSize = get(img, table + 14, 2).getShort() & 0xffff;
        long tableEnd = table + 40 + getInt(img, table + 36) + idSize + nameSize;
        assertEquals(length, tableEnd, "the snapshot table ends the file");
        long sectorEnd = (length + 511) & ~511L;
        assertTrue(sectorEnd > length, "the file ends inside a sector");
        // Let the name run past the end of the file: the table then ends between (length + cluster) and
        // (sector-rounded length + cluster).
        long newEnd = length + 4096 + (sectorEnd - length) / 2;
        put(img, table + 14, ByteBuffer.allocate(2).putShort(0, (short) (nameSize + newEnd - tableEnd)));
        assertEquals(CheckCommand.CORRUPT, assertChecksLikeQemu(img));
    }

    // ================================================================ check errors and refusals (exit 1, 63)

    @Test
    void unalignedRefcountBlockIsACheckErrorWithAReport() throws IOException {
        Path img = imageWithData("rb.qcow2", "1M", "write -P 1 0 128k");
        long rt = getLong(img, OFF_REFCOUNT_TABLE_OFFSET);
        putLong(img, rt, getLong(img, rt) + 0x1000);
        assertEquals(1, assertChecksLikeQemu(img));
        Qemu.Result ours = check(img.toString());
        assertTrue(ours.out().contains("internal errors have occurred during the check."), ours.out());
        assertTrue(ours.err().endsWith("qcow4j: " + img + ": Check failed\n"), ours.err());
    }

    @Test
    void rawImagesHaveNoCheck() throws IOException {
        Path raw = dir.resolve("r.raw");
        Files.write(raw, new byte[4096]);
        Path img = imageWithData("q.qcow2", "1M", "write -P 1 0 4k");
        for (String[] args : List.of(new String[] {raw.toString()}, new String[] {"-f", "raw", img.toString()})) {
            Qemu.Result q = qemuCheck(Path.of(args[args.length - 1]), args);
            Qemu.Result ours = check(args);
            assertEquals(CheckCommand.NOT_SUPPORTED, q.exit());
            assertEquals(q.exit(), ours.exit());
            assertEquals("", ours.out());
            assertTrue(ours.err().contains("This image format does not support checks"), ours.err());
        }
    }

    @Test
    void missingBackingFileFailsToOpenAsInQemu() {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", "missing.qcow2", "-F", "qcow2", "-u", "top.qcow2", "1M");
        Path top = dir.resolve("top.qcow2");
        assertEquals(1, qemuCheck(top).exit());
        assertRefusedCleanly(top.toString(), check(top.toString()), dir.resolve("missing.qcow2").toString());
    }

    /** The malformed-image classes of BadImageTest: one clean line, exit 1, quickly, as qemu-img exits 1. */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"magic", "cluster_bits", "l1_size", "l1_table_offset", "refcount_table_offset",
                            "refcount_table_clusters", "incompatible_features", "refcount_order", "size", "truncated"})
    void malformedImagesAreRefusedCleanly(String field) throws IOException {
        Path img = imageWithData("bad.qcow2", "1M", "write -P 1 0 64k");
        switch (field) {
            case "magic" -> putLong(img, 0, 0x1234_5678_0000_0003L);
            case "cluster_bits" -> putInt(img, OFF_CLUSTER_BITS, 22);
            case "l1_size" -> putInt(img, OFF_L1_SIZE, 0x1000_0000);
            case "l1_table_offset" -> putLong(img, OFF_L1_TABLE_OFFSET, getLong(img, OFF_L1_TABLE_OFFSET) + 0x200);
            case "refcount_table_offset" -> putLong(img, OFF_REFCOUNT_TABLE_OFFSET, getLong(img, OFF_REFCOUNT_TABLE_OFFSET) + 8);
            case "refcount_table_clusters" -> putInt(img, OFF_REFCOUNT_TABLE_CLUSTERS, 0x10_0000);
            case "incompatible_features" -> putLong(img, OFF_INCOMPATIBLE_FEATURES, 1L << 20);
            case "refcount_order" -> putInt(img, OFF_REFCOUNT_ORDER, 7);
            case "size" -> putLong(img, OFF_SIZE, 1L << 62);
            case "truncated" -> {
                byte[] head = Arrays.copyOf(Files.readAllBytes(img), 50);
                Files.write(img, head);
            }
            default -> throw new AssertionError(field);
        }
        String[] args = field.equals("magic") ? new String[] {"-f", "qcow2", img.toString()} : new String[] {img.toString()};
        assertEquals(1, qemuCheck(img, args).exit(), "qemu-img check exit code");
        long start = System.nanoTime();
        Qemu.Result ours = check(args);
        long millis = (System.nanoTime() - start) / 1_000_000;
        assertRefusedCleanly(img.toString(), ours, img.toString());
        assertTrue(millis < 2000, "took " + millis + " ms");
    }

    /**
     * A known difference: QEMU opens an image whose refcount table lies past the end of the file (reading zeros)
     * and reports every cluster's refcount as too low (exit 2); qcow4j refuses such a header, as its other
     * commands do (exit 1). Both call the image broken.
     */
    @Test
    void refcountTablePastTheEndOfTheFileIsRefused() throws IOException {
        Path img = imageWithData("rteof.qcow2", "1M", "write -P 1 0 64k");
        putLong(img, OFF_REFCOUNT_TABLE_OFFSET, 0x7fff_0000L);
        assertEquals(CheckCommand.CORRUPT, qemuCheck(img).exit());
        assertRefusedCleanly(img.toString(), check(img.toString()), "refcount_table_offset");
    }

    /** QEMU checks at most INT_MAX clusters ("Check failed: File too large"); nothing is allocated for more. */
    @Test
    void fileOfMoreThanIntMaxClustersIsRefusedAsByQemu() throws IOException {
        Path img = image("huge.qcow2", "-o", "cluster_size=512", "1M");
        Qemu.io(dir, img.toString(), "write -P 1 0 4k");
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(1), (1L << 41) - 1); // 2 TiB, sparse: 2^32 clusters of 512 bytes
        }
        Qemu.Result q = qemuCheck(img);
        assertEquals(1, q.exit());
        assertTrue(q.err().contains("File too large"), q.err());
        Run run = timed(img.toString());
        assertRefusedCleanly(img.toString(), run.result(), "File too large");
        assertTrue(run.allocated() < (16L << 20), "allocated " + run.allocated() + " bytes");
    }

    /**
     * A 256 GiB sparse file of 64 KiB clusters: 4 Mi clusters, so the computed refcounts take 8 MiB at 16 bits, and
     * the clusters past the refcount table's blocks read as 0 without any I/O. Same report as qemu-img, quickly.
     */
    @Test
    void hugeSparseFileIsCheckedQuicklyInLittleMemory() throws IOException {
        Path img = imageWithData("sparse.qcow2", "1M", "write -P 1 0 64k");
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(1), (256L << 30) - 1);
        }
        assertEquals(0, assertChecksLikeQemu(img));
        Run run = timed(img.toString());
        assertEquals(0, run.result().exit(), run.result().err());
        assertTrue(run.allocated() < (64L << 20), "allocated " + run.allocated() + " bytes");
        assertTrue(run.millis() < 5000, "took " + run.millis() + " ms");
    }

    @Test
    void quietPrintsNoReportButKeepsTheExitCode() throws IOException {
        Path img = imageWithData("quiet.qcow2", "1M", "write -P 1 0 128k");
        setRefcount(img, (getLong(img, l2TableOf(img, 0)) & OFFSET_MASK) >> 16, 0);
        Qemu.Result q = qemuCheck(img, "-q", img.toString());
        Qemu.Result ours = check("-q", img.toString());
        assertEquals(CheckCommand.CORRUPT, q.exit());
        assertEquals(q.exit(), ours.exit());
        assertEquals("", ours.out());
        assertEquals(diagnostics(q.err()), diagnostics(ours.err()));
    }

    @Test
    void usageErrors() throws IOException {
        Path img = imageWithData("u.qcow2", "1M", "write -P 1 0 4k");
        assertEquals(1, check().exit());
        assertEquals(1, check(img.toString(), img.toString()).exit());
        assertEquals(1, check("--output=xml", img.toString()).exit());
        Qemu.Result repair = check("-r", "some", img.toString());
        assertEquals(1, repair.exit());
        assertTrue(repair.err().contains("Unknown option value for -r (expecting 'leaks' or 'all'): some"), repair.err());
    }

    // ================================================================ comparing with qemu-img

    /**
     * Runs qemu-img check and qcow4j check on {@code image}, JSON and human, and asserts the same exit code, JSON
     * (fields, then layout), report and diagnostic lines. Returns the exit code.
     */
    private static int assertChecksLikeQemu(Path image) throws IOException {
        String abs = image.toAbsolutePath().toString();
        Qemu.Result qJson = qemuCheck(image, "--output=json", abs);
        Qemu.Result ours = check("--output=json", abs);
        String what = "\nqemu-img: exit " + qJson.exit() + "\n" + qJson.out() + qJson.err()
                + "\nqcow4j: exit " + ours.exit() + "\n" + ours.out() + ours.err();
        assertEquals(qJson.exit(), ours.exit(), "exit code" + what);
        if (qJson.out().isEmpty()) {
            assertEquals("", ours.out(), what);
            return qJson.exit(); // QEMU could not open or check the image: no report
        }
        assertAll(
                () -> assertEquals(fields(qJson.out()), fields(ours.out()), "JSON fields" + what),
                () -> assertEquals(qJson.out(), ours.out(), "JSON layout" + what),
                () -> assertEquals(diagnostics(qJson.err()), diagnostics(ours.err()), "diagnostics" + what));

        Qemu.Result qHuman = qemuCheck(image, abs);
        Qemu.Result humanOurs = check(abs);
        assertEquals(qHuman.exit(), humanOurs.exit(), "exit code (human)");
        assertEquals(qHuman.out(), humanOurs.out(), "human report");
        assertEquals(qJson.err().contains("qemu-img: Check failed"), humanOurs.err().contains("Check failed"),
                "'Check failed'" + what);
        return qJson.exit();
    }

    private static TreeMap<String, JsonNode> fields(String json) throws IOException {
        TreeMap<String, JsonNode> m = new TreeMap<>();
        JSON.readTree(json).properties().forEach(e -> m.put(e.getKey(), e.getValue()));
        return m;
    }

    /** The check's findings on stderr: every line but the tool's own final error ("qemu-img: ...", "qcow4j: ..."). */
    private static List<String> diagnostics(String err) {
        return err.lines().filter(l -> !l.startsWith("qemu-img: ") && !l.startsWith("qcow4j: ")).toList();
    }

    private static void assertRefusedCleanly(String image, Qemu.Result r, String named) {
        String what = "exit " + r.exit() + "\nstdout: " + r.out() + "\nstderr: " + r.err();
        assertEquals(1, r.exit(), what);
        assertEquals("", r.out(), what);
        assertTrue(r.err().startsWith("qcow4j: ") && r.err().indexOf('\n') == r.err().length() - 1, "one line\n" + what);
        assertFalse(r.err().contains("Exception") || r.err().contains("\tat "), "stack trace\n" + what);
        assertTrue(r.err().contains(named), "names " + named + "\n" + what);
    }

    private static Qemu.Result qemuCheck(Path image, String... args) {
        List<String> cmd = Qemu.list("qemu-img", "check");
        cmd.addAll(args.length == 0 ? List.of(image.toAbsolutePath().toString()) : List.of(args));
        return Qemu.run(image.toAbsolutePath().getParent(), cmd.toArray(String[]::new));
    }

    /** qcow4j check, in-process through Main, stderr captured. */
    static Qemu.Result check(String... argv) {
        return Qemu.qcow4j(Qemu.concat("check", argv));
    }

    private record Run(Qemu.Result result, long allocated, long millis) {
    }

    /** {@link #check} with the bytes it allocated (this thread) and the time it took. */
    private static Run timed(String... argv) {
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        mx.setThreadAllocatedMemoryEnabled(true);
        long before = mx.getCurrentThreadAllocatedBytes();
        long start = System.nanoTime();
        Qemu.Result r = check(argv);
        return new Run(r, mx.getCurrentThreadAllocatedBytes() - before, (System.nanoTime() - start) / 1_000_000);
    }

    // ================================================================ making and patching images

    private Path image(String name, String... createArgs) {
        List<String> cmd = Qemu.list("create", "-q", "-f", "qcow2");
        cmd.addAll(Arrays.asList(createArgs).subList(0, createArgs.length - 1));
        cmd.add(name);
        cmd.add(createArgs[createArgs.length - 1]);
        Qemu.img(dir, cmd.toArray(String[]::new));
        return dir.resolve(name).toAbsolutePath();
    }

    /** A v3 image with 64 KiB clusters and 16-bit refcounts, written by qemu-io. */
    private Path imageWithData(String name, String size, String... ioCommands) {
        Path img = image(name, size);
        Qemu.io(dir, img.toString(), ioCommands);
        return img;
    }

    /** The L2 table L1 entry {@code index} points to. */
    static long l2TableOf(Path img, int index) throws IOException {
        long l2 = getLong(img, getLong(img, OFF_L1_TABLE_OFFSET) + 8L * index) & OFFSET_MASK;
        assertNotEquals(0, l2, "L1 entry " + index + " must point to an L2 table");
        return l2;
    }

    static int refcountOrder(Path img) throws IOException {
        return getInt(img, 4) >= 3 ? getInt(img, OFF_REFCOUNT_ORDER) : 4;
    }

    /** The first cluster of the file, after the header, whose stored refcount is {@code value}. */
    private static long findCluster(Path img, long value) throws IOException {
        long clusters = Files.size(img) >> getInt(img, OFF_CLUSTER_BITS);
        for (long c = 1; c < clusters; c++) {
            if (getRefcount(img, c) == value) {
                return c;
            }
        }
        throw new AssertionError("no cluster with refcount " + value);
    }

    static long getRefcount(Path img, long cluster) throws IOException {
        long[] where = refcountLocation(img, cluster);
        int bits = 1 << refcountOrder(img);
        if (bits >= 8) {
            ByteBuffer b = get(img, where[0], bits / 8);
            return switch (bits) {
                case 8 -> b.get() & 0xffL;
                case 16 -> b.getShort() & 0xffffL;
                case 32 -> b.getInt() & 0xffff_ffffL;
                default -> b.getLong();
            };
        }
        return (get(img, where[0], 1).get() >> where[1]) & ((1 << bits) - 1);
    }

    /** Sets a cluster's stored refcount, in any width (sub-byte widths: entry 0 in the low bits of byte 0). */
    static void setRefcount(Path img, long cluster, long value) throws IOException {
        long[] where = refcountLocation(img, cluster);
        int bits = 1 << refcountOrder(img);
        ByteBuffer b = ByteBuffer.allocate(Math.max(1, bits / 8)).order(ByteOrder.BIG_ENDIAN);
        switch (bits) {
            case 8 -> b.put(0, (byte) value);
            case 16 -> b.putShort(0, (short) value);
            case 32 -> b.putInt(0, (int) value);
            case 64 -> b.putLong(0, value);
            default -> {
                int mask = ((1 << bits) - 1) << where[1];
                int old = get(img, where[0], 1).get();
                b.put(0, (byte) ((old & ~mask) | ((int) (value << where[1]) & mask)));
            }
        }
        put(img, where[0], b);
    }

    /** {byte offset in the file, bit shift within the byte} of a cluster's refcount entry. */
    static long[] refcountLocation(Path img, long cluster) throws IOException {
        int clusterBits = getInt(img, OFF_CLUSTER_BITS);
        int order = refcountOrder(img);
        long perBlock = (8L << clusterBits) >> order;
        long block = getLong(img, getLong(img, OFF_REFCOUNT_TABLE_OFFSET) + 8 * (cluster / perBlock)) & OFFSET_MASK;
        assertNotEquals(0, block, "cluster " + cluster + " has a refcount block");
        long bit = (cluster % perBlock) << order;
        return new long[] {block + bit / 8, bit % 8};
    }
}
