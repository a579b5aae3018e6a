package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.testing.Processes;

/**
 * QEMU's image locking, both ways, with the real tools: a qemu-io holding an image (standing in for a running VM)
 * makes the library refuse it as QEMU would, and an image the library holds makes qemu-img and qemu-io refuse it;
 * the lock bytes are QEMU's own; a killed holder's locks go with it; and the locks survive the process opening the
 * same files again (POSIX locks vanish when any descriptor of the file closes).
 */
class ImageLockingTest {
    @TempDir
    Path dir;
    private Path img;
    private Process holder;

    @BeforeEach
    void image() {
        img = dir.resolve("disk.qcow2");
        qemuImg("create", "-q", "-f", "qcow2", img.toString(), "64M");
        assertEquals(0, Processes.run(dir, "qemu-io", "-c", "write -P 7 0 64k", img.toString()).exit());
    }

    @AfterEach
    void stopHolder() throws InterruptedException {
        if (holder != null) {
            holder.destroyForcibly();
            holder.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void aQemuWriterMakesEveryOpenButForceShareRefuse() throws IOException {
        holdWithQemuIo();
        byte[] before = Files.readAllBytes(img);
        ImageLockedException w = assertThrows(ImageLockedException.class, () -> Images.openWritable(img));
        assertEquals(img + ": Failed to get \"write\" lock", w.getMessage());
        ImageLockedException r = assertThrows(ImageLockedException.class, () -> Images.open(img));
        assertEquals(img + ": Failed to get shared \"write\" lock", r.getMessage());
        assertThrows(ImageLockedException.class, () -> Images.check(img));
        assertThrows(ImageLockedException.class, () -> Images.repair(img, RepairMode.ALL, line -> { }));
        assertThrows(ImageLockedException.class, () -> Images.create(img, CreateOptions.defaults(1 << 20)));
        assertThrows(ImageLockedException.class, () -> Images.createRaw(img, 1 << 20));
        try (DiskImage shared = Images.open(img, OpenOptions.defaults().withForceShare(true))) {
            ByteBuffer b = ByteBuffer.allocate(1);
            shared.read(b, 0);
            assertEquals(7, b.get(0));
        }
        assertEquals(0, Images.check(img, OpenOptions.defaults().withForceShare(true), line -> { }).corruptions());
        assertArrayEquals(before, Files.readAllBytes(img), "nothing written");
    }

    @Test
    void aQemuReaderLetsUsReadButNotWrite() throws IOException {
        holdWithQemuIo("-r");
        assertThrows(ImageLockedException.class, () -> Images.openWritable(img));
        Images.open(img).close();
    }

    @Test
    void anImageWeWriteIsRefusedByQemuAndReadableWithForceShare() throws IOException {
        try (WritableImage w = Images.openWritable(img)) {
            w.write(ByteBuffer.wrap(new byte[] {9}), 0);
            Processes.Result info = Processes.run(dir, "qemu-img", "info", img.toString());
            assertEquals(1, info.exit());
            assertEquals("qemu-img: Could not open '" + img + "': Failed to get shared \"write\" lock\n"
                    + "Is another process using the image [" + img + "]?\n", info.err());
            Processes.Result io = Processes.run(dir, "qemu-io", "-c", "write 0 512", img.toString());
            assertTrue(io.err().contains("Failed to get \"write\" lock"), io.err());
            Processes.Result repair = Processes.run(dir, "qemu-img", "check", "-r", "all", img.toString());
            assertTrue(repair.err().contains("Failed to get \"write\" lock"), repair.err());
            assertEquals(0, Processes.run(dir, "qemu-img", "info", "-U", img.toString()).exit());
        }
        assertEquals(0, Processes.run(dir, "qemu-img", "check", img.toString()).exit(), "released on close");
    }

    @Test
    void anImageWeReadIsReadableByQemuButNotWritable() throws IOException {
        try (DiskImage r = Images.open(img)) {
            assertEquals(0, Processes.run(dir, "qemu-img", "info", img.toString()).exit());
            Processes.Result io = Processes.run(dir, "qemu-io", "-c", "write 0 512", img.toString());
            assertTrue(io.err().contains("Failed to get \"write\" lock"), io.err());
        }
    }

    @Test
    void ourLockBytesAreQemus() throws IOException, InterruptedException {
        holdWithQemuIo();
        Set<String> qemuWriter = lockBytes(holder.pid());
        stopHolder();
        holder = null;
        holdWithQemuIo("-r");
        Set<String> qemuReader = lockBytes(holder.pid());
        stopHolder();
        holder = null;
        long self = ProcessHandle.current().pid();
        try (WritableImage w = Images.openWritable(img)) {
            assertEquals(qemuWriter, lockBytes(self));
        }
        try (DiskImage r = Images.open(img)) {
            assertEquals(qemuReader, lockBytes(self));
        }
        assertEquals(Set.of(), lockBytes(self));
        assertEquals(Set.of("100-101", "103-103", "201-201", "203-203"), qemuWriter);
        assertEquals(Set.of("100-100", "201-201", "203-203"), qemuReader);
    }

    @Test
    void twoQcow4jProcessesDoNotWriteOneImageAndAKilledOneLetsGo() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        holder = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), Holder.class.getName(),
                img.toString()).redirectErrorStream(true).start();
        BufferedReader out = new BufferedReader(new InputStreamReader(holder.getInputStream(), StandardCharsets.UTF_8));
        assertEquals("HOLDING", out.readLine());
        assertThrows(ImageLockedException.class, () -> Images.openWritable(img));
        holder.destroyForcibly(); // SIGKILL: the kernel drops its locks
        assertTrue(holder.waitFor(10, TimeUnit.SECONDS));
        holder = null;
        Images.openWritable(img).close();
    }

    /** The child of the test above: holds the image open for writing until killed. */
    public static final class Holder {
        public static void main(String[] args) throws Exception {
            try (WritableImage w = Images.openWritable(Path.of(args[0]))) {
                System.out.println("HOLDING");
                System.out.flush();
                Thread.sleep(60_000);
            }
        }
    }

    @Test
    void locksSurviveTheChainAndReopeningTheSameFiles() throws IOException {
        Path overlay = dir.resolve("overlay.qcow2");
        qemuImg("create", "-q", "-f", "qcow2", "-b", img.toString(), "-F", "qcow2", overlay.toString());
        try (WritableImage w = Images.openWritable(overlay)) {
            // The same files opened and closed again in this process: POSIX locks would all go with a close.
            Images.open(img).close();
            Images.open(overlay, OpenOptions.defaults().withForceShare(true)).close();
            assertEquals("qcow2", Images.probeFormat(overlay));
            Images.check(img).diagnostics();
            Processes.Result info = Processes.run(dir, "qemu-img", "info", overlay.toString());
            assertTrue(info.err().contains("Failed to get shared \"write\" lock"), info.err());
            Processes.Result base = Processes.run(dir, "qemu-io", "-c", "write 0 512", img.toString());
            assertTrue(base.err().contains("Failed to get \"write\" lock"), "the backing file is locked too: " + base.err());
            w.write(ByteBuffer.wrap(new byte[] {1}), 0);
        }
        assertEquals(0, Processes.run(dir, "qemu-img", "check", overlay.toString()).exit());
    }

    /** Starts {@code qemu-io [FLAGS] -c "sleep ..." IMAGE} and waits until its locks are in place. */
    private void holdWithQemuIo(String... flags) throws IOException {
        List<String> cmd = new java.util.ArrayList<>(List.of("qemu-io"));
        cmd.addAll(List.of(flags));
        cmd.addAll(List.of("-c", "sleep 60000", img.toString()));
        holder = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (lockBytes(holder.pid()).isEmpty() && holder.isAlive()) {
            if (System.nanoTime() > deadline) {
                fail("qemu-io took no locks within 10 s");
            }
            sleep();
        }
        assertTrue(holder.isAlive(), "qemu-io " + cmd + " ended early");
    }

    private static void sleep() {
        try {
            Thread.sleep(10);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    /**
     * The byte ranges locked on the image by process {@code pid} ("100-101"), from /proc/locks: POSIX locks show
     * their process, and an OFD lock (QEMU's) shows -1, so for QEMU's the holder is the only other process.
     */
    private Set<String> lockBytes(long pid) throws IOException {
        String ino = ":" + Files.getAttribute(img, "unix:ino") + " ";
        Set<String> ranges = new TreeSet<>();
        for (String line : Files.readAllLines(Path.of("/proc/locks"))) {
            if (line.contains(ino) && !line.contains("->")) {
                String[] f = line.trim().split("\\s+");
                boolean mine = f[1].equals("OFDLCK") ? pid != ProcessHandle.current().pid() : f[4].equals(Long.toString(pid));
                if (mine) {
                    ranges.add(f[6] + "-" + f[7]);
                }
            }
        }
        return ranges;
    }

    private void qemuImg(String... args) {
        List<String> cmd = new java.util.ArrayList<>(List.of("qemu-img"));
        cmd.addAll(List.of(args));
        Processes.Result r = Processes.run(dir, cmd.toArray(String[]::new));
        assertEquals(0, r.exit(), r.err());
    }
}
