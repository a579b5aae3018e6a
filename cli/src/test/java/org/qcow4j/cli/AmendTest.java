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
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code amend} against {@code qemu-img amend} on twin copies of images of several kinds (zero clusters plain and
 * preallocated, a backing file, version 2, extended L2, 512 B and 2 MiB clusters, lazy refcounts, zstd compressed
 * clusters, snapshots, persistent bitmaps): the same stdout, stderr and exit code, and the same file byte for byte,
 * for upgrades, downgrades, lazy refcounts, sizes and every refusal.
 */
class AmendTest {
    @TempDir
    Path dir;

    /** name, qemu-img create options, qemu-io commands run on it (with a backing file when "backing"), its size. */
    private record Kind(String name, String options, List<String> writes, String size) {
        Kind(String name, String options, List<String> writes) {
            this(name, options, writes, "8M");
        }
    }

    private static final List<String> ZEROS = List.of("write -P 1 0 1M", "write -z 2M 1M", "write -z 4M 64k",
            "write -P 2 4M 4k", "write -z -u 4M 64k", "write -P 3 6M 64k", "write -z 6M 64k");

    private static final List<Kind> KINDS = List.of(
            new Kind("v3", "compat=1.1", ZEROS),
            new Kind("backing", "compat=1.1", List.of("write -z 0 128k", "write -P 3 1M 64k", "write -z 1M 64k")),
            new Kind("v2", "compat=0.10", List.of("write -P 1 0 1M", "write -z 2M 64k")),
            new Kind("extended-l2", "extended_l2=on", ZEROS),
            new Kind("512", "cluster_size=512", ZEROS),
            new Kind("2M", "cluster_size=2M", ZEROS),
            new Kind("lazy", "lazy_refcounts=on", ZEROS),
            new Kind("zstd", "compression_type=zstd", List.of("write -c -P 1 0 64k", "write -z 1M 64k")),
            new Kind("zstd-plain", "compression_type=zstd", List.of("write -P 1 0 64k")),
            new Kind("refcount-8", "refcount_bits=8", ZEROS));

    /** On every kind. */
    private static final List<String> OPTIONS = List.of("compat=0.10", "compat=1.1");
    /** On the kinds whose refcount structure differs most (and that qemu-img walks in seconds). */
    private static final List<String> REFCOUNTS = List.of("refcount_bits=1", "refcount_bits=64,lazy_refcounts=on");
    /** On the first kind and the one with a backing file. */
    private static final List<String> FIRST_KINDS_ONLY = List.of("compat=v3,lazy_refcounts=on", "size=4M,compat=0.10",
            "lazy_refcounts=off", "size=16M",
            "backing_file=base.qcow2,backing_fmt=qcow2", "backing_file=other.qcow2", "refcount_bits=8,compat=0.10",
            "cluster_size=4k", "compat=2", "data_file_raw=off", "help", "refcount_bits=3", "refcount_bits=8,compat=1.1");

    /** An enabled and a disabled persistent bitmap, each with granules set by writes and zero writes. */
    private static final List<String> BITMAPS = List.of("write -P 1 0 1M", "BITMAP b0", "BITMAP --disable b1",
            "write -P 2 2M 64k", "write -z 4M 64k", "write -z 0 64k");

    /**
     * On images with persistent bitmaps: qemu-img's read-write open flags them in use and its close stores them anew,
     * around every step and after every refusal that comes once the image is open (the options' help and parsing too).
     */
    private static final List<String> BITMAP_OPTIONS = List.of("lazy_refcounts=on", "compat=0.10", "compat=1.1",
            "size=16M", "size=4M", "size=4M,compat=0.10", "compat=v3,lazy_refcounts=on", "data_file_raw=off",
            "backing_file=other.qcow2", "cluster_size=4k", "help", "compat=2", "refcount_bits=3", "lazy_refcounts=x");

    @TestFactory
    Stream<DynamicTest> sameAsQemuImg() {
        List<DynamicTest> tests = new ArrayList<>();
        for (Kind k : KINDS) {
            List<String> options = new ArrayList<>(OPTIONS);
            if (k == KINDS.get(0) || k == KINDS.get(1)) {
                options.addAll(FIRST_KINDS_ONLY);
            }
            if (List.of("v3", "512", "lazy", "refcount-8").contains(k.name())) {
                options.addAll(REFCOUNTS); // not 2M: qemu-img walks 2^18 absent blocks of 2^20 entries (hours)
            }
            for (String o : options) {
                tests.add(DynamicTest.dynamicTest(k.name() + ": " + o, () -> compare(k, o)));
            }
        }
        tests.add(DynamicTest.dynamicTest("snapshots: compat=1.1 of version 2", () -> compare(
                new Kind("v2-snapshots", "compat=0.10", List.of("write -P 1 0 1M", "SNAPSHOT", "write -P 2 0 64k")),
                "compat=1.1")));
        // qcow2_upgrade writes a table whose entries lack the version 3 extra data anew (iotest 261)
        tests.add(DynamicTest.dynamicTest("snapshots without extra data: compat=1.1", () -> compare(
                new Kind("v2-old-snapshots", "compat=0.10", List.of("write -P 1 0 1M", "SNAPSHOT", "NO-EXTRA-DATA",
                        "write -P 2 0 64k")), "compat=1.1")));
        tests.add(DynamicTest.dynamicTest("snapshots: refcount_bits=1 (a refcount of 2)", () -> compare(
                new Kind("snapshots-refcount", "compat=1.1", List.of("write -P 1 0 1M", "SNAPSHOT")), "refcount_bits=1")));
        tests.add(DynamicTest.dynamicTest("snapshots: refcount_bits=4", () -> compare(
                new Kind("snapshots-refcount", "compat=1.1", List.of("write -P 1 0 1M", "SNAPSHOT")), "refcount_bits=4")));
        // qcow2_downgrade expands the zero clusters of every snapshot's L1 table too: plain ones unallocated (or, over a
        // backing file, new clusters counted as often as their table is shared), preallocated ones written with zeros
        List<String> zerosInSnapshots = new ArrayList<>(ZEROS);
        zerosInSnapshots.addAll(List.of("SNAPSHOT", "write -z 0 64k", "write -P 4 6M 64k", "write -z 7M 64k",
                "SNAPSHOT", "SNAPSHOT", "write -P 5 64k 64k", "write -z 4M 128k"));
        for (String kind : List.of("snapshots-zeros", "backing-snapshots")) {
            tests.add(DynamicTest.dynamicTest(kind + ": compat=0.10", () -> compare(
                    new Kind(kind, "compat=1.1", zerosInSnapshots), "compat=0.10")));
        }
        // -p: qemu-img's progress values (QEMU's per-step projection; a refcount width change that needs a fourth walk
        // goes back from 66.67 to 50.00, as in iotest 112), and the repair lines of a dirty image opened to be amended
        Kind walks = new Kind("walks", "refcount_bits=1,cluster_size=512", List.of("write 0 " + 58 * 512));
        tests.add(DynamicTest.dynamicTest("progress: refcount_bits=64 in four walks", () -> compare(walks,
                "refcount_bits=64", "-p")));
        tests.add(DynamicTest.dynamicTest("progress: compat=0.10,refcount_bits=16", () -> compare(walks,
                "compat=0.10,refcount_bits=16", "-p")));
        tests.add(DynamicTest.dynamicTest("progress: snapshots, compat=0.10", () -> compare(
                new Kind("snapshots-zeros", "compat=1.1", zerosInSnapshots), "compat=0.10", "-p")));
        tests.add(DynamicTest.dynamicTest("progress: compat=1.1,refcount_bits=4 of version 2", () -> compare(
                KINDS.get(2), "compat=1.1,refcount_bits=4", "-p")));
        for (String o : List.of("compat=0.10", "lazy_refcounts=off")) {
            tests.add(DynamicTest.dynamicTest("dirty: " + o, () -> compare(new Kind("dirty", "lazy_refcounts=on",
                    List.of("KILLED write -P 0x2a 0 128k")), o)));
        }
        tests.add(DynamicTest.dynamicTest("snapshots of another size: compat=0.10", () -> compare(
                new Kind("snapshots", "compat=1.1", List.of("write -P 1 0 1M", "SNAPSHOT", "RESIZE")),
                "compat=0.10")));
        // iotest 112's image exactly (64 KiB): the first new refblock fills up, a fourth walk takes the share back
        tests.add(DynamicTest.dynamicTest("progress: iotest 112's image", () -> compare(new Kind("walks-112",
                "refcount_bits=1,cluster_size=512", List.of("write -P 1 0 " + 58 * 512), "64k"),
                "refcount_bits=64", "-p")));
        // lazy refcounts with consistent bitmaps: the open image stays lazy until the downgrade marks it clean, and
        // its close must write no dirty bit into the version 2 header's extensions
        for (Kind k : List.of(new Kind("bitmaps", "compat=1.1", BITMAPS), new Kind("backing-bitmaps", "compat=1.1",
                BITMAPS), new Kind("lazy-bitmaps", "lazy_refcounts=on", BITMAPS))) {
            for (String o : BITMAP_OPTIONS) {
                tests.add(DynamicTest.dynamicTest(k.name() + ": " + o, () -> compareWithCheck(k, o)));
            }
        }
        List<String> bitmapsInSnapshots = new ArrayList<>(BITMAPS);
        bitmapsInSnapshots.addAll(List.of("SNAPSHOT", "write -z 64k 64k", "write -P 4 6M 64k"));
        tests.add(DynamicTest.dynamicTest("bitmaps and snapshots: compat=0.10", () -> compareWithCheck(
                new Kind("snapshots-bitmaps", "compat=1.1", bitmapsInSnapshots), "compat=0.10")));
        List<String> dataFileBitmaps = List.of("BITMAP b0", "write -P 1 0 64k", "write -z 1M 64k");
        for (Kind k : List.of(new Kind("data-file-bitmaps", "data_file=img.data", dataFileBitmaps),
                new Kind("raw-data-file-bitmaps", "data_file=img.data,data_file_raw=on", dataFileBitmaps))) {
            for (String o : List.of("data_file=new.data", "data_file_raw=off", "size=16M", "size=4M", "compat=0.10")) {
                tests.add(DynamicTest.dynamicTest(k.name() + ": " + o, () -> compare(k, o)));
            }
        }
        tests.add(DynamicTest.dynamicTest("zstd-bitmaps: compat=0.10 (compressed clusters refused)", () -> compare(
                new Kind("zstd-bitmaps", "compression_type=zstd", List.of("BITMAP b0", "write -c -P 1 0 64k")),
                "compat=0.10")));
        tests.add(DynamicTest.dynamicTest("bitmaps: compat=0.10,size=16M -p", () -> compare(
                new Kind("bitmaps", "compat=1.1", BITMAPS), "compat=0.10,size=16M", "-p")));
        // qemu-io killed: a dirty lazy-refcounts image repaired by the open (its lines), an inconsistent bitmap (in use)
        Kind dirty = new Kind("dirty-bitmaps", "lazy_refcounts=on", List.of("BITMAP b0", "BITMAP --disable b1",
                "KILLED write -P 0x2a 0 128k"));
        for (String o : List.of("lazy_refcounts=off", "compat=0.10", "help")) {
            tests.add(DynamicTest.dynamicTest("dirty bitmaps: " + o, () -> compareWithCheck(dirty, o)));
        }
        Kind inUse = new Kind("inconsistent-bitmaps", "compat=1.1", List.of("write -P 1 0 64k", "BITMAP b0",
                "KILLED write -P 7 0 64k"));
        for (String o : List.of("size=16M", "lazy_refcounts=on", "compat=0.10")) {
            tests.add(DynamicTest.dynamicTest("inconsistent bitmap: " + o, () -> compare(inUse, o)));
        }
        // a backing file gone: qemu-img's open fails, after it flagged the bitmaps in use and its close stored them anew
        List<String> bitmapsWithoutBase = new ArrayList<>(BITMAPS);
        bitmapsWithoutBase.add("DELETE-BASE");
        for (Kind k : List.of(new Kind("backing-missing", "compat=1.1", List.of("write -P 3 1M 64k", "DELETE-BASE")),
                new Kind("backing-missing-bitmaps", "compat=1.1", bitmapsWithoutBase))) {
            for (String o : List.of("lazy_refcounts=on", "help", "cluster_size=4k")) {
                tests.add(DynamicTest.dynamicTest(k.name() + ": " + o, () -> compare(k, o)));
            }
        }
        return tests.stream();
    }

    /**
     * Options qcow4j refuses by name on an image with persistent bitmaps, where qemu-img amends: the refcount width (the
     * new refcount structure would replace the open image's allocator before its close stores the bitmaps through it)
     * and removing the data file name (the store would write under a header qcow4j's reading refuses). Refused before
     * anything is written.
     */
    @TestFactory
    Stream<DynamicTest> refusedWithBitmaps() {
        return Stream.of("refcount_bits=8", "refcount_bits=1,compat=0.10", "data_file=").map(o -> DynamicTest.dynamicTest(o,
                () -> {
                    Path d = Files.createDirectories(dir.resolve("refused"));
                    Qemu.img(d, "create", "-q", "-f", "qcow2", "-o", "data_file=" + d.resolve("img.data"), "img.qcow2",
                            "1M");
                    Qemu.img(d, "bitmap", "--add", "img.qcow2", "b0");
                    Qemu.io(d, "img.qcow2", "write -P 1 0 64k");
                    byte[] before = Files.readAllBytes(d.resolve("img.qcow2"));
                    Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, "amend", "-o", o,
                            d.resolve("img.qcow2").toString());
                    assertEquals(1, got.exit(), got.toString());
                    assertEquals("", got.out());
                    org.junit.jupiter.api.Assertions.assertTrue(got.err().contains("unsupported feature: ")
                            && got.err().contains(" of an image with persistent bitmaps"), got.err());
                    assertArrayEquals(before, Files.readAllBytes(d.resolve("img.qcow2")), o);
                }));
    }

    /**
     * {@link #compare}, then {@code qemu-img check} of both files: the same report and exit code, and clean but where
     * a downgrade left a version 2 image naming bitmaps (QEMU's own result: the check warns and counts their
     * clusters as leaks).
     */
    private void compareWithCheck(Kind k, String option) throws IOException {
        compare(k, option);
        Qemu.Result want = Qemu.run(dir, "qemu-img", "check", "theirs/img.qcow2");
        Qemu.Result got = Qemu.run(dir, "qemu-img", "check", "ours/img.qcow2");
        assertEquals(want.out(), got.out(), option);
        assertEquals(want.err(), got.err(), option);
        assertEquals(want.exit(), got.exit(), option);
        if (!option.contains("0.10")) {
            assertEquals(0, got.exit(), option + ": " + got);
        }
    }

    private void compare(Kind k, String option, String... extra) throws IOException {
        Path theirs = Files.createDirectories(dir.resolve("theirs"));
        Path ours = Files.createDirectories(dir.resolve("ours"));
        Path template = dir.resolve("template-" + k.name());
        // A data file is named in the header through a link (a relative name would be taken from the working
        // directory, which qcow4j's here is not), pointed at the directory of the image being made or amended.
        Path link = dir.resolve("data");
        if (!Files.isDirectory(template)) {
            Files.createDirectories(template);
            relink(link, template);
            make(template, k, link);
        }
        for (Path d : List.of(theirs, ours)) {
            try (Stream<Path> s = Files.list(template)) {
                for (Path f : s.toList()) {
                    Files.copy(f, d.resolve(f.getFileName()), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                }
            }
        }
        Path img = theirs.resolve("img.qcow2");
        List<String> args = new ArrayList<>(List.of("amend", "-o", option));
        args.addAll(List.of(extra));
        args.add(img.toString());
        relink(link, theirs);
        Qemu.Result want = Qemu.run(theirs, Qemu.concat("qemu-img", args.toArray(String[]::new)));
        args.set(args.size() - 1, ours.resolve("img.qcow2").toString());
        relink(link, ours);
        Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, args.toArray(String[]::new));
        assertEquals(want.exit(), got.exit(), option + ": " + got);
        assertEquals(want.out(), got.out(), option);
        assertEquals(want.err().replace(theirs.toString(), "D"), got.err().replace(ours.toString(), "D"), option);
        assertArrayEquals(Files.readAllBytes(img), Files.readAllBytes(ours.resolve("img.qcow2")), k.name() + " " + option);
    }

    /**
     * Rewrites the first snapshot table entry without extra data, as a QEMU older than 1.1 wrote version 2 tables
     * (iotest 261 does it with qcow2.py): the table shrinks, nb_snapshots and the offset stay.
     */
    private static void dropExtraData(Path img) {
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(img,
                java.nio.file.StandardOpenOption.READ, java.nio.file.StandardOpenOption.WRITE)) {
            java.nio.ByteBuffer h = java.nio.ByteBuffer.allocate(72);
            ch.read(h, 0);
            long table = h.getLong(64);
            java.nio.ByteBuffer e = java.nio.ByteBuffer.allocate(4096);
            ch.read(e, table);
            int idSize = e.getShort(12) & 0xffff;
            int nameSize = e.getShort(14) & 0xffff;
            int extra = e.getInt(36);
            byte[] names = new byte[idSize + nameSize];
            e.get(40 + extra, names);
            java.nio.ByteBuffer out = java.nio.ByteBuffer.allocate((40 + names.length + 7) / 8 * 8);
            out.put(e.array(), 0, 36).putInt(0).put(names).clear();
            ch.write(out, table);
        } catch (IOException x) {
            throw new java.io.UncheckedIOException(x);
        }
    }

    private static void relink(Path link, Path target) throws IOException {
        Files.deleteIfExists(link);
        Files.createSymbolicLink(link, target);
    }

    private static void make(Path d, Kind k, Path link) {
        Qemu.img(d, "create", "-q", "-f", "qcow2", "base.qcow2", "8M");
        Qemu.io(d, "base.qcow2", "write -P 9 0 8M");
        String options = k.options().replace("data_file=img.data", "data_file=" + link.resolve("img.data"));
        List<String> create = new ArrayList<>(List.of("create", "-q", "-f", "qcow2", "-o", options));
        if (k.name().startsWith("backing")) {
            create.addAll(List.of("-b", "base.qcow2", "-F", "qcow2"));
        }
        create.addAll(List.of("img.qcow2", k.size()));
        Qemu.img(d, create.toArray(String[]::new));
        for (String w : k.writes()) {
            switch (w) {
                case "SNAPSHOT" -> Qemu.img(d, "snapshot", "-c", "s1", "img.qcow2");
                case "RESIZE" -> Qemu.img(d, "resize", "-q", "img.qcow2", "16M");
                case "NO-EXTRA-DATA" -> dropExtraData(d.resolve("img.qcow2"));
                case "DELETE-BASE" -> {
                    try {
                        Files.delete(d.resolve("base.qcow2"));
                    } catch (IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                }
                case "BITMAP b0" -> Qemu.img(d, "bitmap", "--add", "img.qcow2", "b0");
                case "BITMAP --disable b1" -> Qemu.img(d, "bitmap", "--add", "--disable", "img.qcow2", "b1");
                default -> {
                    if (w.startsWith("KILLED ")) { // qemu-io killed after the write: lazy refcounts left dirty
                        Qemu.run(d, "qemu-io", "-c", w.substring(7), "-c", "flush", "-c", "sigraise 9", "img.qcow2");
                    } else {
                        Qemu.io(d, "img.qcow2", w);
                    }
                }
            }
        }
    }
}
