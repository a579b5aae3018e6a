package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.opentest4j.AssertionFailedError;
import org.qcow4j.testing.Processes;
import org.qcow4j.testing.Shrinker;

/**
 * Random sequences of write, writeZeroes, discard, resize and flush, and on a third of them internal snapshot create,
 * apply and delete, on images QEMU made (backing files, compressed clusters, extended L2, small clusters, version 2,
 * lazy refcounts, narrow and wide refcounts, external data files plain and raw), against an in-memory model of the disk
 * and of its snapshots. After each sequence our own reads, and {@code qemu-img convert -O raw} of the closed image,
 * equal the model, and {@code qemu-img check} finds nothing; {@code qemu-img snapshot -l} lists the model's snapshots
 * (ids and names), and each reads as the disk did when it was taken (ours, and {@code qemu-img convert -l}, over the
 * snapshot's size: past it QEMU reads at the image's current size); a raw data file holds the disk itself. Version 3
 * images without a data file carry persistent dirty bitmaps in the sequences without snapshot operations, which the
 * sequences also clear, disable and enable: the granules our bitmaps hold after the close are the model's (for the
 * first run of each kind, as {@code qemu-nbd -B} serves them), and none is left in use. A failing sequence is shrunk (operations dropped while it
 * still fails) before it is reported. {@code -Dprop.seed=N} changes the sequences, {@code -Dprop.runs=N} their number
 * per image kind.
 *
 * <p>Written with JUnit and a seeded generator rather than jqwik: jqwik 1.10 asks AI agents not to use it, and
 * this code base is written with one.
 */
class WritableImagePropertyTest {
    /** How one image is made: qemu-img create options, virtual size, and what is below and inside it. */
    record Config(String name, String options, int clusterSize, long size, boolean v2, boolean backing, boolean compressed) {
        /** An external data file, {@code top.data} beside the image: no internal snapshots (QEMU refuses them). */
        boolean dataFile() {
            return options.contains("data_file=");
        }

        /** Whether snapshot operations are among the sequence's: not with a data file, nor with 1-bit refcounts. */
        boolean snapshots() {
            return !dataFile() && !options.contains("refcount_bits=1,") && !options.endsWith("refcount_bits=1");
        }
    }

    static final List<Config> CONFIGS = List.of(
            new Config("v3 64k", "compat=1.1", 65536, 4 << 20, false, false, false),
            new Config("v3 64k backing", "compat=1.1", 65536, 4 << 20, false, true, false),
            new Config("v3 compressed", "compat=1.1", 65536, 4 << 20, false, false, true),
            new Config("v3 compressed backing", "compat=1.1", 65536, 4 << 20, false, true, true),
            new Config("v2 4k backing", "compat=0.10,cluster_size=4096", 4096, 2 << 20, true, true, false),
            new Config("v2 4k", "compat=0.10,cluster_size=4096", 4096, 2 << 20, true, false, false),
            new Config("ext l2 64k backing", "extended_l2=on", 65536, 4 << 20, false, true, false),
            new Config("ext l2 16k", "extended_l2=on,cluster_size=16384", 16384, 2 << 20, false, false, false),
            new Config("512 refcount 64", "cluster_size=512,refcount_bits=64", 512, 1 << 20, false, true, false),
            new Config("512 refcount 1", "cluster_size=512,refcount_bits=1", 512, 512 << 10, false, false, false),
            new Config("lazy refcounts backing", "lazy_refcounts=on", 65536, 4 << 20, false, true, false),
            new Config("2M clusters", "cluster_size=2M", 2 << 20, 8 << 20, false, true, false),
            new Config("data file", "data_file=top.data", 65536, 4 << 20, false, false, false),
            new Config("data file backing", "data_file=top.data", 65536, 4 << 20, false, true, false),
            new Config("data file raw ext l2", "data_file=top.data,data_file_raw=on,extended_l2=on", 65536, 4 << 20,
                    false, false, false));

    /** What an operation does; the snapshot ones come only from {@link #withSnapshots}. */
    enum Kind { WRITE, ZEROES, ZEROES_UNMAP, DISCARD, RESIZE, FLUSH, BITMAP_CLEAR, BITMAP_DISABLE, BITMAP_ENABLE,
        SNAPSHOT_CREATE, SNAPSHOT_APPLY, SNAPSHOT_DELETE }

    /** One operation; offsets and lengths are picked from {@code a} and {@code b} against the size at the time. */
    record Op(Kind kind, int a, int b, int pattern) {
    }

    private static final long SEED = Long.getLong("prop.seed", 20261126L);
    private static final int RUNS = Integer.getInteger("prop.runs", 10);
    private static final Kind[] KINDS = weighted();

    /** The operation mix: mostly writes, some zeroing and discards, a few resizes and flushes. */
    private static Kind[] weighted() {
        List<Kind> k = new ArrayList<>();
        int[] weights = {10, 3, 2, 3, 1, 2, 1, 1, 1, 0, 0, 0};
        for (Kind kind : Kind.values()) {
            for (int i = 0; i < weights[kind.ordinal()]; i++) {
                k.add(kind);
            }
        }
        return k.toArray(Kind[]::new);
    }

    static List<Op> randomOps(Random r) {
        List<Op> ops = new ArrayList<>();
        for (int i = 1 + r.nextInt(40); i > 0; i--) {
            ops.add(new Op(KINDS[r.nextInt(KINDS.length)], r.nextInt(Integer.MAX_VALUE), r.nextInt(Integer.MAX_VALUE),
                    1 + r.nextInt(255)));
        }
        return ops;
    }

    /**
     * {@code ops} with one to four snapshot operations put in at random places (mostly creates), from a generator of
     * their own so that the other operations stay those of the seed.
     */
    static List<Op> withSnapshots(Random r, List<Op> ops) {
        List<Op> all = new ArrayList<>(ops);
        Kind[] kinds = {Kind.SNAPSHOT_CREATE, Kind.SNAPSHOT_CREATE, Kind.SNAPSHOT_APPLY, Kind.SNAPSHOT_DELETE};
        for (int i = 1 + r.nextInt(4); i > 0; i--) {
            all.add(r.nextInt(all.size() + 1), new Op(kinds[r.nextInt(kinds.length)], r.nextInt(Integer.MAX_VALUE), 0, 0));
        }
        return all;
    }

    @TestFactory
    Stream<DynamicTest> randomSequencesMatchTheModel() {
        // the data file kinds share the write paths of the others: half as many runs keep the test in its time budget
        return CONFIGS.stream().flatMap(c -> java.util.stream.IntStream.range(0, c.dataFile() ? Math.max(1, RUNS / 2) : RUNS)
                .mapToObj(run -> {
            long seed = SEED * 31 + c.name().hashCode() * 1009L + run;
            return DynamicTest.dynamicTest(c.name() + " #" + run, () -> {
                List<Op> ops = randomOps(new Random(seed));
                if (c.snapshots() && run % 3 == 1) {
                    ops = withSnapshots(new Random(~seed), ops);
                }
                AssertionFailedError failure = attempt(c, ops, run == 0);
                if (failure != null) {
                    throw shrink(c, ops, failure, seed);
                }
            });
        }));
    }

    /** Runs one sequence in a fresh directory; the assertion it fails, or null. */
    private static AssertionFailedError attempt(Config c, List<Op> ops, boolean askQemuNbd) throws IOException {
        Path dir = Files.createTempDirectory("qcow4j-prop");
        try {
            run(dir, c, ops, askQemuNbd);
            return null;
        } catch (AssertionFailedError e) {
            return e;
        } finally {
            try (Stream<Path> files = Files.walk(dir)) {
                for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
                    Files.delete(p);
                }
            }
        }
    }

    /** Drops operations one at a time while the sequence still fails, and reports the shortest found. */
    private static AssertionFailedError shrink(Config c, List<Op> ops, AssertionFailedError failure, long seed) throws Exception {
        return Shrinker.shrink(ops, failure, "seed " + seed + ", " + c.name(), fewer -> attempt(c, fewer, false));
    }

    /**
     * Makes {@code top.qcow2} (and {@code base.qcow2} below it) in {@code dir} with QEMU's tools, as {@code c} says;
     * returns the disk's content.
     */
    static byte[] make(Path dir, Config c) throws IOException {
        byte[] base = null;
        if (c.backing()) {
            // A backing file shorter than the overlay, of an odd length, with data everywhere.
            base = new byte[(int) (c.size() * 3 / 4 + 512)];
            fill(base, 0, base.length, 0x5a, 0);
            Files.write(dir.resolve("base.raw"), base);
            qemu(dir, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "base.raw", "base.qcow2");
        }
        byte[] model = new byte[(int) c.size()];
        if (c.backing()) {
            System.arraycopy(base, 0, model, 0, Math.min(base.length, model.length));
        }
        if (c.compressed()) {
            // Compressed clusters in the top image (qemu-img writes them only by conversion); half the disk.
            byte[] raw = new byte[(int) c.size()];
            fill(raw, 0, raw.length / 2, 0x33, 0);
            Files.write(dir.resolve("top.raw"), raw);
            String opts = c.options() + (c.backing() ? ",backing_file=base.qcow2,backing_fmt=qcow2" : "");
            qemu(dir, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", opts, "top.raw", "top.qcow2");
            if (c.backing()) {
                // convert wrote every cluster (zeros included) so the backing file is hidden: the model is the raw file
                System.arraycopy(raw, 0, model, 0, model.length);
            } else {
                model = raw;
            }
        } else {
            // a data file name is taken from the working directory (this JVM's is not dir): named absolutely
            String opts = c.options().replace("data_file=top.data", "data_file=" + dir.resolve("top.data"));
            List<String> cmd = new ArrayList<>(List.of("qemu-img", "create", "-q", "-f", "qcow2", "-o", opts));
            if (c.backing()) {
                cmd.addAll(List.of("-b", "base.qcow2", "-F", "qcow2"));
            }
            cmd.addAll(List.of("top.qcow2", Long.toString(c.size())));
            qemu(dir, cmd.toArray(String[]::new));
        }
        return model;
    }

    /** A snapshot in the model: QEMU's id, its name, and the disk as it was taken. */
    private record SnapshotModel(String id, String name, byte[] disk) {
    }

    /** Granularity of the "track" bitmap of version 3 images (the "off" one has QEMU's default and is disabled). */
    private static final int GRANULE = 4096;

    private static void run(Path dir, Config c, List<Op> ops, boolean askQemuNbd) throws IOException {
        byte[] model = make(dir, c);
        Path img = dir.resolve("top.qcow2");
        List<String> done = new ArrayList<>();
        List<SnapshotModel> snapshots = new ArrayList<>();
        boolean snapshotted = false;
        // bitmaps where their model holds: no data file, no snapshot operation (an applied snapshot is not a write)
        boolean bitmaps = !c.v2() && !c.dataFile() && ops.stream().noneMatch(o -> o.kind().compareTo(Kind.SNAPSHOT_CREATE) >= 0);
        java.util.TreeSet<Long> granules = new java.util.TreeSet<>();
        if (bitmaps) {
            Images.addBitmap(img, OpenOptions.defaults(), "track", GRANULE, false);
            Images.addBitmap(img, OpenOptions.defaults(), "off", 0, true);
        }
        boolean[] enabled = {true};
        WritableImage image = Images.openWritable(img);
        try {
            for (Op op : ops) {
                if (op.kind().compareTo(Kind.SNAPSHOT_CREATE) >= 0) {
                    // a snapshot operation opens the image itself: ours is closed meanwhile, as qemu-img needs it
                    image.close();
                    model = snapshot(img, model, op, snapshots, done);
                    snapshotted = true;
                    image = Images.openWritable(img);
                } else if (op.kind() == Kind.RESIZE && c.v2() && !snapshots.isEmpty()) {
                    long newSize = Math.max(64 << 10, Math.min(c.size() * 2, (op.a() % (c.size() * 2)) / 512 * 512));
                    WritableImage open = image;
                    assertThrows(UnsupportedFeatureException.class, () -> open.resize(newSize), "v2 with snapshots");
                    done.add("resize " + newSize + " (refused: v2 with snapshots)");
                } else if (op.kind().name().startsWith("BITMAP_") && !bitmaps) {
                    done.add(op.kind() + " (no bitmaps here)");
                } else {
                    long before = model.length;
                    model = apply(image, c, model, op, done);
                    if (bitmaps) {
                        track(image, c, op, before, model.length, granules, enabled);
                    }
                }
            }
            byte[] ours = new byte[(int) image.size()];
            image.read(ByteBuffer.wrap(ours), 0);
            assertArrayEquals(model, ours, "our reads after " + done);
        } finally {
            image.close();
        }
        qemu(dir, "qemu-img", "convert", "-U", "-O", "raw", "top.qcow2", "out.raw");
        assertArrayEquals(model, Files.readAllBytes(dir.resolve("out.raw")), "qemu-img convert after " + done);
        Processes.Result check = Processes.run(dir, "qemu-img", "check", "top.qcow2");
        assertEquals(0, check.exit(), "qemu-img check after " + done + ":\n" + check.out() + check.err());
        if (c.options().contains("data_file_raw=on")) {
            byte[] data = Files.readAllBytes(dir.resolve("top.data"));
            assertArrayEquals(model, Arrays.copyOf(data, model.length), "the raw data file after " + done);
        }
        if (snapshotted) {
            checkSnapshots(dir, img, model.length, snapshots, done);
        }
        if (bitmaps) {
            checkBitmaps(dir, img, model.length, granules, enabled[0], askQemuNbd, done);
        }
    }

    /** Creates, applies or deletes a snapshot through {@link Images}, as {@code op} says; returns the disk after it. */
    private static byte[] snapshot(Path img, byte[] model, Op op, List<SnapshotModel> snapshots, List<String> done)
            throws IOException {
        if (op.kind() == Kind.SNAPSHOT_CREATE) {
            int id = 1; // QEMU's find_new_snapshot_id: one more than the largest
            for (SnapshotModel s : snapshots) {
                id = Math.max(id, Integer.parseInt(s.id()) + 1);
            }
            String name = "s" + (done.size() + 1);
            Images.createSnapshot(img, OpenOptions.defaults(), name);
            snapshots.add(new SnapshotModel(Integer.toString(id), name, model.clone()));
            done.add("snapshot -c " + name);
            return model;
        }
        if (snapshots.isEmpty()) {
            done.add(op.kind() == Kind.SNAPSHOT_APPLY ? "snapshot -a (none)" : "snapshot -d (none)");
            return model;
        }
        SnapshotModel s = snapshots.get(op.a() % snapshots.size());
        if (op.kind() == Kind.SNAPSHOT_APPLY) {
            Images.applySnapshot(img, OpenOptions.defaults(), s.name());
            done.add("snapshot -a " + s.name());
            return s.disk().clone();
        }
        Images.deleteSnapshot(img, OpenOptions.defaults(), s.id(), s.name());
        snapshots.remove(s);
        done.add("snapshot -d " + s.name());
        return model;
    }

    /**
     * {@code qemu-img snapshot -l} lists the model's snapshots in order (ids and names; dates and sizes not compared),
     * and each reads, through us and through {@code qemu-img convert -l}, as the disk did when it was taken, up to the
     * smaller of its size and the image's ({@code size}).
     */
    private static void checkSnapshots(Path dir, Path img, int size, List<SnapshotModel> snapshots, List<String> done)
            throws IOException {
        Processes.Result list = Processes.run(dir, "qemu-img", "snapshot", "-l", "top.qcow2");
        assertEquals(0, list.exit(), "qemu-img snapshot -l after " + done + ": " + list.err());
        List<String> listed = new ArrayList<>();
        for (String line : list.out().split("\n")) {
            String[] w = line.trim().split("\\s+");
            if (w.length >= 2 && w[0].matches("\\d+")) {
                listed.add(w[0] + " " + w[1]);
            }
        }
        assertEquals(snapshots.stream().map(s -> s.id() + " " + s.name()).toList(), listed,
                "qemu-img snapshot -l after " + done + ":\n" + list.out());
        for (SnapshotModel s : snapshots) {
            int n = Math.min(size, s.disk().length);
            byte[] ours = new byte[n];
            try (DiskImage d = Images.openSnapshot(img, OpenOptions.defaults(), null, s.name())) {
                d.read(ByteBuffer.wrap(ours), 0);
            }
            assertArrayEquals(Arrays.copyOf(s.disk(), n), ours, "our reads of snapshot " + s.name() + " after " + done);
            qemu(dir, "qemu-img", "convert", "-U", "-l", "snapshot.name=" + s.name(), "-O", "raw", "top.qcow2", "sn.raw");
            byte[] theirs = Files.readAllBytes(dir.resolve("sn.raw"));
            assertEquals(size, theirs.length, "qemu-img convert -l of " + s.name() + " is the image's size");
            assertArrayEquals(Arrays.copyOf(s.disk(), n), Arrays.copyOf(theirs, n),
                    "qemu-img convert -l snapshot.name=" + s.name() + " after " + done);
        }
    }

    /** The model of the "track" bitmap: the granules each write, zero write and discard touches while enabled. */
    private static void track(WritableImage image, Config c, Op op, long sizeBefore, long sizeAfter,
                              java.util.TreeSet<Long> granules, boolean[] enabled) throws IOException {
        DirtyBitmaps bitmaps = image.dirtyBitmaps().orElseThrow();
        switch (op.kind()) {
            case WRITE, ZEROES, ZEROES_UNMAP, DISCARD -> {
                if (enabled[0]) {
                    long[] r = range(c, sizeBefore, op);
                    for (long g = r[0] / GRANULE; g <= (r[0] + r[1] - 1) / GRANULE; g++) {
                        granules.add(g);
                    }
                }
            }
            case RESIZE -> granules.tailSet((sizeAfter + GRANULE - 1) / GRANULE).clear();
            case BITMAP_CLEAR -> {
                bitmaps.clear("track");
                granules.clear();
            }
            case BITMAP_DISABLE -> {
                bitmaps.disable("track");
                enabled[0] = false;
            }
            case BITMAP_ENABLE -> {
                bitmaps.enable("track");
                enabled[0] = true;
            }
            default -> {
            }
        }
    }

    /** The offset and length {@link #apply} uses for {@code op} on a disk of {@code size} bytes. */
    private static long[] range(Config c, long size, Op op) {
        int off = (int) (op.a() % size);
        int maxLen = (int) Math.min(size - off, Math.max(3L * c.clusterSize(), 65536));
        int len = 1 + op.b() % maxLen;
        if (op.b() % 3 == 0) {
            off = (int) (off / c.clusterSize() * (long) c.clusterSize());
            len = (int) Math.min(size - off, Math.max(c.clusterSize(), (long) len / c.clusterSize() * c.clusterSize()));
        }
        return new long[] {off, len};
    }

    /** After the close: no bitmap in use, "track" holds the model's granules (also as qemu-nbd serves it), "off" none. */
    private static void checkBitmaps(Path dir, Path img, long size, java.util.TreeSet<Long> granules, boolean enabled,
                                     boolean askQemuNbd, List<String> done) throws IOException {
        java.util.TreeSet<Long> stored = new java.util.TreeSet<>();
        try (DiskImage d = Images.open(img)) {
            DirtyBitmaps b = d.dirtyBitmaps().orElseThrow();
            assertEquals("[track " + (enabled ? 2 : 0) + ", off 0]",
                    b.list().stream().map(x -> x.name() + " " + x.flags()).toList().toString(), "flags after " + done);
            for (long[] r : b.dirtyRanges("track")) {
                for (long g = r[0] / GRANULE; g <= (r[0] + r[1] - 1) / GRANULE; g++) {
                    stored.add(g);
                }
            }
            assertEquals(List.of(), b.dirtyRanges("off"), "the disabled bitmap after " + done);
        }
        assertEquals(granules, stored, "the dirty granules after " + done);
        if (askQemuNbd) {
            Processes.Result map = Processes.run(dir, "nbdinfo", "--map=qemu:dirty-bitmap:track", "--", "[", "qemu-nbd", "-r",
                    "-B", "track", "-f", "qcow2", img.toString(), "]");
            assertEquals(0, map.exit(), map.err());
            java.util.TreeSet<Long> served = new java.util.TreeSet<>();
            for (String line : map.out().lines().toList()) {
                String[] f = line.trim().split("\\s+");
                if (f[2].equals("1")) {
                    for (long g = Long.parseLong(f[0]) / GRANULE; g <= (Long.parseLong(f[0]) + Long.parseLong(f[1]) - 1) / GRANULE; g++) {
                        served.add(g);
                    }
                }
            }
            assertEquals(granules, served, "qemu-nbd's dirty map after " + done);
        }
    }

    /**
     * Applies {@code op} to {@code image} and returns the model after it (the same array, or a new one after a
     * resize); with a null image only the model changes: what the operation is meant to do.
     */
    static byte[] apply(WritableImage image, Config c, byte[] model, Op op, List<String> done) throws IOException {
        long size = model.length;
        int off = (int) (op.a() % size);
        // Lengths up to three clusters (or 64 KiB), often unaligned.
        int maxLen = (int) Math.min(size - off, Math.max(3L * c.clusterSize(), 65536));
        int len = 1 + op.b() % maxLen;
        if (op.b() % 3 == 0) { // a third of the requests cluster aligned
            off = (int) (off / c.clusterSize() * (long) c.clusterSize());
            len = (int) Math.min(size - off, Math.max(c.clusterSize(), (long) len / c.clusterSize() * c.clusterSize()));
        }
        switch (op.kind()) {
            case WRITE -> {
                byte[] data = new byte[len];
                fill(data, 0, len, op.pattern(), off);
                if (image != null) {
                    image.write(ByteBuffer.wrap(data), off);
                }
                System.arraycopy(data, 0, model, off, len);
                done.add("write " + off + "+" + len);
            }
            case ZEROES, ZEROES_UNMAP -> {
                if (image != null) {
                    image.writeZeroes(off, len, op.kind() == Kind.ZEROES_UNMAP);
                }
                Arrays.fill(model, off, off + len, (byte) 0);
                done.add((op.kind() == Kind.ZEROES ? "zeroes " : "zeroes-unmap ") + off + "+" + len);
            }
            case DISCARD -> {
                if (image != null) {
                    image.discard(off, len);
                }
                long cs = c.clusterSize();
                long start = (off + cs - 1) / cs * cs;
                long end = off + len == size ? size : (off + len) / cs * cs;
                if (!(c.v2() && c.backing()) && start < end) { // version 2 with a backing file ignores discards
                    Arrays.fill(model, (int) start, (int) end, (byte) 0);
                }
                done.add("discard " + off + "+" + len);
            }
            case RESIZE -> {
                long newSize = Math.max(64 << 10, Math.min(c.size() * 2, (op.a() % (c.size() * 2)) / 512 * 512));
                if (image != null) {
                    image.resize(newSize);
                }
                model = Arrays.copyOf(model, (int) newSize);
                done.add("resize " + newSize);
            }
            case FLUSH -> {
                if (image != null) {
                    image.flush();
                }
                done.add("flush");
            }
            default -> done.add(op.kind().name().toLowerCase(java.util.Locale.ROOT).replace('_', ' '));
        }
        return model;
    }

    /** A pattern that differs from sector to sector, so data in the wrong place shows. */
    static void fill(byte[] b, int from, int to, int pattern, long guest) {
        for (int i = from; i < to; i++) {
            b[i] = (byte) (pattern + ((guest + i - from) >>> 9));
        }
    }

    static void qemu(Path dir, String... cmd) {
        Processes.Result r = Processes.run(dir, cmd);
        assertEquals(0, r.exit(), String.join(" ", cmd) + ": " + r.err());
    }
}
