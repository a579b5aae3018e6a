package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.qcow4j.testing.ChildJvm;
import org.qcow4j.testing.Processes;

/**
 * Crash safety: a child JVM writes, zeroes and discards at random (flushing now and then, saying so on stdout) and is
 * killed with SIGKILL at a random moment. Afterwards {@code qemu-img check} finds no corruption (leaks are allowed),
 * and every byte that a completed flush covered, and that no later operation touched, reads back. With lazy
 * refcounts the image is left dirty; opening it for writing repairs it, after which the check must be clean. One kind
 * keeps its data in a raw external data file.
 */
class CrashTest {
    private static final long SIZE = 64L << 20;
    private static final int KILLS = Integer.getInteger("crash.kills", 13);
    /** The LUKS kind's passphrase, and the secret object that gives it to QEMU's tools. */
    private static final String PASS = "crash-pass";
    private static final String SECRET = "secret,id=sec0,data=" + PASS;

    @TempDir
    Path dir;

    /** The child: {@code CrashTest$Child IMAGE SEED}; prints "F n" once operations 0..n are flushed. */
    public static final class Child {
        public static void main(String[] args) throws IOException {
            List<Op> ops = workload(Long.parseLong(args[1]));
            OpenOptions options = args.length > 2 ? OpenOptions.defaults().withPassphrase(Passphrase.of(args[2].getBytes()))
                    : OpenOptions.defaults();
            try (WritableImage image = Images.openWritable(Path.of(args[0]), options)) {
                System.out.println("READY");
                System.out.flush();
                for (int i = 0; i < ops.size(); i++) {
                    ops.get(i).apply(image, i);
                    if (ops.get(i).kind == Kind.FLUSH) {
                        System.out.println("F " + i);
                        System.out.flush();
                    }
                }
            }
            System.out.println("DONE");
        }
    }

    enum Kind { WRITE, ZEROES, DISCARD, FLUSH }

    record Op(Kind kind, long offset, int length) {
        void apply(WritableImage image, int index) throws IOException {
            switch (kind) {
                case WRITE -> image.write(ByteBuffer.wrap(data(index)), offset);
                case ZEROES -> image.writeZeroes(offset, length, (index & 1) == 0);
                case DISCARD -> image.discard(offset, length);
                case FLUSH -> image.flush();
            }
        }

        byte[] data(int index) {
            byte[] b = new byte[length];
            for (int i = 0; i < length; i++) {
                b[i] = (byte) (index * 7 + ((offset + i) >>> 9));
            }
            return b;
        }
    }

    /** The same operations in the child and the checker, from the seed. */
    static List<Op> workload(long seed) {
        Random r = new Random(seed);
        List<Op> ops = new ArrayList<>();
        for (int i = 0; i < 4000; i++) {
            int k = r.nextInt(20);
            Kind kind = k < 14 ? Kind.WRITE : k < 16 ? Kind.ZEROES : k < 18 ? Kind.DISCARD : Kind.FLUSH;
            int length = kind == Kind.FLUSH ? 0 : 1 + r.nextInt(256 << 10);
            long offset = kind == Kind.FLUSH ? 0 : (long) (r.nextDouble() * (SIZE - length));
            if (r.nextBoolean()) { // half of them sector aligned
                offset &= ~511L;
                length = Math.max(512, length & ~511);
            }
            ops.add(new Op(kind, offset, length));
        }
        return ops;
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"compat=1.1", "compat=1.1,backing", "extended_l2=on,backing", "cluster_size=4096", "lazy_refcounts=on,backing",
        "lazy_refcounts=on,extended_l2=on", "data_file=crash.data,data_file_raw=on", "encrypt.format=luks"})
    void killedAtRandomMomentsLeavesAConsistentImage(String config) throws Exception {
        boolean backing = config.endsWith(",backing");
        String options = backing ? config.substring(0, config.length() - ",backing".length()) : config;
        // a data file name is taken from the working directory (the child JVM's is not dir): named absolutely
        options = options.replace("data_file=crash.data", "data_file=" + dir.resolve("crash.data"));
        boolean lazy = options.contains("lazy_refcounts=on");
        boolean luks = options.contains("encrypt.format=luks");
        if (luks) {
            options += ",encrypt.key-secret=sec0,encrypt.iter-time=10";
        }
        byte[] base = new byte[(int) SIZE];
        if (backing) {
            for (int i = 0; i < base.length; i += 512) {
                Arrays.fill(base, i, i + 512, (byte) (0x40 + (i >>> 16)));
            }
            Files.write(dir.resolve("base.raw"), base);
        } else {
            Arrays.fill(base, (byte) 0);
        }
        Random random = new Random(config.hashCode());
        AtomicInteger kills = new AtomicInteger();
        int withFlushes = 0;
        for (int round = 0; round < KILLS; round++) {
            Path img = dir.resolve("crash.qcow2");
            Files.deleteIfExists(img);
            Files.deleteIfExists(dir.resolve("crash.data")); // an external data file
            List<String> create = new ArrayList<>(List.of("qemu-img", "create", "-q", "-f", "qcow2", "-o", options));
            if (luks) {
                create.addAll(2, List.of("--object", SECRET));
            }
            if (backing) {
                create.addAll(List.of("-b", "base.raw", "-F", "raw"));
            }
            create.addAll(List.of("crash.qcow2", Long.toString(SIZE)));
            Processes.Result made = Processes.run(dir, create.toArray(String[]::new));
            for (int attempt = 0; made.err().contains("Unable to get accurate CPU usage") && attempt < 4; attempt++) {
                made = Processes.run(dir, create.toArray(String[]::new)); // QEMU's PBKDF calibration on a busy machine
            }
            assertEquals(0, made.exit(), made.err());
            long seed = random.nextLong();
            // Every other round counts its delay from the first completed flush, so that flushed data is checked
            // however slowly a loaded machine runs the child; the others from the open, any moment at all.
            int flushed = runAndKill(img, seed, 50 + random.nextInt(600), round % 2 == 0, kills, luks);
            withFlushes += flushed >= 0 ? 1 : 0;
            String what = config + " round " + round + " seed " + seed + " flushed through op " + flushed;

            if (lazy) {
                WritableImage repaired = Images.openWritable(img); // repairs the dirty image, as QEMU would
                repaired.close();
            }
            Processes.Result check = luks ? Processes.run(dir, "qemu-img", "check", "--object", SECRET, "--image-opts",
                    "driver=qcow2,file.filename=crash.qcow2,encrypt.key-secret=sec0")
                    : Processes.run(dir, "qemu-img", "check", "crash.qcow2");
            assertTrue(check.exit() == 0 || check.exit() == 3, what + ": qemu-img check:\n" + check.out() + check.err());
            if (lazy) {
                assertEquals(0, check.exit(), what + ": after repair on open:\n" + check.out() + check.err());
            }
            long clusterSize = options.contains("cluster_size=4096") ? 4096 : 65536;
            verifyFlushedData(img, base, workload(seed), flushed, clusterSize, what,
                    luks ? OpenOptions.defaults().withPassphrase(Passphrase.of(PASS.getBytes())) : OpenOptions.defaults());
        }
        assertTrue(kills.get() >= KILLS * 3 / 4, "most rounds must end by SIGKILL, not by finishing: " + kills.get());
        assertTrue(withFlushes >= KILLS / 2, "most rounds must flush before the kill: " + withFlushes);
    }

    /**
     * Starts the child, kills it with SIGKILL {@code delayMs} after it has opened the image (with {@code afterFlush},
     * after its first completed flush), and returns the index of the last operation a completed flush covered (-1 if
     * none).
     */
    private int runAndKill(Path img, long seed, int delayMs, boolean afterFlush, AtomicInteger kills, boolean luks)
            throws Exception {
        ChildJvm child = luks ? ChildJvm.start(Child.class, img.toString(), Long.toString(seed), PASS)
                : ChildJvm.start(Child.class, img.toString(), Long.toString(seed));
        child.awaitLine("READY"::equals, 100);
        if (afterFlush) {
            child.awaitLine(l -> l.startsWith("F "), 100);
        }
        if (child.killAfter(delayMs)) {
            kills.incrementAndGet();
        }
        return child.lastNumbered("F ");
    }

    /** The model after operations 0..flushed, compared wherever no later operation may have changed the disk. */
    private static void verifyFlushedData(Path img, byte[] base, List<Op> ops, int flushed, long clusterSize, String what,
                                          OpenOptions options) throws IOException {
        byte[] model = base.clone();
        for (int i = 0; i <= flushed; i++) {
            Op op = ops.get(i);
            switch (op.kind()) {
                case WRITE -> System.arraycopy(op.data(i), 0, model, (int) op.offset(), op.length());
                case ZEROES -> Arrays.fill(model, (int) op.offset(), (int) op.offset() + op.length(), (byte) 0);
                case DISCARD -> { // whole clusters read as zeros (version 3)
                    long end = op.offset() + op.length() == SIZE ? SIZE : (op.offset() + op.length()) / clusterSize * clusterSize;
                    long start = (op.offset() + clusterSize - 1) / clusterSize * clusterSize;
                    if (start < end) {
                        Arrays.fill(model, (int) start, (int) end, (byte) 0);
                    }
                }
                case FLUSH -> { }
            }
        }
        BitSet unknown = new BitSet((int) SIZE);
        for (int i = 0; i < ops.size(); i++) {
            Op op = ops.get(i);
            if (i > flushed && op.kind() != Kind.FLUSH) {
                unknown.set((int) op.offset(), (int) op.offset() + op.length());
            }
        }
        byte[] actual = new byte[(int) SIZE];
        try (DiskImage image = Images.open(img, options)) {
            image.read(ByteBuffer.wrap(actual), 0);
        }
        for (int i = unknown.nextClearBit(0); i < SIZE; i = unknown.nextClearBit(i + 1)) {
            if (actual[i] != model[i]) {
                fail(what + ": byte " + i + " is " + actual[i] + ", flushed data says " + model[i]);
            }
        }
    }
}
