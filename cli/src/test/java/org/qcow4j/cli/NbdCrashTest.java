package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code kill -9} of {@code ./qcow4j nbd} (a child JVM) while clients write: the image it leaves is never corrupt
 * ({@code qemu-img check} may find leaked clusters, nothing worse), and every write the server acknowledged after FUA,
 * or before an acknowledged FLUSH, reads back.
 */
class NbdCrashTest {
    private static final int MIB = 1 << 20;

    @TempDir
    Path dir;

    private Process server(Path socket, String image) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), Main.class.getName(), "nbd", "-f", "qcow2", "-k",
                socket.toString(), image));
        Files.deleteIfExists(socket);
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true)
                .redirectOutput(dir.resolve("server.log").toFile()).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (System.nanoTime() < deadline && p.isAlive() && !Files.exists(socket)) {
            Thread.sleep(20);
        }
        assertTrue(p.isAlive() && Files.exists(socket), "server did not start: " + Files.readString(dir.resolve("server.log")));
        return p;
    }

    private static void kill9(Process p) throws InterruptedException {
        if (p != null && p.isAlive()) {
            p.destroyForcibly(); // SIGKILL: no shutdown hook, no flush
            assertTrue(p.waitFor(10, TimeUnit.SECONDS));
        }
    }

    /** qemu-img check: clean (0) or leaks only (3); corruption (2) or failure (1) fails the test. */
    private void checkNotCorrupt(String image) {
        Qemu.Result r = Qemu.run(dir, "qemu-img", "check", image);
        assertTrue(r.exit() == 0 || r.exit() == 3, "exit " + r.exit() + "\n" + r.out() + r.err());
        assertFalse(r.out().contains("ERROR"), r.out());
    }

    @Test
    void killedDuringNbdcopyWritesLeavesNoCorruption() throws Exception {
        Qemu.run(dir, "qemu-img", "create", "-q", "-f", "qcow2", "target.qcow2", "64M").ok();
        Path socket = dir.resolve("crash.sock");
        Process srv = server(socket, "target.qcow2");
        Process copy = null;
        try {
            // nbdcopy reads a pipe we feed, so the server is certainly killed in the middle of the copy
            copy = new ProcessBuilder("nbdcopy", "--flush", "-", "nbd+unix:///?socket=" + socket)
                    .directory(dir.toFile()).redirectErrorStream(true)
                    .redirectOutput(dir.resolve("nbdcopy.log").toFile()).start();
            Random r = new Random(99);
            byte[] chunk = new byte[MIB];
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            try (OutputStream in = copy.getOutputStream()) {
                for (int i = 0; i < 56 && System.nanoTime() < deadline; i++) {
                    r.nextBytes(chunk);
                    if (i % 3 == 2) {
                        Arrays.fill(chunk, (byte) 0); // some zero runs: nbdcopy sends them as zero writes
                    }
                    in.write(chunk);
                    in.flush();
                    if (Files.size(dir.resolve("target.qcow2")) > 12 * MIB) {
                        break; // the server has written clusters and tables: kill it mid-stream
                    }
                }
                kill9(srv);
            } catch (IOException e) {
                // nbdcopy gave up when the server died under it
            }
            assertTrue(copy.waitFor(20, TimeUnit.SECONDS), "nbdcopy did not end");
            assertTrue(copy.exitValue() != 0, "the copy should have failed with its server killed");
        } finally {
            kill9(srv);
            if (copy != null) {
                copy.destroyForcibly();
                copy.waitFor(10, TimeUnit.SECONDS);
            }
        }
        assertTrue(Files.size(dir.resolve("target.qcow2")) > 4 * MIB, "nothing was written before the kill");
        checkNotCorrupt("target.qcow2");
    }

    @Test
    void writesAcknowledgedAfterFuaOrFlushSurviveKill9() throws Exception {
        Qemu.run(dir, "qemu-img", "create", "-q", "-f", "qcow2", "fua.qcow2", "16M").ok();
        Path socket = dir.resolve("fua.sock");
        Process srv = server(socket, "fua.qcow2");
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(socket));
            ch.configureBlocking(false); // every wait below is bounded
            go(ch);
            // into unallocated clusters, so that FUA and FLUSH must make the new L2 table and refcounts durable too
            write(ch, 0, 1, 9 * MIB, 0xa5, 3 * 65536); // a plain WRITE...
            assertEquals(0, simpleReply(ch, 1));
            request(ch, 0, 3, 2, 0, 0); // ...then FLUSH
            assertEquals(0, simpleReply(ch, 2));
            write(ch, 1, 3, 5 * MIB + 4096, 0x5a, 65536); // WRITE with FUA, the last durable one
            assertEquals(0, simpleReply(ch, 3));
            write(ch, 0, 4, 12 * MIB, 0x33, 65536); // acknowledged but never flushed: may be lost, must not corrupt
            assertEquals(0, simpleReply(ch, 4));
            kill9(srv);
        } finally {
            kill9(srv);
        }
        checkNotCorrupt("fua.qcow2");
        Qemu.Result r = Qemu.run(dir, "qemu-io", "-f", "qcow2", "-c", "read -P 0x5a " + (5 * MIB + 4096) + " 64k",
                "-c", "read -P 0xa5 9M 192k", "-c", "read -P 0 0 5M", "fua.qcow2").ok();
        assertFalse(r.out().contains("Pattern verification failed"), r.out());
    }

    /** The handshake a minimal client does: fixed newstyle, no zeroes, GO to the default export (simple replies). */
    private static void go(SocketChannel ch) throws IOException {
        ByteBuffer greeting = read(ch, 18);
        assertEquals(0x49484156454f5054L, greeting.getLong(8));
        send(ch, ByteBuffer.allocate(4).putInt(3).flip());
        send(ch, ByteBuffer.allocate(16 + 6).putLong(0x49484156454f5054L).putInt(7).putInt(6).putInt(0)
                .putShort((short) 0).flip());
        for (int i = 0; i < 16; i++) { // INFO replies, then ACK
            ByteBuffer h = read(ch, 20);
            int type = h.getInt(12);
            read(ch, h.getInt(16));
            if (type == 1) {
                return;
            }
            assertEquals(3, type, "GO refused");
        }
        throw new AssertionError("no ACK to GO");
    }

    private static void request(SocketChannel ch, int flags, int type, long cookie, long offset, int length)
            throws IOException {
        ByteBuffer b = ByteBuffer.allocate(28).putInt(0x25609513).putShort((short) flags).putShort((short) type)
                .putLong(cookie).putLong(offset).putInt(length).flip();
        send(ch, b);
    }

    /** Writes all of {@code b} on the non-blocking channel, within 10 s. */
    private static void send(SocketChannel ch, ByteBuffer b) throws IOException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (b.hasRemaining()) {
            if (ch.write(b) == 0) {
                if (System.nanoTime() > deadline) {
                    throw new IOException("server does not read");
                }
                pause();
            }
        }
    }

    private static void pause() throws IOException {
        try {
            Thread.sleep(1);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException(e);
        }
    }

    private static void write(SocketChannel ch, int flags, long cookie, long offset, int pattern, int length)
            throws IOException {
        request(ch, flags, 1, cookie, offset, length);
        byte[] data = new byte[length];
        Arrays.fill(data, (byte) pattern);
        send(ch, ByteBuffer.wrap(data));
    }

    /** A simple reply's error, checking its cookie. */
    private static int simpleReply(SocketChannel ch, long cookie) throws IOException {
        ByteBuffer r = read(ch, 16);
        assertEquals(0x67446698, r.getInt(0));
        assertEquals(cookie, r.getLong(8));
        return r.getInt(4);
    }

    private static ByteBuffer read(SocketChannel ch, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (b.hasRemaining()) {
            int got = ch.read(b);
            if (got < 0 || System.nanoTime() > deadline) {
                throw new IOException("server closed or timed out after " + b.position() + " of " + n + " bytes");
            }
            if (got == 0) {
                pause();
            }
        }
        return b.flip();
    }
}
