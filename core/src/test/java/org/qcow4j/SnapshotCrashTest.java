package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.qcow4j.format.Snapshot;
import org.qcow4j.testing.ChildJvm;
import org.qcow4j.testing.Processes;

/**
 * Crash safety of snapshot operations: a child JVM creates, applies and deletes internal snapshots between writes
 * (each operation opening and closing the image, as qemu-img does, and saying on stdout when it is done) and is
 * killed with SIGKILL at a random moment. Afterwards {@code qemu-img check} finds no corruption (leaks are allowed;
 * an image left dirty under lazy refcounts is repaired on open first and must then be clean), every snapshot in the table reads
 * exactly what the disk held when it was taken (no snapshot half there), every snapshot whose creation completed and
 * whose deletion did not start is there, and the disk reads as after the last completed operation (or, when the kill
 * fell in an apply, as after it). The last operation the child reported is only a lower bound (lines in the pipe are
 * lost with the kill), so the image must match the state after one of the operations from there on.
 */
class SnapshotCrashTest {
    private static final int SIZE = 4 << 20;
    private static final int KILLS = Integer.getInteger("crash.kills", 8);
    private static final int OPS = 400;

    @TempDir
    Path dir;

    enum Kind { WRITE, CREATE, APPLY, DELETE }

    record Op(Kind kind, int offset, int length, String name) {
        byte[] data(int index) {
            byte[] b = new byte[length];
            for (int i = 0; i < length; i++) {
                b[i] = (byte) (index * 13 + ((offset + i) >>> 9));
            }
            return b;
        }
    }

    /** The child: {@code SnapshotCrashTest$Child IMAGE SEED}; prints "D n" once operation n is done. */
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
                    case WRITE -> {
                        try (WritableImage image = Images.openWritable(img)) {
                            image.write(ByteBuffer.wrap(op.data(i)), op.offset());
                        }
                    }
                    case CREATE -> Images.createSnapshot(img, o, op.name());
                    case APPLY -> Images.applySnapshot(img, o, op.name());
                    case DELETE -> Images.deleteSnapshot(img, o, null, op.name());
                }
                System.out.println("D " + i);
                System.out.flush();
            }
            System.out.println("DONE");
        }
    }

    /** The same operations in the child and the checker: at most 4 snapshots at once, unique names. */
    static List<Op> workload(long seed) {
        Random r = new Random(seed);
        List<Op> ops = new ArrayList<>();
        List<String> alive = new ArrayList<>();
        for (int i = 0; i < OPS; i++) {
            int k = r.nextInt(10);
            if (k < 4 || (k < 6 && alive.isEmpty())) {
                int len = 512 * (1 + r.nextInt(400));
                ops.add(new Op(Kind.WRITE, 512 * r.nextInt((SIZE - len) / 512), len, null));
            } else if (k < 7 && alive.size() < 4) {
                String name = "s" + i;
                alive.add(name);
                ops.add(new Op(Kind.CREATE, 0, 0, name));
            } else if (k < 8 && !alive.isEmpty()) {
                ops.add(new Op(Kind.APPLY, 0, 0, alive.get(r.nextInt(alive.size()))));
            } else if (!alive.isEmpty()) {
                ops.add(new Op(Kind.DELETE, 0, 0, alive.remove(r.nextInt(alive.size()))));
            } else {
                ops.add(new Op(Kind.WRITE, 0, 512, null));
            }
        }
        return ops;
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"compat=1.1", "cluster_size=4096", "lazy_refcounts=on", "compat=0.10", "extended_l2=on"})
    void killedInSnapshotOperationsLeavesEachSnapshotWholeOrGone(String options) throws Exception {
        boolean lazy = options.contains("lazy_refcounts=on");
        Random random = new Random(options.hashCode());
        int killed = 0;
        int copiedOnly = 0;
        int repaired = 0;
        for (int round = 0; round < KILLS; round++) {
            String file = "crash" + round + ".qcow2";
            Path img = dir.resolve(file);
            Processes.Result made = Processes.run(dir, "qemu-img", "create", "-q", "-f", "qcow2", "-o", options, file,
                    Integer.toString(SIZE));
            assertEquals(0, made.exit(), made.err());
            long seed = random.nextLong();
            int[] done = {-1};
            int killedBefore = killed;
            // The kill comes a random moment after a random operation has finished, however fast the machine runs.
            killed += runAndKill(img, seed, random.nextInt(OPS - 40), random.nextInt(30), done) ? 1 : 0;
            String what = options + " round " + round + " seed " + seed + ", done through op " + done[0] + " ("
                    + (killed - killedBefore) + " kill)";
            // Only an image killed while dirty is repaired on open: QEMU's snapshot operations write refcounts at once
            // and never set the dirty bit, so a kill inside one leaves leaks even with lazy refcounts.
            boolean dirty = lazy && dirtyBit(img);
            if (lazy) {
                Images.openWritable(img).close(); // repairs the dirty image, as QEMU would
            }
            Processes.Result check = Processes.run(dir, "qemu-img", "check", file);
            if (check.exit() == 2) {
                // A kill between a refcount dropping to 1 and its COPIED flag reaching the disk (or the flag being
                // cleared before the refcount rises) leaves only that: harmless, and -r all sets the flags.
                for (String line : check.err().lines().filter(l -> l.startsWith("ERROR")).toList()) {
                    assertTrue(line.matches("ERROR OFLAG_COPIED (data|L2) cluster: .* refcount=1"), what + ": " + line);
                }
                assertEquals(0, Processes.run(dir, "qemu-img", "check", "-q", "-r", "all", file).exit(), what);
                check = Processes.run(dir, "qemu-img", "check", file);
                copiedOnly++;
            }
            assertTrue(check.exit() == 0 || check.exit() == 3, what + ": qemu-img check:\n" + check.out() + check.err());
            if (dirty) {
                assertEquals(0, check.exit(), what + ": after repair on open:\n" + check.out() + check.err());
                repaired++;
            }
            // The last "D" line read is a lower bound: killing the child closes the pipe, and lines still in it are
            // lost. So the image must match the state after some later operation, with the next one in flight.
            List<Op> ops = workload(seed);
            AssertionError first = null;
            boolean matched = false;
            for (int k = done[0]; k < ops.size() && !matched; k++) {
                try {
                    verify(img, ops, k, what + ", as if done through op " + k);
                    matched = true;
                } catch (AssertionError e) {
                    first = first == null ? e : first;
                }
            }
            if (!matched) {
                throw first;
            }
        }
        assertTrue(killed >= KILLS / 2, "most rounds must end by SIGKILL, not by finishing: " + killed);
        System.out.println(options + ": " + copiedOnly + " of " + KILLS + " kills left COPIED flags to set, "
                + repaired + " left the image dirty");
    }

    /** The header's incompatible feature bit 0, read from the file as QEMU reads it on open. */
    private static boolean dirtyBit(Path img) throws IOException {
        try (FileChannel ch = FileChannel.open(img)) {
            ByteBuffer b = ByteBuffer.allocate(8);
            ch.read(b, 72);
            return b.flip().remaining() == 8 && (b.getLong() & 1) != 0;
        }
    }

    /** Replays the workload through op {@code done} and compares the image's snapshots and disk with it. */
    private static void verify(Path img, List<Op> ops, int done, String what) throws IOException {
        byte[] disk = new byte[SIZE];
        Map<String, byte[]> snapshots = new HashMap<>();
        for (int i = 0; i <= done; i++) {
            disk = apply(ops.get(i), i, disk, snapshots);
        }
        Op next = done + 1 < ops.size() ? ops.get(done + 1) : null;
        Set<String> mayBe = new HashSet<>(); // the operation in flight may or may not have taken effect
        byte[] diskAfter = null;
        if (next != null && next.kind() != Kind.WRITE) {
            mayBe.add(next.name());
            Map<String, byte[]> copy = new HashMap<>(snapshots);
            diskAfter = apply(next, done + 1, disk, copy);
            snapshots.putIfAbsent(next.name(), copy.get(next.name()));
        }
        List<Snapshot> list = Images.snapshots(img, OpenOptions.defaults());
        Set<String> seen = new HashSet<>();
        for (Snapshot s : list) {
            assertTrue(seen.add(s.name()), what + ": snapshot " + s.name() + " twice");
            byte[] want = snapshots.get(s.name());
            assertTrue(want != null, what + ": snapshot " + s.name() + " should not exist");
            assertTrue(Arrays.equals(want, read(img, s.name())), what + ": snapshot " + s.name() + " reads differently");
        }
        for (String name : snapshots.keySet()) {
            if (!mayBe.contains(name) && !(next != null && next.kind() == Kind.CREATE && name.equals(next.name()))) {
                assertTrue(seen.contains(name), what + ": snapshot " + name + " is missing");
            }
        }
        if (next == null || next.kind() != Kind.WRITE) {
            byte[] actual = new byte[SIZE];
            try (DiskImage image = Images.open(img)) {
                image.read(ByteBuffer.wrap(actual), 0);
            }
            if (!Arrays.equals(actual, disk) && (diskAfter == null || !Arrays.equals(actual, diskAfter))) {
                fail(what + ": the disk reads neither as before nor as after the operation in flight");
            }
        }
    }

    private static byte[] apply(Op op, int index, byte[] disk, Map<String, byte[]> snapshots) {
        switch (op.kind()) {
            case WRITE -> {
                byte[] d = disk.clone();
                System.arraycopy(op.data(index), 0, d, op.offset(), op.length());
                return d;
            }
            case CREATE -> snapshots.put(op.name(), disk);
            case APPLY -> {
                return snapshots.get(op.name());
            }
            case DELETE -> snapshots.remove(op.name());
        }
        return disk;
    }

    private static byte[] read(Path img, String name) throws IOException {
        byte[] b = new byte[SIZE];
        try (DiskImage d = Images.openSnapshot(img, OpenOptions.defaults(), null, name)) {
            d.read(ByteBuffer.wrap(b), 0);
        }
        return b;
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
