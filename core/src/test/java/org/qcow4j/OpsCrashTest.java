package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.qcow4j.testing.Processes;

/**
 * Crash safety of safe {@code rebase} and {@code commit}: a child JVM runs the operation on a chain made by qemu-img
 * and is killed with SIGKILL at a random moment. Afterwards no image has corruptions ({@code qemu-img check}: at most
 * leaks, once a dirty image, which QEMU's make_empty leaves behind a crash, was repaired by a writable open), the
 * overlay reads exactly what it read before, and (commit) every byte of the base reads either its old content or the
 * overlay's.
 */
class OpsCrashTest {
    private static final int KILLS = Integer.getInteger("crash.kills", 4);
    private static final int SIZE = 8 << 20;

    @TempDir
    Path dir;

    /** The child: {@code OpsCrashTest$Child rebase|commit DIR}. */
    public static final class Child {
        public static void main(String[] args) throws IOException {
            Path top = Path.of(args[1], "top.qcow2");
            System.out.println("READY");
            System.out.flush();
            if (args[0].equals("rebase")) {
                Images.rebase(top, RebaseOptions.safe("other.qcow2", "qcow2"));
            } else {
                Images.commit(top, CommitOptions.defaults());
            }
            System.out.println("DONE");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"rebase", "commit"})
    void killedAtRandomMomentsLeavesTheChainReadingTheSame(String operation) throws Exception {
        Random random = new Random(operation.hashCode());
        int killed = 0;
        int bound = 250;
        for (int round = 0; round < KILLS; round++) {
            for (String f : new String[] {"base.qcow2", "other.qcow2", "top.qcow2"}) {
                Files.deleteIfExists(dir.resolve(f));
            }
            img("create", "-q", "-f", "qcow2", "base.qcow2", Integer.toString(SIZE));
            io("base.qcow2", "write -P 1 0 3M", "write -P 2 5M 1M");
            img("create", "-q", "-f", "qcow2", "other.qcow2", Integer.toString(SIZE));
            io("other.qcow2", "write -P 3 1M 4M");
            img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2");
            io("top.qcow2", "write -P 4 512k 2M", "write -z 6M 128k", "write -P 5 7M 64k");
            byte[] before = read(dir.resolve("top.qcow2"));
            byte[] baseBefore = read(dir.resolve("base.qcow2"));

            // The kill comes within the time a run takes on this machine (learnt from runs that finished), so an
            // idle machine that finishes fast still sees kills; the last round kills early if none has yet.
            int delay = killed == 0 && round == KILLS - 1 ? random.nextInt(1 + bound / 4) : random.nextInt(bound);
            long took = runAndKill(operation, delay);
            if (took < 0) {
                killed++;
            } else {
                bound = (int) Math.max(1, Math.min(bound, took));
            }
            String what = operation + " round " + round;
            for (String f : new String[] {"base.qcow2", "other.qcow2", "top.qcow2"}) {
                Path p = dir.resolve(f);
                boolean dirty;
                try (DiskImage d = Images.open(p, OpenOptions.defaults().withoutBacking())) {
                    dirty = d.qcow2().orElseThrow().header().has(org.qcow4j.format.Feature.DIRTY);
                }
                if (dirty) {
                    Images.openWritable(p).close(); // repaired, as QEMU's next open repairs it
                }
                Processes.Result check = Processes.run(dir, "qemu-img", "check", f);
                assertTrue(check.exit() == 0 || check.exit() == 3, what + ": " + f + ":\n" + check.out() + check.err());
            }
            assertArrayEquals(before, read(dir.resolve("top.qcow2")), what + ": the overlay reads otherwise");
            if (operation.equals("commit")) {
                byte[] base = read(dir.resolve("base.qcow2"));
                for (int i = 0; i < SIZE; i++) {
                    if (base[i] != baseBefore[i] && base[i] != before[i]) {
                        throw new AssertionError(what + ": base byte " + i + " is neither old nor committed");
                    }
                }
            }
        }
        assertTrue(killed >= 1, "some rounds must end by SIGKILL, not by finishing");
    }

    /** Runs the operation in a child and kills it {@code delayMs} after it starts: -1 if killed, else its time in ms. */
    private long runAndKill(String operation, int delayMs) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp",
                System.getProperty("java.class.path"), Child.class.getName(), operation, dir.toString())
                .redirectErrorStream(true).start();
        StringBuilder out = new StringBuilder();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
            String first = in.readLine();
            assertEquals("READY", first, "child said: " + first);
            long start = System.nanoTime();
            Thread.sleep(delayMs);
            boolean killed = p.isAlive();
            if (killed) {
                p.destroyForcibly(); // SIGKILL on Linux
            }
            assertTrue(p.waitFor(30, TimeUnit.SECONDS));
            long took = (System.nanoTime() - start) / 1_000_000;
            if (!killed) { // (a killed child's pipe is closed by destroyForcibly)
                for (String line; (line = in.readLine()) != null; ) {
                    out.append(line).append('\n');
                }
                assertEquals("DONE\n", out.toString(), "child said: " + out);
            }
            return killed ? -1 : took;
        }
    }

    private byte[] read(Path image) throws IOException {
        byte[] b = new byte[SIZE];
        try (DiskImage d = Images.open(image)) {
            d.read(ByteBuffer.wrap(b), 0);
        }
        return b;
    }

    private void img(String... args) {
        String[] cmd = new String[args.length + 1];
        cmd[0] = "qemu-img";
        System.arraycopy(args, 0, cmd, 1, args.length);
        Processes.Result r = Processes.run(dir, cmd);
        assertEquals(0, r.exit(), r.err());
    }

    private void io(String image, String... commands) {
        String[] cmd = new String[2 * commands.length + 2];
        cmd[0] = "qemu-io";
        for (int i = 0; i < commands.length; i++) {
            cmd[1 + 2 * i] = "-c";
            cmd[2 + 2 * i] = commands[i];
        }
        cmd[cmd.length - 1] = image;
        Processes.Result r = Processes.run(dir, cmd);
        assertEquals(0, r.exit(), r.err());
    }
}
