package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code qcow4j create} against {@code qemu-img create}: the same bytes where QEMU's layout is deterministic and
 * simple, images QEMU judges clean and usable otherwise, the same "Formatting ..." line, and clean failures.
 *
 * <p>Image and data file names are absolute: both tools take a relative {@code data_file} from their working
 * directory, and the in-process qcow4j's cannot change ({@link DataFileNameTest} covers relative names).
 */
class CreateTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String TRY = "Try 'qcow4j create --help' for more information.";

    /**
     * Option sets where qcow4j must write exactly qemu-img's bytes ({@code NAME} is the image's base name, in a
     * directory given absolutely).
     */
    private static final List<String> IDENTICAL_OPTIONS = List.of("", "cluster_size=512", "cluster_size=2048",
            "cluster_size=4k,refcount_bits=64", "compat=0.10", "cluster_size=512,refcount_bits=1",
            "extended_l2=on,compression_type=zstd,lazy_refcounts=on", "cluster_size=2M", "data_file=NAME.data",
            "data_file=NAME.data,data_file_raw=on", "preallocation=metadata", "extent_size_hint=1M");

    private static final List<String> SIZES = List.of("1G", "0", "1000001", "3M");

    /*
     * Known layouts that differ from qemu-img's (checked by knownDifferentLayoutsAreStillEquivalent instead):
     *
     * - cluster_size=512,refcount_bits=64 at 1G: 9 refcount blocks of 64 entries are needed (header, refcount
     *   table, refcount block, 512 L1 clusters, then 8 more refcount blocks). qemu-img puts the block of the last
     *   range (8, which covers the refcount blocks themselves) first: refcount table entries 1..8 = clusters 515,
     *   517..522, 516; qcow4j puts them in range order, 515..522. So the refcount table entries 2..8 differ (one byte
     *   each, in file bytes 528..583), and so do clusters 516 and 522: the partly used block of range 8 and the full
     *   block of range 7 trade places (blocks 2..6 are all ones either way). At 0, 1000001 and 3M the files are
     *   identical.
     * - preallocation=full and preallocation=falloc: qemu-img creates the empty image and then grows it with a
     *   preallocating truncate, which moves the refcount table to cluster 4 (header bytes 48..55 =
     *   refcount_table_offset 0x40000) and reuses the freed cluster 1 for the L2 table (L1[0] = 0x...10000); qcow4j
     *   keeps the refcount table in cluster 1 and puts the L2 table in cluster 4. Data clusters are at the same
     *   offsets. At size 0 qemu-img's file is 4 clusters long (cluster 1 left free, refcount 0), qcow4j's 3.
     * - extended_l2=on,preallocation=metadata at 1000001 (a size that ends inside a cluster): qemu-img ends the file
     *   at the last 2 KiB subcluster the virtual size needs (1329152 bytes), qcow4j at the end of the whole last
     *   cluster (1376256 bytes); the first 1329152 bytes are identical. 1G, 0 and 3M are identical.
     */
    private static final List<String> KNOWN_DIFFERENT_OPTIONS = List.of("cluster_size=512,refcount_bits=64",
            "preallocation=full", "preallocation=falloc", "extended_l2=on,preallocation=metadata");

    @TempDir
    Path tmp;

    // ------------------------------------------------------------------ 1. byte-identical to qemu-img create

    static Stream<Arguments> identicalCombinations() {
        return IDENTICAL_OPTIONS.stream().flatMap(o -> SIZES.stream().map(s -> Arguments.of(o, s)));
    }

    @ParameterizedTest(name = "-o ''{0}'' size {1}")
    @MethodSource("identicalCombinations")
    void writesTheSameBytesAsQemuImgCreate(String opts, String size) throws IOException {
        Pair p = createBoth(opts, size);
        assertIdentical(p.qemu(), p.ours());
    }

    /**
     * The external data file too: qemu-img creates it as long as the virtual size (sparse) for data_file, and
     * rounded up to whole clusters for data_file_raw=on.
     */
    @ParameterizedTest(name = "-o ''{0}'' size {1}")
    @MethodSource("dataFileCombinations")
    void createsTheDataFileAsQemuImgDoes(String opts, String size) throws IOException {
        Pair p = createBoth(opts, size);
        Path qemuData = p.qemu().resolveSibling("img.data");
        Path ourData = p.ours().resolveSibling("img.data");
        assertTrue(Files.isRegularFile(ourData), "no data file " + ourData);
        assertEquals(Files.size(qemuData), Files.size(ourData), "data file length");
        assertEquals(-1, Files.mismatch(qemuData, ourData), "data file content");
        // preallocation=falloc and full allocate the data file's blocks (iotest 243), off and metadata do not
        assertEquals(allocatedWhole(p.qemu(), qemuData), allocatedWhole(p.ours(), ourData), "data file allocated");
    }

    private static boolean allocatedWhole(Path image, Path file) throws IOException {
        long blocks = Long.parseLong(Qemu.run(image.getParent(), "stat", "-c", "%b", file.toString()).ok().out().trim());
        return blocks * 512 >= Files.size(file);
    }

    static Stream<Arguments> dataFileCombinations() {
        return Stream.concat(Stream.of("data_file=NAME.data", "data_file=NAME.data,data_file_raw=on")
                .flatMap(o -> SIZES.stream().map(s -> Arguments.of(o, s))),
                Stream.of("metadata", "falloc", "full").map(m -> Arguments.of("data_file=NAME.data,preallocation=" + m, "1M")));
    }

    static Stream<Arguments> knownDifferentCombinations() {
        return KNOWN_DIFFERENT_OPTIONS.stream().flatMap(o -> SIZES.stream()
                // full/falloc at 1G would write 1 GiB per image; the smaller sizes show the layout as well
                .filter(s -> !(s.equals("1G") && (o.contains("full") || o.contains("falloc"))))
                .map(s -> Arguments.of(o, s)));
    }

    /** Where the layout is not qemu-img's: both clean, same content, same mapping, same virtual size. */
    @ParameterizedTest(name = "-o ''{0}'' size {1}")
    @MethodSource("knownDifferentCombinations")
    void knownDifferentLayoutsAreStillEquivalent(String opts, String size) throws IOException {
        Pair p = createBoth(opts, size);
        Path dir = p.ours().getParent();
        assertClean(p.qemu());
        assertClean(p.ours());
        assertSameContent(dir, p.qemu(), p.ours());
        JsonNode qi = info(p.qemu());
        JsonNode oi = info(p.ours());
        assertEquals(qi.path("virtual-size").asLong(), oi.path("virtual-size").asLong(), "virtual-size");
        assertEquals(qi.path("format-specific"), oi.path("format-specific"), "format-specific");
        String qmap = Qemu.img(dir, "map", "--output=json", p.qemu().toString()).out();
        String omap = Qemu.img(dir, "map", "--output=json", p.ours().toString()).out();
        assertEquals(cut(qmap), cut(omap), "qemu-img map");
    }

    // ------------------------------------------------------------------ 2. usable images

    static Stream<Arguments> usableCombinations() {
        List<String> opts = new ArrayList<>(IDENTICAL_OPTIONS);
        opts.addAll(List.of("preallocation=full", "preallocation=falloc", "extended_l2=on,preallocation=metadata",
                "lazy_refcounts=on", "cluster_size=512,refcount_bits=64"));
        return opts.stream().flatMap(o -> SIZES.stream()
                .filter(s -> !(s.equals("1G") && (o.contains("full") || o.contains("falloc"))))
                .map(s -> Arguments.of(o, s)));
    }

    /** Clean, writable and readable by QEMU, still clean after the write, and qemu-img info shows the options. */
    @ParameterizedTest(name = "-o ''{0}'' size {1}")
    @MethodSource("usableCombinations")
    void makesImagesQemuCanCheckWriteAndRead(String opts, String size) throws IOException {
        Path image = tmp.resolve("img.qcow2");
        String o = opts.replace("NAME", tmp.resolve("img").toString());
        ours(o, image, size).ok();
        assertClean(image);
        assertInfoShows(image, o, null, null, TestSizes.parse(size));
        if (TestSizes.parse(size) >= 64 * 1024) {
            qemuIo(image, "write -P 0x5a 0 64k", "read -P 0x5a 0 64k", "read -P 0 64k 64k");
            assertClean(image);
            if (o.startsWith("data_file")) {
                // An external data file holds guest cluster N at its own offset N * cluster_size.
                byte[] head = new byte[64 * 1024];
                try (var in = Files.newInputStream(tmp.resolve("img.data"))) {
                    assertEquals(head.length, in.readNBytes(head, 0, head.length));
                }
                for (byte b : head) {
                    assertEquals((byte) 0x5a, b, "data file content");
                }
            }
        }
    }

    /** Over a backing file: size taken from it when omitted, its data visible, our writes on top. */
    @ParameterizedTest(name = "{0} size ''{1}''")
    @MethodSource("backingCombinations")
    void makesOverlaysQemuCanUse(String extra, String size) throws IOException {
        Path base = tmp.resolve("base.qcow2");
        Qemu.img(tmp, "create", "-q", "-f", "qcow2", base.toString(), "5M");
        qemuIo(base, "write -P 0x11 0 1M");
        Path image = tmp.resolve("img.qcow2");
        List<String> args = Qemu.list("create", "-q", "-f", "qcow2");
        boolean relative = extra.contains("relative");
        args.addAll(List.of("-b", relative ? "base.qcow2" : base.toString(), "-F", "qcow2"));
        String o = extra.replace("relative", "").replace("absolute", "").trim();
        if (!o.isEmpty()) {
            args.addAll(List.of("-o", o));
        }
        args.add(image.toString());
        if (!size.isEmpty()) {
            args.add(size);
        }
        Qemu.qcow4j(args.toArray(String[]::new)).ok();
        assertClean(image);
        long expectedSize = size.isEmpty() ? 5L << 20 : TestSizes.parse(size);
        assertInfoShows(image, o, relative ? "base.qcow2" : base.toString(), "qcow2", expectedSize);
        qemuIo(image, "read -P 0x11 0 1M", "read -P 0 1M 512k");
        qemuIo(image, "write -P 0x5a 0 64k", "read -P 0x5a 0 64k", "read -P 0x11 64k 960k");
        assertClean(image);
        qemuIo(base, "read -P 0x11 0 1M"); // the base is untouched
    }

    static Stream<Arguments> backingCombinations() {
        return Stream.of(Arguments.of("absolute", "3M"), Arguments.of("absolute", ""), Arguments.of("relative", ""),
                Arguments.of("relative", "2000001"), Arguments.of("relative lazy_refcounts=on", ""),
                Arguments.of("relative extended_l2=on,preallocation=metadata", ""),
                Arguments.of("relative cluster_size=4k,refcount_bits=64", "1G"));
    }

    // ------------------------------------------------------------------ 3. the "Formatting ..." line

    static Stream<Arguments> formattingCombinations() {
        return Stream.of("", "cluster_size=4k,refcount_bits=64", "compat=0.10", "compat=1.1,lazy_refcounts=on",
                        "extended_l2=on,compression_type=zstd,lazy_refcounts=on", "preallocation=metadata",
                        "data_file=DIR/img.data", "data_file=DIR/img.data,data_file_raw=on", "preallocation=off", "compat=v3",
                        "extent_size_hint=1M", "extent_size_hint=0,preallocation=metadata")
                .flatMap(o -> Stream.of("1M", "1000001").map(s -> Arguments.of(o, s)));
    }

    @ParameterizedTest(name = "-o ''{0}'' size {1}")
    @MethodSource("formattingCombinations")
    void printsQemuImgsFormattingLine(String opts, String size) throws IOException {
        Path image = tmp.resolve("img.qcow2");
        List<String> args = Qemu.list("create", "-f", "qcow2");
        if (!opts.isEmpty()) {
            args.addAll(List.of("-o", opts.replace("DIR", tmp.toString())));
        }
        args.addAll(List.of(image.toString(), size));
        Qemu.Result q = Qemu.run(tmp, Qemu.concat("qemu-img", args.toArray(String[]::new))).ok();
        deleteContents(tmp);
        Qemu.Result r = Qemu.qcow4j(args.toArray(String[]::new)).ok();
        assertEquals(q.out(), r.out());
        assertEquals("", r.err());
    }

    @Test
    void printsQemuImgsFormattingLineForAnOverlayWithoutSize() throws IOException {
        Qemu.img(tmp, "create", "-q", "-f", "qcow2", tmp.resolve("base.qcow2").toString(), "5M");
        String image = tmp.resolve("img.qcow2").toString();
        Qemu.Result q = Qemu.img(tmp, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", image);
        Files.delete(Path.of(image));
        Qemu.Result r = Qemu.qcow4j("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", image).ok();
        assertEquals(q.out(), r.out());
    }

    @ParameterizedTest(name = "size {0}")
    @MethodSource("rawSizes")
    void printsQemuImgsFormattingLineForRaw(String size) throws IOException {
        String image = tmp.resolve("x.raw").toString();
        Qemu.Result q = Qemu.img(tmp, "create", "-f", "raw", image, size);
        Files.delete(Path.of(image));
        Qemu.Result r = Qemu.qcow4j("create", "-f", "raw", image, size).ok();
        assertEquals(q.out(), r.out());
    }

    @Test
    void printsQemuImgsFormattingLineForRawWithAnExtentSizeHint() throws IOException {
        String image = tmp.resolve("x.raw").toString();
        Qemu.Result q = Qemu.img(tmp, "create", "-f", "raw", "-o", "extent_size_hint=256k", image, "1M");
        Files.delete(Path.of(image));
        assertEquals(q.out(), Qemu.qcow4j("create", "-f", "raw", "-o", "extent_size_hint=256k", image, "1M").ok().out());
    }

    /** A name holding a colon is given through QEMU's file: protocol prefix, which is not part of the file's name. */
    @Test
    void createsThroughTheFileProtocolPrefix() throws IOException {
        Path qemu = Files.createDirectories(tmp.resolve("qemu"));
        Path ours = Files.createDirectories(tmp.resolve("ours"));
        Qemu.img(qemu, "create", "-q", "-f", "qcow2", "file:" + qemu.resolve("a:b.qcow2"), "1M");
        Qemu.qcow4j("create", "-q", "-f", "qcow2", "file:" + ours.resolve("a:b.qcow2"), "1M").ok();
        assertIdentical(qemu.resolve("a:b.qcow2"), ours.resolve("a:b.qcow2"));
        Qemu.qcow4j("check", "file:" + ours.resolve("a:b.qcow2")).ok();
    }

    static Stream<String> rawSizes() {
        return Stream.of("1M", "1000001");
    }

    // ------------------------------------------------------------------ 4. bad input

    static Stream<Arguments> badInputs() {
        return Stream.of(
                Arguments.of("size not a number", List.of("DIR/x.qcow2", "12x")),
                Arguments.of("raw size not a number", List.of("-f", "raw", "DIR/x.raw", "12x")),
                Arguments.of("unknown option", List.of("-o", "bogus=1", "DIR/x.qcow2", "1M")),
                Arguments.of("no size and no backing file", List.of("DIR/x.qcow2")),
                Arguments.of("directory does not exist", List.of("/nonexistent-dir/x.qcow2", "1M")),
                Arguments.of("parent is a regular file", List.of("DIR/file/x.qcow2", "1M")),
                Arguments.of("raw, parent is a regular file", List.of("-f", "raw", "DIR/file/x.raw", "1M")),
                Arguments.of("cluster_size not a power of two", List.of("-o", "cluster_size=3000", "DIR/x.qcow2", "1M")),
                Arguments.of("cluster_size too small", List.of("-o", "cluster_size=256", "DIR/x.qcow2", "1M")),
                Arguments.of("cluster_size too large", List.of("-o", "cluster_size=4M", "DIR/x.qcow2", "1M")),
                Arguments.of("refcount_bits 3", List.of("-o", "refcount_bits=3", "DIR/x.qcow2", "1M")),
                Arguments.of("refcount_bits 128", List.of("-o", "refcount_bits=128", "DIR/x.qcow2", "1M")),
                Arguments.of("extended_l2 with 4k clusters", List.of("-o", "extended_l2=on,cluster_size=4k", "DIR/x.qcow2", "1M")),
                Arguments.of("compat=0.10 with refcount_bits=8", List.of("-o", "compat=0.10,refcount_bits=8", "DIR/x.qcow2", "1M")),
                Arguments.of("compat=0.10 with a data file", List.of("-o", "compat=0.10,data_file=DIR/x.data", "DIR/x.qcow2", "1M")),
                Arguments.of("-b without -F", List.of("-b", "DIR/base.qcow2", "DIR/x.qcow2", "1M")),
                Arguments.of("backing file missing", List.of("-b", "DIR/missing.qcow2", "-F", "qcow2", "DIR/x.qcow2")),
                Arguments.of("data file directory missing", List.of("-o", "data_file=/nonexistent-dir/x.data", "DIR/x.qcow2", "1M")),
                Arguments.of("data file parent is a regular file", List.of("-o", "data_file=DIR/file/x.data", "DIR/x.qcow2", "1M")),
                // qemu-img: "Backing file and preallocation can only be used at the same time if extended_l2 is on"
                Arguments.of("preallocation over a backing file without extended_l2",
                        List.of("-o", "preallocation=metadata", "-b", "DIR/base.qcow2", "-F", "qcow2", "DIR/x.qcow2")),
                // qemu-img: "The image size must be specified only once"
                Arguments.of("size given twice", List.of("-o", "size=2M", "DIR/x.qcow2", "1M")));
    }

    /** Exit 1, a "qcow4j: " line (then QEMU's further lines, or the "Try ..." line), no stack trace, nothing left behind. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("badInputs")
    void refusesBadInputCleanly(String what, List<String> args) throws IOException {
        Files.writeString(tmp.resolve("file"), "a regular file\n");
        Qemu.img(tmp, "create", "-q", "-f", "qcow2", tmp.resolve("base.qcow2").toString(), "1M");
        Set<String> before = listing(tmp);
        List<String> argv = Qemu.list("create");
        args.forEach(a -> argv.add(a.replace("DIR", tmp.toString())));
        Qemu.Result r = Qemu.qcow4j(argv.toArray(String[]::new));
        assertEquals(1, r.exit(), () -> "exit code; stderr: " + cut(r.err()));
        assertCleanFailure(r);
        assertEquals(before, listing(tmp), "files left behind");
    }

    /** Options qemu-img's qcow2 driver refuses, alone and together (the first refused in QEMU's order is named). */
    static final String[] DRIVER_REFUSALS = {"preallocation=metadata,cluster_size=4194304", "cluster_size=3000",
        "cluster_size=0", "refcount_bits=128", "refcount_bits=3", "compat=0.10,refcount_bits=8",
        "compat=0.10,lazy_refcounts=on", "compat=0.10,extended_l2=on,cluster_size=4k", "compat=0.10,data_file=x.data",
        "compat=0.10,compression_type=zstd", "extended_l2=on,cluster_size=4k", "data_file_raw=on", "backing_fmt=qcow2",
        "cluster_size=3000,refcount_bits=3,compat=0.10,lazy_refcounts=on", "refcount_bits=3,cluster_size=3000",
        "compression_type=foo,compat=foo", "preallocation=foo,compression_type=foo"};

    /**
     * What qemu-img's qcow2 driver refuses, it refuses after the "Formatting ..." line, naming the image (iotest 079:
     * {@code preallocation=metadata,cluster_size=4194304}): the same lines, the same check first.
     */
    @ParameterizedTest(name = "-o {0}")
    @MethodSource("driverRefusals")
    void refusesAfterTheFormattingLineAsQemuImg(String opts) throws IOException {
        String image = tmp.resolve("x.qcow2").toString();
        Qemu.Result q = Qemu.run(tmp, "qemu-img", "create", "-f", "qcow2", "-o", opts, image, "4G");
        Qemu.Result r = Qemu.qcow4j("create", "-f", "qcow2", "-o", opts, image, "4G");
        assertEquals(1, q.exit(), q.err());
        assertEquals(1, r.exit(), r.err());
        assertTrue(q.out().startsWith("Formatting "), q.out());
        assertEquals(q.out(), r.out());
        assertEquals(q.err().replace("qemu-img: ", "qcow4j: "), r.err());
        assertEquals(Set.of(), listing(tmp));
    }

    static Stream<String> driverRefusals() {
        return Stream.of(DRIVER_REFUSALS);
    }

    /** A failing create leaves an existing image where the new one should go untouched. */
    @Test
    void failingCreateKeepsTheExistingImage() throws IOException {
        Path image = tmp.resolve("x.qcow2");
        Qemu.img(tmp, "create", "-q", "-f", "qcow2", image.toString(), "2M");
        qemuIo(image, "write -P 0x33 0 64k");
        byte[] before = Files.readAllBytes(image);
        Qemu.Result r = Qemu.qcow4j("create", "-o", "data_file=/nonexistent-dir/x.data", image.toString(), "1M");
        assertEquals(1, r.exit());
        assertCleanFailure(r);
        assertTrue(java.util.Arrays.equals(before, Files.readAllBytes(image)), "existing image changed");
        assertEquals(Set.of("x.qcow2"), listing(tmp));
    }

    /** Like qemu-img, creating over a symbolic link writes the image the link points to and keeps the link. */
    @Test
    void createsThroughASymbolicLink() throws IOException {
        Path qemu = Files.createDirectories(tmp.resolve("qemu"));
        Path ours = Files.createDirectories(tmp.resolve("ours"));
        for (Path dir : List.of(qemu, ours)) {
            Files.writeString(dir.resolve("real.qcow2"), "old content\n");
            Files.createSymbolicLink(dir.resolve("link.qcow2"), Path.of("real.qcow2"));
        }
        Qemu.img(qemu, "create", "-q", "-f", "qcow2", qemu.resolve("link.qcow2").toString(), "1M");
        Qemu.qcow4j("create", "-q", "-f", "qcow2", ours.resolve("link.qcow2").toString(), "1M").ok();
        assertTrue(Files.isSymbolicLink(qemu.resolve("link.qcow2")), "qemu-img keeps the link");
        assertTrue(Files.isSymbolicLink(ours.resolve("link.qcow2")), "link.qcow2 replaced by a regular file");
        assertIdentical(qemu.resolve("real.qcow2"), ours.resolve("real.qcow2"));
    }

    // ------------------------------------------------------------------ 5. raw

    @ParameterizedTest(name = "size {0}")
    @MethodSource("rawSizes")
    void createsASparseRawFileLikeQemuImg(String size) throws IOException {
        Path q = tmp.resolve("q.raw");
        Path o = tmp.resolve("o.raw");
        Qemu.img(tmp, "create", "-q", "-f", "raw", q.toString(), size);
        Qemu.qcow4j("create", "-q", "-f", "raw", o.toString(), size).ok();
        long expected = (TestSizes.parse(size) + 511) & ~511L;
        assertEquals(expected, Files.size(q));
        assertEquals(expected, Files.size(o));
        assertEquals(-1, Files.mismatch(q, o), "content");
        long blocks = Long.parseLong(Qemu.run(tmp, "stat", "-c", "%b", o.toString()).ok().out().trim());
        assertTrue(blocks * 512 < expected / 2, "not sparse: " + blocks + " blocks allocated");
        assertEquals(Set.of("q.raw", "o.raw"), listing(tmp));
    }

    // ------------------------------------------------------------------ helpers

    private record Pair(Path qemu, Path ours) {
    }

    /**
     * qemu-img create in tmp/qemu, qcow4j create in tmp/ours, both "img.qcow2"; NAME in opts becomes tmp/data/img,
     * an absolute name both headers hold alike: each tool's data file is moved from there beside its image.
     */
    private Pair createBoth(String opts, String size) throws IOException {
        Path qdir = Files.createDirectories(tmp.resolve("qemu"));
        Path odir = Files.createDirectories(tmp.resolve("ours"));
        Path ddir = Files.createDirectories(tmp.resolve("data"));
        String o = opts.replace("NAME", ddir.resolve("img").toString());
        Path a = qdir.resolve("img.qcow2");
        Path b = odir.resolve("img.qcow2");
        List<String> args = Qemu.list("create", "-q", "-f", "qcow2");
        if (!o.isEmpty()) {
            args.addAll(List.of("-o", o));
        }
        Qemu.img(qdir, Stream.concat(args.stream(), Stream.of(a.toString(), size)).toArray(String[]::new));
        moveDataFile(ddir, qdir);
        ours(o, b, size).ok();
        moveDataFile(ddir, odir);
        assertEquals(listing(qdir), listing(odir), "files created");
        return new Pair(a, b);
    }

    private static void moveDataFile(Path from, Path to) throws IOException {
        Path data = from.resolve("img.data");
        if (Files.exists(data)) {
            Files.move(data, to.resolve("img.data"));
        }
    }

    private static Qemu.Result ours(String opts, Path image, String size) {
        List<String> args = Qemu.list("create", "-q", "-f", "qcow2");
        if (!opts.isEmpty()) {
            args.addAll(List.of("-o", opts));
        }
        args.addAll(List.of(image.toString(), size));
        return Qemu.qcow4j(args.toArray(String[]::new));
    }

    private static void assertIdentical(Path qemu, Path ours) throws IOException {
        long m = Files.mismatch(qemu, ours);
        if (m != -1) {
            long qs = Files.size(qemu);
            long os = Files.size(ours);
            throw new AssertionError("first difference at byte " + m + " (qemu-img file " + qs + " bytes, qcow4j " + os
                    + " bytes): qemu-img " + hexAt(qemu, m) + " / qcow4j " + hexAt(ours, m));
        }
    }

    private static String hexAt(Path file, long pos) throws IOException {
        try (var ch = java.nio.channels.FileChannel.open(file)) {
            var buf = java.nio.ByteBuffer.allocate(16);
            ch.read(buf, pos);
            buf.flip();
            StringBuilder sb = new StringBuilder();
            while (buf.hasRemaining()) {
                sb.append(String.format("%02x", buf.get()));
            }
            return sb.length() == 0 ? "EOF" : sb.toString();
        }
    }

    /** qemu-img check --output=json: exit 0, no check errors, leaks or corruptions. */
    private static void assertClean(Path image) throws IOException {
        Qemu.Result r = Qemu.run(image.getParent(), "qemu-img", "check", "--output=json", image.toString());
        assertEquals(0, r.exit(), () -> "qemu-img check " + image + ": exit " + r.exit() + ": " + cut(r.out() + r.err()));
        JsonNode j = JSON.readTree(r.out());
        assertEquals(0, j.path("check-errors").asInt(), () -> cut(r.out()));
        assertEquals(0, j.path("leaks").asInt(), () -> cut(r.out()));
        assertEquals(0, j.path("corruptions").asInt(), () -> cut(r.out()));
    }

    private static void assertSameContent(Path dir, Path a, Path b) {
        Qemu.Result r = Qemu.run(dir, "qemu-img", "compare", a.toString(), b.toString());
        assertEquals(0, r.exit(), () -> "qemu-img compare: " + cut(r.out() + r.err()));
        assertEquals("Images are identical.\n", r.out());
    }

    private static JsonNode info(Path image) throws IOException {
        return JSON.readTree(Qemu.img(image.getParent(), "info", "--output=json", image.toString()).out());
    }

    /** Runs qemu-io commands on an image: exit 0, no error, no failed pattern verification. */
    private static void qemuIo(Path image, String... commands) {
        List<String> cmd = Qemu.list("qemu-io", image.toString());
        for (String c : commands) {
            cmd.add("-c");
            cmd.add(c);
        }
        Qemu.Result r = Qemu.run(image.getParent(), cmd.toArray(String[]::new));
        String all = (r.out() + r.err()).toLowerCase(Locale.ROOT);
        assertTrue(r.exit() == 0 && !all.contains("error") && !all.contains("mismatch") && !all.contains("fail"),
                () -> "qemu-io " + String.join(" ", commands) + ": exit " + r.exit() + ": " + cut(r.out() + r.err()));
    }

    /** qemu-img info --output=json shows the options of {@code opts} (defaults where not given). */
    private static void assertInfoShows(Path image, String opts, String backing, String backingFmt, long size)
            throws IOException {
        Map<String, String> o = new LinkedHashMap<>();
        for (String kv : opts.split(",")) {
            if (!kv.isEmpty()) {
                o.put(kv.substring(0, kv.indexOf('=')), kv.substring(kv.indexOf('=') + 1));
            }
        }
        JsonNode j = info(image);
        JsonNode d = j.path("format-specific").path("data");
        String shown = cut(j.toString());
        assertEquals("qcow2", j.path("format").asText(), shown);
        assertEquals((size + 511) & ~511L, j.path("virtual-size").asLong(), shown);
        assertEquals(TestSizes.parse(o.getOrDefault("cluster_size", "64k")), j.path("cluster-size").asLong(), shown);
        assertEquals(Integer.parseInt(o.getOrDefault("refcount_bits", "16")), d.path("refcount-bits").asInt(), shown);
        String compat = o.getOrDefault("compat", "1.1");
        assertEquals(compat, d.path("compat").asText(), shown);
        assertEquals(o.getOrDefault("compression_type", "zlib"), d.path("compression-type").asText(), shown);
        if (compat.equals("1.1")) {
            assertEquals(on(o.get("extended_l2")), d.path("extended-l2").asBoolean(), shown);
            assertEquals(on(o.get("lazy_refcounts")), d.path("lazy-refcounts").asBoolean(), shown);
            assertFalse(d.path("corrupt").asBoolean(true), shown);
        }
        if (o.containsKey("data_file")) {
            assertEquals(o.get("data_file"), d.path("data-file").asText(), shown);
            assertEquals(on(o.get("data_file_raw")), d.path("data-file-raw").asBoolean(), shown);
        } else {
            assertTrue(d.path("data-file").isMissingNode(), shown);
        }
        if (backing != null) {
            assertEquals(backing, j.path("backing-filename").asText(), shown);
            assertEquals(backingFmt, j.path("backing-filename-format").asText(), shown);
        } else {
            assertTrue(j.path("backing-filename").isMissingNode(), shown);
        }
        assertFalse(j.path("dirty-flag").asBoolean(true), shown);
    }

    private static boolean on(String v) {
        return v != null && v.equals("on");
    }

    private static void assertCleanFailure(Qemu.Result r) {
        String err = r.err();
        List<String> lines = err.lines().toList();
        String shown = cut(err);
        // QEMU words a few in two or three lines (a size's syntax, "Could not open backing image.")
        assertTrue(lines.size() >= 1 && lines.size() <= 3, () -> "stderr should be 1 to 3 lines: " + shown);
        assertTrue(lines.get(0).startsWith("qcow4j: "), shown);
        if (lines.get(lines.size() - 1).startsWith("Try ")) {
            assertEquals(TRY, lines.get(lines.size() - 1), shown);
        }
        assertTrue(err.endsWith("\n"), shown);
        for (String s : List.of(r.out(), err)) {
            assertFalse(s.contains("Exception") || s.contains("\tat ") || s.contains("internal error"),
                    () -> "stack trace or internal error: " + cut(s));
        }
    }

    private static Set<String> listing(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).collect(Collectors.toCollection(java.util.TreeSet::new));
        }
    }

    private static void deleteContents(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : s.toList()) {
                Files.delete(p);
            }
        }
    }

    private static String cut(String s) {
        return s.length() <= 400 ? s : s.substring(0, 400) + "... (" + s.length() + " chars)";
    }

    /** Sizes as the tests write them: bytes or a k/M/G suffix. */
    private static final class TestSizes {
        static long parse(String s) {
            char last = s.charAt(s.length() - 1);
            int shift = switch (last) {
                case 'k', 'K' -> 10;
                case 'M' -> 20;
                case 'G' -> 30;
                default -> 0;
            };
            return Long.parseLong(shift == 0 ? s : s.substring(0, s.length() - 1)) << shift;
        }
    }
}
