package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The NBD client: images named {@code nbd:unix:SOCK} and {@code nbd+unix:///?socket=SOCK} served by the real
 * qemu-nbd, read by the qemu-io drop-in as qemu-io reads them and converted to raw as qemu-img converts them; a
 * server that never greets is a clear error within the handshake's deadline, not a hang.
 */
class NbdClientTest {
    @TempDir
    Path dir;

    /** qemu-io's timing line ("4 KiB, 1 ops; 00.00 sec (...)") differs from run to run: dropped. */
    private static String untimed(String out) {
        return out.replaceAll("(?m)^.* ops; .*$", "TIMING");
    }

    @Test
    void qemuIoAndConvertOverQemuNbd() throws Exception {
        Path image = Qemu.createQcow2(dir, "a.qcow2", "4M");
        Qemu.io(dir, image.toString(), "write -P 0xa 0x1000 0x1000", "write -z 0x10000 0x10000", "write -P 0x5c 1M 64k");
        Path socket = dir.resolve("s");
        Process p = new ProcessBuilder("qemu-nbd", "-t", "-r", "-f", "qcow2", "-k", socket.toString(), image.toString())
                .directory(dir.toFile()).redirectErrorStream(true).redirectOutput(dir.resolve("qemu-nbd.log").toFile())
                .start();
        try {
            NbdCommandTest.awaitSocket(socket, p);
            for (String name : new String[] {"nbd:unix:" + socket, "nbd+unix:///?socket=" + socket}) {
                String[] io = {"-f", "raw", "-r", "-c", "read -P 0xa 0x1000 0x1000", "-c", "read -v 0xff8 0x10",
                    "-c", "read -P 0x5c 1M 64k", "-c", "read -P 0 2M 4k", name};
                Qemu.Result ours = Qemu.asQemuIo(io).ok();
                Qemu.Result theirs = Qemu.run(dir, Qemu.concat("qemu-io", io)).ok();
                assertEquals(untimed(theirs.out()), untimed(ours.out()), name);
                assertEquals(theirs.err(), ours.err(), name);
            }
            Path ours = dir.resolve("ours.raw");
            Path theirs = dir.resolve("theirs.raw");
            Qemu.asQemuImg("convert", "-O", "raw", "nbd:unix:" + socket, ours.toString()).ok();
            Qemu.img(dir, "convert", "-O", "raw", "nbd:unix:" + socket, theirs.toString());
            assertArrayEquals(Files.readAllBytes(theirs), Files.readAllBytes(ours));
            String info = "nbd+unix:///?socket=" + socket;
            assertEquals(Qemu.img(dir, "info", "-f", "raw", info).out(), Qemu.asQemuImg("info", "-f", "raw", info).ok().out());
        } finally {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    /** Writes over NBD (simple replies to writes with structured replies negotiated), and convert into an export. */
    @Test
    void writesOverQemuNbd() throws Exception {
        Path image = Qemu.createQcow2(dir, "w.qcow2", "4M");
        Path src = Qemu.createQcow2(dir, "src.qcow2", "1M");
        Qemu.io(dir, src.toString(), "write -P 0x77 0 512k");
        Path socket = dir.resolve("w");
        Process p = new ProcessBuilder("qemu-nbd", "-t", "-f", "qcow2", "-k", socket.toString(), image.toString())
                .directory(dir.toFile()).redirectErrorStream(true).redirectOutput(dir.resolve("qemu-nbd-w.log").toFile())
                .start();
        try {
            NbdCommandTest.awaitSocket(socket, p);
            String name = "nbd:unix:" + socket;
            Qemu.Result r = Qemu.asQemuIo("-f", "raw", "-c", "write -P 0x11 1M 64k", "-c", "write -z 2M 64k", "-c",
                    "discard 3M 64k", "-c", "flush", "-c", "read -P 0x11 1M 64k", name).ok();
            assertTrue(!r.out().contains("failed") && r.err().isEmpty(), r.out() + r.err());
            Qemu.asQemuImg("convert", "-n", "-O", "raw", src.toString(), name).ok();
            Qemu.asQemuImg("convert", "-O", "raw", src.toString(), "nbd+unix:///?socket=" + socket).ok();
        } finally {
            p.destroy();
            p.waitFor(10, TimeUnit.SECONDS);
            if (p.isAlive()) {
                p.destroyForcibly();
                p.waitFor(10, TimeUnit.SECONDS);
            }
        }
        Qemu.io(dir, image.toString(), "read -P 0x77 0 512k", "read -P 0 512k 512k", "read -P 0x11 1M 64k",
                "read -P 0 2M 64k");
    }

    /** map over NBD: base:allocation's data and zeros, and x-dirty-bitmap=qemu:allocation-depth, as qemu-img maps them. */
    @Test
    void mapOverQemuNbd() throws Exception {
        Path base = Qemu.createQcow2(dir, "base.qcow2", "4M");
        Qemu.io(dir, base.toString(), "write 0 2M");
        Path top = Qemu.createQcow2(dir, "top.qcow2", "-b", base.toString(), "-F", "qcow2", "4M");
        Qemu.io(dir, top.toString(), "write 1M 2M");
        Path socket = dir.resolve("m");
        Process p = new ProcessBuilder("qemu-nbd", "-t", "-r", "-A", "-f", "qcow2", "-k", socket.toString(),
                top.toString()).directory(dir.toFile()).redirectErrorStream(true)
                .redirectOutput(dir.resolve("qemu-nbd-map.log").toFile()).start();
        try {
            NbdCommandTest.awaitSocket(socket, p);
            String img = "driver=nbd,server.type=unix,server.path=" + socket;
            for (String opts : new String[] {img, img + ",x-dirty-bitmap=qemu:allocation-depth"}) {
                String[] map = {"map", "--output=json", "--image-opts", opts};
                assertEquals(Qemu.img(dir, map).out(), Qemu.asQemuImg(map).ok().out(), opts);
            }
            assertEquals(Qemu.img(dir, "map", "nbd:unix:" + socket).out(),
                    Qemu.asQemuImg("map", "nbd:unix:" + socket).ok().out());
        } finally {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    /**
     * A qcow2 image exported as its raw bytes: every way of opening the export as an image probes it (or takes the
     * format named) and refuses qcow2 by name, through the one rule of ImageArgs.rawOverNbd, instead of serving its
     * raw bytes as the disk.
     */
    @Test
    void qcow2OnAnExportIsRefusedByNameEverywhere() throws Exception {
        Path image = Qemu.createQcow2(dir, "q.qcow2", "1M");
        Path src = dir.resolve("src.raw");
        Files.write(src, new byte[1 << 20]);
        Path socket = dir.resolve("q");
        Process p = new ProcessBuilder("qemu-nbd", "-t", "-f", "raw", "-k", socket.toString(), image.toString())
                .directory(dir.toFile()).redirectErrorStream(true).redirectOutput(dir.resolve("qemu-nbd-q.log").toFile())
                .start();
        try {
            NbdCommandTest.awaitSocket(socket, p);
            String name = "nbd+unix:///?socket=" + socket;
            String refused = "unsupported feature: the format 'qcow2' over NBD (qcow4j reads and writes raw there)";
            Qemu.Result[] results = {
                Qemu.asQemuImg("info", name),
                Qemu.asQemuImg("info", "--image-opts", "driver=qcow2,file.driver=nbd,file.server.type=unix,"
                        + "file.server.path=" + socket),
                Qemu.asQemuImg("convert", "-n", "-O", "qcow2", src.toString(), name),
                Qemu.asQemuIo("-c", "read 0 512", name),
            };
            for (Qemu.Result r : results) {
                assertEquals(1, r.exit(), r.out() + r.err());
                assertTrue(r.err().contains(refused), r.err());
            }
            // driver=nbd with no format above it is the export's bytes, in QEMU as here: nothing to refuse
            String[] raw = {"info", "--image-opts", "driver=nbd,server.type=unix,server.path=" + socket};
            assertEquals(Qemu.img(dir, raw).out(), Qemu.asQemuImg(raw).ok().out());
            // file-posix's keys are not the NBD node's: QEMU's words name the protocol
            for (String key : new String[] {"x=1", "locking=off", "aio=native"}) {
                for (String opts : new String[] {raw[2] + "," + key, "driver=raw,file.driver=nbd,file.server.type=unix,"
                        + "file.server.path=" + socket + ",file." + key}) {
                    Qemu.Result theirs = Qemu.run(dir, "qemu-img", "info", "--image-opts", opts);
                    Qemu.Result ours = Qemu.asQemuImg("info", "--image-opts", opts);
                    assertEquals(theirs.err(), ours.err(), opts);
                    assertEquals(theirs.exit(), ours.exit(), opts);
                }
            }
        } finally {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void silentServerTimesOut() throws Exception {
        Path socket = dir.resolve("mute");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket));
            org.qcow4j.nbd.NbdClient.Target t = org.qcow4j.nbd.NbdClient.parse("nbd:unix:" + socket);
            long start = System.nanoTime();
            IOException e = org.junit.jupiter.api.Assertions.assertThrows(IOException.class,
                    () -> org.qcow4j.nbd.NbdClient.open(t, true, false, 300, 1000));
            assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(10));
            assertTrue(e.getMessage().contains("no handshake within 300 ms") && e.getMessage().contains(socket.toString()),
                    e.getMessage());
        }
    }

    @Test
    void badGreetingNamesTheField() throws Exception {
        Path socket = dir.resolve("bad");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket));
            Thread t = new Thread(() -> {
                try (SocketChannel c = server.accept()) {
                    c.write(ByteBuffer.wrap("NBDMAGICIHAVEOPT\0\3".getBytes(java.nio.charset.StandardCharsets.ISO_8859_1)));
                    c.read(ByteBuffer.allocate(4));
                    ByteBuffer go = ByteBuffer.allocate(64);
                    c.read(go);
                    // the first option (NBD_OPT_STRUCTURED_REPLY) answered with a reply claiming 1 GiB of data
                    ByteBuffer r = ByteBuffer.allocate(20).putLong(0x3e889045565a9L).putInt(8).putInt(1).putInt(1 << 30);
                    c.write(r.flip());
                    Thread.sleep(2000);
                } catch (IOException | InterruptedException e) {
                    // the client hung up
                }
            });
            t.setDaemon(true);
            t.start();
            IOException e = org.junit.jupiter.api.Assertions.assertThrows(IOException.class, () ->
                    org.qcow4j.nbd.NbdClient.open(org.qcow4j.nbd.NbdClient.parse("nbd:unix:" + socket), true, false,
                            5000, 1000));
            assertTrue(e.getMessage().contains("option reply length 1073741824"), e.getMessage());
            t.join(5000);
        }
    }

    private static ByteBuffer readN(SocketChannel c, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining() && c.read(b) >= 0) {
            // more
        }
        return b.flip();
    }

    private static void optionReply(SocketChannel c, int option, int type, ByteBuffer data) throws IOException {
        ByteBuffer r = ByteBuffer.allocate(20 + data.remaining()).putLong(0x3e889045565a9L).putInt(option).putInt(type)
                .putInt(data.remaining()).put(data);
        c.write(r.flip());
    }

    /**
     * A server without structured replies (its simple replies used), whose second READ reply carries another
     * handle: the first read gives the server's bytes, the second fails naming the handle.
     */
    @Test
    void simpleRepliesAndAWrongHandle() throws Exception {
        Path socket = dir.resolve("simple");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket));
            Thread t = new Thread(() -> {
                try (SocketChannel c = server.accept()) {
                    c.write(ByteBuffer.wrap("NBDMAGICIHAVEOPT\0\3".getBytes(java.nio.charset.StandardCharsets.ISO_8859_1)));
                    readN(c, 4);
                    for (int n = 0; n < 2; n++) {
                        ByteBuffer h = readN(c, 16);
                        h.getLong();
                        int option = h.getInt();
                        readN(c, h.getInt());
                        if (option == 7) {
                            optionReply(c, 7, 3, ByteBuffer.allocate(12).putShort((short) 0).putLong(1 << 20)
                                    .putShort((short) 3).flip());
                            optionReply(c, 7, 1, ByteBuffer.allocate(0));
                        } else {
                            optionReply(c, option, 0x80000001, ByteBuffer.allocate(0)); // ERR_UNSUP
                        }
                    }
                    for (int n = 0; n < 2; n++) {
                        ByteBuffer req = readN(c, 28);
                        long handle = req.getLong(8);
                        ByteBuffer reply = ByteBuffer.allocate(16 + 512).putInt(0x67446698).putInt(0)
                                .putLong(n == 0 ? handle : handle + 7);
                        while (reply.hasRemaining()) {
                            reply.put((byte) 0x5a);
                        }
                        c.write(reply.flip());
                    }
                    readN(c, 28);
                } catch (IOException e) {
                    // the client hung up
                }
            });
            t.setDaemon(true);
            t.start();
            try (org.qcow4j.DiskImage image = org.qcow4j.nbd.NbdClient.open(
                    org.qcow4j.nbd.NbdClient.parse("nbd:unix:" + socket), true, false, 5000, 5000)) {
                assertEquals(1 << 20, image.size());
                ByteBuffer b = ByteBuffer.allocate(512);
                image.read(b, 0);
                assertEquals(0x5a, b.get(511));
                assertTrue(image.extentAt(0, 4096).data()); // no meta context: data
                IOException e = org.junit.jupiter.api.Assertions.assertThrows(IOException.class,
                        () -> image.read(ByteBuffer.allocate(512), 512));
                assertTrue(e.getMessage().contains("reply handle") && e.getMessage().contains(socket.toString()),
                        e.getMessage());
            }
            t.join(5000);
        }
    }
}
