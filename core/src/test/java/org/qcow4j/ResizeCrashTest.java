package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.testing.ChildJvm;
import org.qcow4j.testing.Processes;

/**
 * Crash safety of {@link Images#resize}: a child JVM resizes an image again and again (shrinking, growing with each
 * preallocation mode, across L1 growth and refcount table growth), saying which resizes completed, and is killed with
 * SIGKILL at a random moment. Afterwards {@code qemu-img check} finds nothing worse than leaks, the virtual size is
 * the one the last completed resize set or the one the interrupted resize was setting, and the data below the
 * smallest size ever set reads back (qemu-io {@code read -P}).
 */
class ResizeCrashTest {
    private static final int ROUNDS = Integer.getInteger("crash.kills", 4);
    /** The image kinds, one per round in turn. */
    private static final String[] OPTIONS = {"cluster_size=65536", "cluster_size=4096", "extended_l2=on"};
    private static final long KEEP = 8L << 20; // never shrunk below: its data must survive
    private static final CreateOptions.Preallocation[] MODES = CreateOptions.Preallocation.values();

    @TempDir
    Path dir;

    /** The child: {@code ResizeCrashTest$Child IMAGE SEED}; prints "R i SIZE" before resize i and "D i" after it. */
    public static final class Child {
        public static void main(String[] args) throws IOException {
            Random r = new Random(Long.parseLong(args[1]));
            try (WritableImage image = Images.openWritable(Path.of(args[0]), OpenOptions.defaults().withQemuLayout(true))) {
                System.out.println("READY");
                System.out.flush();
                for (int i = 0; i < 200; i++) {
                    long size = nextSize(r);
                    CreateOptions.Preallocation mode = size > image.size() ? MODES[r.nextInt(MODES.length)]
                            : CreateOptions.Preallocation.OFF;
                    System.out.println("R " + i + " " + size);
                    System.out.flush();
                    Images.resize(image, size, mode);
                    System.out.println("D " + i);
                    System.out.flush();
                }
            }
            System.out.println("DONE");
        }
    }

    static long nextSize(Random r) {
        return KEEP + ((long) r.nextInt(1 << 20) << 9) * (r.nextInt(4) == 0 ? 64 : 1); // up to 512 MiB or 32 GiB
    }

    @Test
    void killedDuringResizesLeavesAConsistentImage() throws Exception {
        Random random = new Random(Long.getLong("crash.seed", 20261201L));
        int kills = 0;
        for (int round = 0; round < ROUNDS; round++) {
            String options = OPTIONS[round % OPTIONS.length];
            Path img = dir.resolve("crash.qcow2");
            Files.deleteIfExists(img);
            Processes.Result made = Processes.run(dir, "qemu-img", "create", "-q", "-f", "qcow2", "-o", options,
                    "crash.qcow2", "64M");
            assertEquals(0, made.exit(), made.err());
            Processes.Result wrote = Processes.run(dir, "qemu-io", "-c", "write -P 0x5c 0 " + KEEP, "crash.qcow2");
            assertEquals(0, wrote.exit(), wrote.err());
            long seed = random.nextLong();
            List<String> lines = new ArrayList<>();
            kills += runAndKill(img, seed, 100 + random.nextInt(1500), lines) ? 1 : 0;
            String what = options + " round " + round + " seed " + seed;
            Processes.Result check = Processes.run(dir, "qemu-img", "check", "crash.qcow2");
            assertTrue(check.exit() == 0 || check.exit() == 3, what + ": qemu-img check:\n" + check.out() + check.err());
            long before = 64L << 20;
            Long during = null;
            for (String line : lines) {
                if (line.startsWith("R ")) {
                    during = Long.parseLong(line.split(" ")[2]);
                } else if (line.startsWith("D ")) {
                    before = during;
                    during = null;
                }
            }
            Processes.Result info = Processes.run(dir, "qemu-img", "info", "--output=json", "crash.qcow2");
            long size = Long.parseLong(info.out().replaceAll("(?s).*\"virtual-size\": (\\d+).*", "$1"));
            assertTrue(size == before || during != null && size == during, what + ": size " + size + ", expected "
                    + before + (during == null ? "" : " or " + during));
            Processes.Result read = Processes.run(dir, "qemu-io", "-c", "read -P 0x5c 0 " + KEEP, "crash.qcow2");
            assertTrue(read.exit() == 0 && !read.out().contains("Pattern verification failed"), what + ": " + read.out());
        }
        assertTrue(kills >= ROUNDS / 2, "most rounds must end by SIGKILL, not by finishing: " + kills);
    }

    /** Runs the child, kills it {@code delayMs} after it opened the image; true if it was killed. */
    private boolean runAndKill(Path img, long seed, int delayMs, List<String> lines) throws Exception {
        ChildJvm child = ChildJvm.start(Child.class, img.toString(), Long.toString(seed));
        child.awaitLine("READY"::equals, 100);
        boolean killed = child.killAfter(delayMs);
        lines.addAll(child.lines());
        for (String line : lines) {
            assertTrue(line.equals("READY") || line.equals("DONE") || line.startsWith("R ") || line.startsWith("D "),
                    "child said: " + String.join("\n", lines));
        }
        return killed;
    }
}
