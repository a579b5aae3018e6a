package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.qcow4j.WritableImagePropertyTest.Config;
import org.qcow4j.WritableImagePropertyTest.Op;
import org.qcow4j.io.WriteFaults;
import org.qcow4j.testing.Processes;

/**
 * A full disk or a failing device at every write of a random write sequence: for a seeded sequence of write,
 * writeZeroes, discard, resize and flush on an image QEMU made, run once counting the image file's writes (and
 * flushes), then again on a fresh copy for each k (all of them, or a sample when there are many) with the k-th write,
 * or separately the k-th flush, failing with {@code No space left on device}. The request that meets it must fail with
 * a {@link QcowException} naming the file and the cause; afterwards {@code qemu-img check} finds no corruption (leaks
 * allowed), the image opens for writing again, and every byte the last completed flush covered, and that no later
 * operation was meant to change, reads back.
 */
class WriteFaultTest {
    private static final long SEED = Long.getLong("faults.seed", 20261201L);
    /** Failing writes tried per image kind, and failing flushes. */
    private static final int WRITES = Integer.getInteger("faults.writes", 16);
    private static final int FLUSHES = 6;
    private static final String NOSPC = "No space left on device";
    private static final Set<String> KINDS = Set.of("v3 64k backing", "v3 compressed", "v2 4k", "ext l2 16k",
            "512 refcount 1", "512 refcount 64", "lazy refcounts backing");

    @AfterEach
    void removeHook() {
        WriteFaults.set(null);
    }

    @TestFactory
    Stream<DynamicTest> everyFailingWriteLeavesAConsistentImage() {
        return WritableImagePropertyTest.CONFIGS.stream().filter(c -> KINDS.contains(c.name()))
                .map(c -> DynamicTest.dynamicTest(c.name(), () -> faults(c, SEED * 31 + c.name().hashCode())));
    }

    /**
     * Table growth, where the header switches to a new L1 table or refcount table, failing at each of its steps (the
     * new table's write, the header's, the force after it) while the writer goes on writing: every later request
     * either works or fails with a {@code QcowException} naming the file, and the image left has no corruption.
     */
    @TestFactory
    Stream<DynamicTest> tableGrowthFailingAtEachStepLeavesAConsistentImage() throws IOException {
        Path pristine = Files.createTempDirectory("qcow4j-faults");
        WritableImagePropertyTest.qemu(pristine, "qemu-img", "create", "-q", "-f", "qcow2", "-o",
                "cluster_size=512,refcount_bits=32", "top.qcow2", "2M");
        List<Long> events = new ArrayList<>();
        WriteFaults.set((file, op, pos) -> events.add(op == WriteFaults.Op.FORCE ? -1 : pos));
        Path counted = pristine.resolve("counted.qcow2");
        Files.copy(pristine.resolve("top.qcow2"), counted);
        growing(counted, null);
        WriteFaults.set(null);
        List<Integer> steps = new ArrayList<>(); // indexes into events: around each header write
        for (int i = 1; i + 1 < events.size(); i++) {
            if (events.get(i) >= 0 && events.get(i) < 512) {
                steps.addAll(List.of(i - 1, i, i + 1));
            }
        }
        assertTrue(steps.size() >= 6, "both tables grow: " + steps.size() / 3 + " header writes");
        return Stream.concat(steps.stream().map(i -> DynamicTest.dynamicTest("event " + i + " failing", () -> {
            Path dir = Files.createTempDirectory("qcow4j-fault");
            try {
                Path img = dir.resolve("top.qcow2");
                Files.copy(pristine.resolve("top.qcow2"), img);
                int[] seen = {0};
                WriteFaults.set((file, op, pos) -> {
                    if (seen[0]++ == i) {
                        throw new IOException(NOSPC);
                    }
                });
                growing(img, img.toString());
                WriteFaults.set(null);
                Processes.Result check = Processes.run(dir, "qemu-img", "check", "top.qcow2");
                assertTrue(check.exit() == 0 || check.exit() == 3, "qemu-img check:\n" + check.out() + check.err());
                Images.openWritable(img).close();
            } finally {
                WriteFaults.set(null);
                delete(dir);
            }
        })), Stream.of(DynamicTest.dynamicTest("cleanup", () -> delete(pristine))));
    }

    /**
     * Writes 1.5 MiB in 64 KiB requests, grows the disk to 8 MiB (the L1 table moves) and writes 3 MiB more (the
     * refcount table, 4 MiB of 512-byte clusters at first, grows), going on after failures; with {@code name}, each
     * failure must be one line naming it.
     */
    private static void growing(Path img, String name) throws IOException {
        WritableImage image = Images.openWritable(img);
        IOException first = null;
        for (int i = 0; i < 73; i++) {
            try {
                if (i == 24) {
                    image.resize(8 << 20);
                } else {
                    long at = i < 24 ? i * 65536L : (2 << 20) + (i - 25) * 65536L;
                    if (at >= image.size()) {
                        continue; // the resize failed
                    }
                    byte[] data = new byte[65536];
                    Arrays.fill(data, (byte) (i + 1));
                    image.write(ByteBuffer.wrap(data), at);
                }
            } catch (IOException e) {
                first = first == null ? e : first;
                assertTrue(name != null && e instanceof QcowException && e.getMessage().contains(name), "" + e);
            }
        }
        try {
            image.close();
        } catch (IOException e) {
            first = first == null ? e : first;
            assertTrue(name != null && e instanceof QcowException && e.getMessage().contains(name), "" + e);
        }
        assertTrue(name == null || (first != null && first.getMessage().contains(NOSPC)), "the failure is reported: " + first);
    }

    /** Counts the image's writes and flushes over one run, then fails each chosen one in a run of its own. */
    private static void faults(Config c, long seed) throws IOException {
        Random r = new Random(seed);
        List<Op> ops = new ArrayList<>(WritableImagePropertyTest.randomOps(r));
        ops.addAll(WritableImagePropertyTest.randomOps(r));
        Path pristine = Files.createTempDirectory("qcow4j-faults");
        try {
            byte[] model = WritableImagePropertyTest.make(pristine, c);
            // Some data written by qemu-io too, so the sequence starts from an image QEMU has written.
            int cs = c.clusterSize();
            WritableImagePropertyTest.qemu(pristine, "qemu-io", "-c", "write -P 0x61 0 " + 3 * cs,
                    "-c", "write -P 0x62 " + model.length / 2 + " 4096", "top.qcow2");
            Arrays.fill(model, 0, 3 * cs, (byte) 0x61);
            Arrays.fill(model, model.length / 2, model.length / 2 + 4096, (byte) 0x62);

            // Each write (extensions included) and each force of the image, in order: its position, -1 for a force.
            List<Long> events = new ArrayList<>();
            WriteFaults.set((file, op, pos) -> {
                if (isImage(file)) {
                    events.add(op == WriteFaults.Op.FORCE ? -1 : pos);
                }
            });
            String clean = runOnce(pristine, c, model, ops, null, -1, seed);
            assertEquals(null, clean, "the sequence must succeed without faults");
            // The header switches to new tables (L1, refcount table) and the dirty bit are where order matters most:
            // the writes just before and at each header write, and the force after it, fail in every run; the
            // others are sampled.
            Set<Integer> writes = new TreeSet<>();
            Set<Integer> flushes = new TreeSet<>();
            int w = 0;
            int f = 0;
            boolean afterHeader = false;
            for (long pos : events) {
                if (pos < 0) {
                    f++;
                    if (afterHeader) {
                        flushes.add(f);
                    }
                    afterHeader = false;
                } else {
                    w++;
                    if (pos < cs) {
                        writes.add(w);
                        writes.add(Math.max(1, w - 1));
                        afterHeader = true;
                    }
                }
            }
            assertTrue(w > 10 && f > 2, "a sequence that writes: " + w + " writes, " + f + " flushes");
            writes.addAll(sample(w, WRITES, r));
            flushes.addAll(sample(f, FLUSHES, r));
            System.out.println(c.name() + ": " + w + " writes, " + f + " flushes; failing " + writes.size() + " and "
                    + flushes.size() + " of them");
            for (int k : writes) {
                runOnce(pristine, c, model, ops, WriteFaults.Op.WRITE, k, seed);
            }
            for (int k : flushes) {
                runOnce(pristine, c, model, ops, WriteFaults.Op.FORCE, k, seed);
            }
        } finally {
            delete(pristine);
        }
    }

    private static boolean isImage(Path file) {
        return file.getFileName().toString().equals("top.qcow2");
    }

    /** 1..n if it has at most {@code max} numbers, else the first and last and a random sample of the others. */
    private static Set<Integer> sample(int n, int max, Random r) {
        Set<Integer> ks = new TreeSet<>();
        if (n <= max) {
            for (int k = 1; k <= n; k++) {
                ks.add(k);
            }
            return ks;
        }
        ks.add(1);
        ks.add(n);
        while (ks.size() < max) {
            ks.add(1 + r.nextInt(n));
        }
        return ks;
    }

    /**
     * Runs the sequence on a copy of {@code pristine}, the {@code k}-th write ({@code failing} WRITE, extensions
     * included) or flush (FORCE) of the image failing, and checks what is left. Returns null, or without a fault what
     * failed.
     */
    private static String runOnce(Path pristine, Config c, byte[] start, List<Op> ops, WriteFaults.Op failing, int k,
                                  long seed) throws IOException {
        Path dir = Files.createTempDirectory("qcow4j-fault");
        try {
            try (Stream<Path> files = Files.list(pristine)) {
                for (Path p : files.toList()) {
                    Files.copy(p, dir.resolve(p.getFileName()), StandardCopyOption.COPY_ATTRIBUTES);
                }
            }
            Path img = dir.resolve("top.qcow2");
            String what = c.name() + " seed " + seed + (failing == null ? "" : ", " + failing + " " + k + " failing");
            if (failing != null) {
                int[] seen = {0};
                WriteFaults.set((file, op, pos) -> {
                    boolean counts = failing == WriteFaults.Op.FORCE ? op == WriteFaults.Op.FORCE : op != WriteFaults.Op.FORCE;
                    if (isImage(file) && counts && ++seen[0] == k) {
                        throw new IOException(NOSPC);
                    }
                });
            }
            byte[] durable = start.clone(); // the disk as of the last completed flush
            BitSet changed = new BitSet(); // bytes an operation since then was meant to change
            byte[] model = start.clone();
            List<String> done = new ArrayList<>();
            IOException failure = null;
            WritableImage image = Images.openWritable(img);
            try {
                for (Op op : ops) {
                    byte[] meant = WritableImagePropertyTest.apply(null, c, model.clone(), op, new ArrayList<>());
                    mark(changed, durable, meant);
                    model = WritableImagePropertyTest.apply(image, c, model, op, done);
                    if (op.kind() == WritableImagePropertyTest.Kind.FLUSH || op.kind() == WritableImagePropertyTest.Kind.RESIZE) {
                        durable = model.clone(); // a resize flushes first and forces the new size
                        changed.clear();
                    }
                }
            } catch (IOException e) {
                failure = e;
            }
            try {
                image.close();
                if (failure == null) {
                    durable = model; // the close flushed everything
                    changed.clear();
                }
            } catch (IOException e) {
                if (failure == null) {
                    failure = e;
                }
            }
            WriteFaults.set(null);
            if (failing == null) {
                return failure == null ? null : what + ": " + failure;
            }
            String context = what + " after " + done;
            if (failure == null) {
                fail(context + ": the injected failure was not reported");
            }
            assertTrue(failure instanceof QcowException && failure.getMessage().contains(img.toString())
                    && failure.getMessage().contains(NOSPC), context + ": not one line naming the file: " + failure);
            verify(dir, img, c, durable, changed, context);
            return null;
        } finally {
            WriteFaults.set(null);
            delete(dir);
        }
    }

    /** Marks the bytes where {@code meant} differs from {@code durable} (and all past the shorter of the two). */
    private static void mark(BitSet changed, byte[] durable, byte[] meant) {
        int n = Math.min(durable.length, meant.length);
        for (int i = 0; i < n; i++) {
            if (durable[i] != meant[i]) {
                changed.set(i);
            }
        }
        changed.set(n, Math.max(n, durable.length));
    }

    private static void verify(Path dir, Path img, Config c, byte[] durable, BitSet changed, String what)
            throws IOException {
        boolean lazy = c.options().contains("lazy_refcounts=on");
        if (lazy) {
            Images.openWritable(img).close(); // a dirty image is repaired on opening, as QEMU does
        }
        Processes.Result check = Processes.run(dir, "qemu-img", "check", "top.qcow2");
        assertTrue(check.exit() == 0 || check.exit() == 3, what + ": qemu-img check:\n" + check.out() + check.err());
        try (WritableImage again = Images.openWritable(img)) {
            int n = (int) Math.min(again.size(), durable.length);
            byte[] ours = new byte[n];
            again.read(ByteBuffer.wrap(ours), 0);
            for (int i = changed.nextClearBit(0); i < n; i = changed.nextClearBit(i + 1)) {
                if (ours[i] != durable[i]) {
                    fail(what + ": byte " + i + " is " + ours[i] + ", the last flush wrote " + durable[i]);
                }
            }
        }
    }

    private static void delete(Path dir) throws IOException {
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }
}
