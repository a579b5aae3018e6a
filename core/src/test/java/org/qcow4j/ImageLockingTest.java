package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.testing.ImageLocks;
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
        ImageLocks.stop(holder);
    }

    @Test
    void aQemuWriterMakesEveryOpenButForceShareRefuse() throws IOException {
        holder = ImageLocks.qemuIoHolding(img);
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
        holder = ImageLocks.qemuIoHolding(img, "-r");
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
    @SuppressWarnings("try") // the images are open only for their locks
    void anImageWeReadIsReadableByQemuButNotWritable() throws IOException {
        try (DiskImage r = Images.open(img)) {
            assertEquals(0, Processes.run(dir, "qemu-img", "info", img.toString()).exit());
            Processes.Result io = Processes.run(dir, "qemu-io", "-c", "write 0 512", img.toString());
            assertTrue(io.err().contains("Failed to get \"write\" lock"), io.err());
        }
    }

    @Test
    @SuppressWarnings("try") // the images are open only for their locks
    void ourLockBytesAreQemus() throws IOException, InterruptedException {
        holder = ImageLocks.qemuIoHolding(img);
        Set<String> qemuWriter = ImageLocks.held(img, holder.pid());
        stopHolder();
        holder = null;
        holder = ImageLocks.qemuIoHolding(img, "-r");
        Set<String> qemuReader = ImageLocks.held(img, holder.pid());
        stopHolder();
        holder = null;
        long self = ProcessHandle.current().pid();
        try (WritableImage w = Images.openWritable(img)) {
            assertEquals(qemuWriter, ImageLocks.held(img, self));
        }
        try (DiskImage r = Images.open(img)) {
            assertEquals(qemuReader, ImageLocks.held(img, self));
        }
        assertEquals(Set.of(), ImageLocks.held(img, self));
        assertEquals(Set.of("100-101", "103-103", "201-201", "203-203"), qemuWriter);
        assertEquals(Set.of("100-100", "201-201", "203-203"), qemuReader);
    }

    /** An external data file is locked as QEMU's data child locks it: the write permission shared (no byte 201). */
    @Test
    @SuppressWarnings("try") // the images are open only for their locks
    void ourDataFileLockBytesAreQemus() throws IOException, InterruptedException {
        Path data = dir.resolve("d.data").toAbsolutePath(); // qemu-io runs elsewhere: an absolute name
        Path df = dir.resolve("df.qcow2");
        qemuImg("create", "-q", "-f", "qcow2", "-o", "data_file=" + data, df.toString(), "1M");
        holder = ImageLocks.qemuIoHolding(df);
        ImageLocks.await(data, holder); // qemu-io locks the data file after the image
        Set<String> qemuWriter = ImageLocks.held(data, holder.pid());
        stopHolder();
        holder = ImageLocks.qemuIoHolding(df, "-r");
        ImageLocks.await(data, holder);
        Set<String> qemuReader = ImageLocks.held(data, holder.pid());
        stopHolder();
        holder = null;
        long self = ProcessHandle.current().pid();
        try (WritableImage w = Images.openWritable(df)) {
            assertEquals(qemuWriter, ImageLocks.held(data, self));
        }
        try (DiskImage r = Images.open(df)) {
            assertEquals(qemuReader, ImageLocks.held(data, self));
        }
        assertEquals(Set.of("100-101", "103-103", "203-203"), qemuWriter);
        assertEquals(Set.of("100-100", "203-203"), qemuReader);
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
        @SuppressWarnings("try") // the image is open only for its locks
        public static void main(String[] args) throws Exception {
            try (WritableImage w = Images.openWritable(Path.of(args[0]))) {
                System.out.println("HOLDING");
                System.out.flush();
                Thread.sleep(60_000);
            }
        }
    }

    @Test
    @SuppressWarnings("try") // the images are open only for their locks
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

    private void qemuImg(String... args) {
        List<String> cmd = new java.util.ArrayList<>(List.of("qemu-img"));
        cmd.addAll(List.of(args));
        Processes.Result r = Processes.run(dir, cmd.toArray(String[]::new));
        assertEquals(0, r.exit(), r.err());
    }
}
