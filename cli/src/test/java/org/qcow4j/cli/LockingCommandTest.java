package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.testing.ImageLocks;

/**
 * The commands under QEMU's image locking, as a user meets it: while qemu-io (standing in for a running VM) writes
 * an image, every writing command refuses it and every reading one does too unless {@code -U}, with QEMU's two lines
 * and nothing changed; while our {@code io} holds an image, qemu-img and qemu-io refuse it.
 */
class LockingCommandTest {
    @TempDir
    Path dir;
    private String img;
    private Process holder;

    @BeforeEach
    void image() {
        img = dir.resolve("disk.qcow2").toString();
        Qemu.img(dir, "create", "-q", "-f", "qcow2", img, "64M");
        Qemu.io(dir, img, "write -P 7 0 64k");
    }

    @AfterEach
    void stopHolder() throws InterruptedException {
        ImageLocks.stop(holder);
    }

    @Test
    void whileQemuWritesTheImageOurCommandsRefuseIt() throws IOException {
        holder = ImageLocks.qemuIoHolding(Path.of(img));
        byte[] before = Files.readAllBytes(Path.of(img));
        String out = dir.resolve("out.qcow2").toString();
        String writeRefused = "qcow4j: " + img + ": Failed to get \"write\" lock\n" + usingIt();
        String readRefused = "qcow4j: " + img + ": Failed to get shared \"write\" lock\n" + usingIt();
        assertRefused(writeRefused, "check", "-r", "all", img);
        String src = dir.resolve("src.qcow2").toString();
        Qemu.img(dir, "create", "-q", "-f", "qcow2", src, "1M");
        assertRefused(writeRefused, "convert", "-O", "qcow2", src, img);
        assertRefused(readRefused, "info", img);
        assertRefused(readRefused, "map", img);
        assertRefused(readRefused, "check", img);
        assertRefused(readRefused, "convert", "-O", "raw", img, out);
        assertRefused("qcow4j: can't open device " + img + ": Failed to get \"write\" lock\n" + usingIt(),
                "io", "-c", "write 0 512", img);
        assertRefused("qcow4j: can't open device " + img + ": Failed to get shared \"write\" lock\n" + usingIt(),
                "io", "-r", "-c", "read 0 512", img);
        Qemu.Result create = Qemu.qcow4j("create", "-q", "-f", "qcow2", img, "1M");
        assertEquals(1, create.exit());
        assertEquals(writeRefused, create.err());
        assertArrayEquals(before, Files.readAllBytes(Path.of(img)), "nothing changed");

        assertEquals(0, Qemu.qcow4j("info", "-U", img).exit());
        assertEquals(0, Qemu.qcow4j("map", "-U", img).exit());
        assertEquals(0, Qemu.qcow4j("check", "-U", img).exit());
        assertEquals(0, Qemu.qcow4j("convert", "-U", "-O", "raw", img, out).exit());
        assertEquals(0, Qemu.qcow4j("io", "-r", "-U", "-c", "read -P 7 0 64k", img).exit());
        Qemu.Result shareWrite = Qemu.qcow4j("io", "-U", "-c", "write 0 512", img);
        assertEquals("qcow4j: can't open device " + img + ": force-share=on can only be used with read-only images\n",
                shareWrite.err());
    }

    @Test
    void whileOurIoHoldsTheImageQemuRefusesIt() throws IOException, InterruptedException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        holder = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), Main.class.getName(), "io", img)
                .redirectErrorStream(true).start();
        OutputStream stdin = holder.getOutputStream();
        stdin.write("write -P 5 0 4k\n".getBytes(StandardCharsets.UTF_8));
        stdin.flush();
        ImageLocks.await(Path.of(img), holder); // io's output is buffered until it ends: its locks say it has the image open

        Qemu.Result info = Qemu.run(dir, "qemu-img", "info", img);
        assertEquals(1, info.exit());
        assertEquals("qemu-img: Could not open '" + img + "': Failed to get shared \"write\" lock\n"
                + "Is another process using the image [" + img + "]?\n", info.err());
        assertTrue(Qemu.run(dir, "qemu-io", "-c", "write 0 512", img).err().contains("Failed to get \"write\" lock"));
        assertTrue(Qemu.run(dir, "qemu-img", "check", "-r", "all", img).err().contains("Failed to get \"write\" lock"));
        assertEquals(0, Qemu.run(dir, "qemu-img", "info", "-U", img).exit());

        stdin.close(); // EOF: io closes the image and exits
        assertTrue(holder.waitFor(30, TimeUnit.SECONDS));
        String output = new String(holder.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, holder.exitValue(), output);
        assertTrue(output.startsWith("wrote 4096/4096 bytes at offset 0\n"), output);
        holder = null;
        Qemu.img(dir, "check", img);
        Qemu.io(dir, img, "read -P 5 0 4k");
    }

    private void assertRefused(String expectedErr, String... args) {
        Qemu.Result r = Qemu.qcow4j(args);
        assertEquals(1, r.exit(), () -> String.join(" ", args) + ": " + r.err());
        assertEquals(expectedErr, r.err(), String.join(" ", args));
    }

    private String usingIt() {
        return "Is another process using the image [" + img + "]?\n";
    }
}
