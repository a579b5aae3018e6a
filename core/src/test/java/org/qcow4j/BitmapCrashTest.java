package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.TreeSet;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.qcow4j.format.Bitmap;
import org.qcow4j.testing.ChildJvm;
import org.qcow4j.testing.Processes;

/**
 * Crash safety of persistent dirty bitmaps: a child JVM writes into an image with bitmaps (sessions of several
 * writes and flushes, each opening the image, which flags the bitmaps in use, and closing it, which stores them) and
 * adds, removes, clears, enables and disables bitmaps (each as one {@code qemu-img bitmap}), and is killed with
 * SIGKILL at a random moment. Afterwards {@code qemu-img check} finds no corruption (leaks are allowed), the bitmaps
 * are those of the last completed operation or of the one in flight, each either flagged in use (inconsistent, as
 * QEMU leaves a bitmap of an image it did not close) or holding exactly the granules the operations wrote while it
 * was enabled; and the image opens for writing again and closes clean.
 */
class BitmapCrashTest {
    private static final int SIZE = 4 << 20;
    private static final int KILLS = Integer.getInteger("crash.kills", 3);
    private static final int OPS = 80;

    @TempDir
    Path dir;

    enum Kind { WRITES, ADD, REMOVE, CLEAR, ENABLE, DISABLE }

    /** One operation; a WRITES session writes {@code writes} (offset, length) pairs with a flush after each. */
    record Op(Kind kind, String name, int granularity, List<int[]> writes) {
    }

    /** The child: {@code BitmapCrashTest$Child IMAGE SEED}; prints "D n" once operation n is done. */
    public static final class Child {
        public static void main(String[] args) throws IOException {
            Path img = Path.of(args[0]);
            List<Op> ops = workload(Long.parseLong(args[1]));
            OpenOptions o = OpenOptions.defaults();
            System.out.println("READY");
            System.out.flush();
            for (int i = 0; i < ops.size(); i++) {
                Op op = ops.get(i);
                switch (op.kind()) {
                    case WRITES -> {
                        try (WritableImage image = Images.openWritable(img)) {
                            for (int[] w : op.writes()) {
                                byte[] data = new byte[w[1]];
                                Arrays.fill(data, (byte) (i + 1));
                                image.write(ByteBuffer.wrap(data), w[0]);
                                image.flush();
                            }
                        }
                    }
                    case ADD -> Images.addBitmap(img, o, op.name(), op.granularity(), false);
                    case REMOVE -> Images.removeBitmap(img, o, op.name());
                    case CLEAR -> Images.clearBitmap(img, o, op.name());
                    case ENABLE -> Images.enableBitmap(img, o, op.name());
                    case DISABLE -> Images.disableBitmap(img, o, op.name());
                }
                System.out.println("D " + i);
                System.out.flush();
            }
            System.out.println("DONE");
        }
    }

    /** The same operations in the child and the checker: at most 3 bitmaps at once. */
    static List<Op> workload(long seed) {
        Random r = new Random(seed);
        List<Op> ops = new ArrayList<>();
        List<String> alive = new ArrayList<>();
        for (int i = 0; i < OPS; i++) {
            int k = r.nextInt(10);
            if (alive.isEmpty() || (k < 3 && alive.size() < 3)) {
                String name = "b" + i;
                alive.add(name);
                ops.add(new Op(Kind.ADD, name, 512 << r.nextInt(8), null));
            } else if (k < 7) {
                List<int[]> writes = new ArrayList<>();
                for (int n = 1 + r.nextInt(4); n > 0; n--) {
                    int len = 1 + r.nextInt(100_000);
                    writes.add(new int[] {r.nextInt(SIZE - len), len});
                }
                ops.add(new Op(Kind.WRITES, null, 0, writes));
            } else {
                Kind kind = List.of(Kind.REMOVE, Kind.CLEAR, Kind.ENABLE, Kind.DISABLE).get(r.nextInt(4));
                String name = alive.get(r.nextInt(alive.size()));
                if (kind == Kind.REMOVE) {
                    alive.remove(name);
                }
                ops.add(new Op(kind, name, 0, null));
            }
        }
        return ops;
    }

    /** A bitmap of the model: its granularity, whether it records writes, its dirty granules. */
    record Model(int granularity, boolean enabled, TreeSet<Long> granules) {
    }

    /** The bitmaps after operations {@code 0..done}. */
    static Map<String, Model> replay(List<Op> ops, int done) {
        Map<String, Model> m = new TreeMap<>();
        for (int i = 0; i <= done && i < ops.size(); i++) {
            Op op = ops.get(i);
            switch (op.kind()) {
                case ADD -> m.put(op.name(), new Model(op.granularity(), true, new TreeSet<>()));
                case REMOVE -> m.remove(op.name());
                case CLEAR -> m.get(op.name()).granules().clear();
                case ENABLE -> m.put(op.name(), new Model(m.get(op.name()).granularity(), true, m.get(op.name()).granules()));
                case DISABLE -> m.put(op.name(), new Model(m.get(op.name()).granularity(), false, m.get(op.name()).granules()));
                case WRITES -> {
                    for (Model b : m.values()) {
                        if (b.enabled()) {
                            for (int[] w : op.writes()) {
                                for (long g = w[0] / b.granularity(); g <= (w[0] + w[1] - 1L) / b.granularity(); g++) {
                                    b.granules().add(g);
                                }
                            }
                        }
                    }
                }
            }
        }
        return m;
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"cluster_size=4096,refcount_bits=4", "lazy_refcounts=on"})
    void killedWhileWritingOrStoringLeavesBitmapsWholeOrInUse(String options) throws Exception {
        boolean lazy = options.contains("lazy_refcounts=on");
        Random random = new Random(options.hashCode());
        int killed = 0;
        int inUse = 0;
        for (int round = 0; round < KILLS; round++) {
            String file = "crash" + round + ".qcow2";
            Path img = dir.resolve(file);
            Processes.Result made = Processes.run(dir, "qemu-img", "create", "-q", "-f", "qcow2", "-o", options, file,
                    Integer.toString(SIZE));
            assertEquals(0, made.exit(), made.err());
            long seed = random.nextLong();
            int[] done = {-1};
            int killedBefore = killed;
            killed += runAndKill(img, seed, random.nextInt(OPS - 30), random.nextInt(40), done) ? 1 : 0;
            String what = options + " round " + round + " seed " + seed + ", done through op " + done[0] + " ("
                    + (killed - killedBefore) + " kill)";
            if (!lazy) {
                Processes.Result check = Processes.run(dir, "qemu-img", "check", file);
                assertTrue(check.exit() == 0 || check.exit() == 3, what + ": qemu-img check:\n" + check.out() + check.err());
            }
            List<Op> ops = workload(seed);
            AssertionError first = null;
            boolean matched = false;
            for (int k = done[0]; k < ops.size() && !matched; k++) {
                try {
                    inUse += verify(img, ops, k, what + ", as if done through op " + k);
                    matched = true;
                } catch (AssertionError e) {
                    first = first == null ? e : first;
                }
            }
            if (!matched) {
                throw first;
            }
            // As QEMU: the image opens for writing again (a dirty one repaired first), inconsistent bitmaps are kept.
            Images.openWritable(img).close();
            Processes.Result check = Processes.run(dir, "qemu-img", "check", file);
            assertTrue(check.exit() == 0 || check.exit() == 3, what + ": after reopening: " + check.exit() + "\n" + check.out()
                    + check.err());
        }
        assertTrue(killed >= KILLS / 2, "most rounds must end by SIGKILL, not by finishing: " + killed);
        System.out.println(options + ": " + inUse + " bitmaps left in use by " + killed + " kills");
    }

    /**
     * Compares the image's bitmaps with the model after op {@code done}, or with op {@code done + 1} in flight (then
     * also after it); returns how many are flagged in use.
     */
    private static int verify(Path img, List<Op> ops, int done, String what) throws IOException {
        Map<String, Model> before = replay(ops, done);
        Map<String, Model> after = replay(ops, done + 1);
        try (DiskImage image = Images.open(img, OpenOptions.defaults().withoutBacking())) {
            DirtyBitmaps bitmaps = image.dirtyBitmaps().orElseThrow();
            List<Bitmap> list = bitmaps.list();
            TreeSet<String> names = new TreeSet<>();
            int inUse = 0;
            for (Bitmap b : list) {
                names.add(b.name());
            }
            assertTrue(names.equals(before.keySet()) || names.equals(after.keySet()), what + ": bitmaps " + names
                    + ", expected " + before.keySet() + " or " + after.keySet());
            for (Bitmap b : list) {
                Model m = before.containsKey(b.name()) ? before.get(b.name()) : after.get(b.name());
                assertEquals(m.granularity(), 1 << b.granularityBits(), what + ": granularity of " + b.name());
                if ((b.flags() & Bitmap.FLAG_IN_USE) != 0) {
                    inUse++;
                    continue;
                }
                TreeSet<Long> granules = new TreeSet<>();
                for (long[] r : bitmaps.dirtyRanges(b.name())) {
                    for (long g = r[0] / m.granularity(); g <= (r[0] + r[1] - 1) / m.granularity(); g++) {
                        granules.add(g);
                    }
                }
                boolean enabled = (b.flags() & Bitmap.FLAG_AUTO) != 0;
                boolean asBefore = before.containsKey(b.name()) && before.get(b.name()).granules().equals(granules)
                        && before.get(b.name()).enabled() == enabled;
                boolean asAfter = after.containsKey(b.name()) && after.get(b.name()).granules().equals(granules)
                        && after.get(b.name()).enabled() == enabled;
                assertTrue(asBefore || asAfter, what + ": bitmap " + b.name() + " holds " + granules.size()
                        + " granules, enabled " + enabled);
            }
            return inUse;
        }
    }

    /** Runs the child and kills it {@code delayMs} after it reported operation {@code afterOp}; true if it was killed. */
    private static boolean runAndKill(Path img, long seed, int afterOp, int delayMs, int[] done) throws Exception {
        ChildJvm child = ChildJvm.start(Child.class, img.toString(), Long.toString(seed));
        child.awaitLine(("D " + afterOp)::equals, 10);
        boolean killed = child.killAfter(delayMs);
        done[0] = child.lastNumbered("D ");
        return killed;
    }
}
