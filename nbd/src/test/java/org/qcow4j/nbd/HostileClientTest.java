package org.qcow4j.nbd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.qcow4j.nbd.NbdTools.ok;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.WritableImage;

/**
 * Clients that break the protocol, speaking raw bytes over TCP on 127.0.0.1: each gets qemu-nbd 7.2's answer
 * (EINVAL with its message, as observed from qemu-nbd) or loses its own connection; the server and the other
 * clients go on, no thread or file descriptor is left behind, and the image stays clean.
 */
class HostileClientTest {
    private static final int EINVAL = 22;
    @TempDir
    Path dir;
    private WritableImage rw;
    private DiskImage ro;
    private NbdServer server;
    private InetSocketAddress address;
    private final List<String> log = java.util.Collections.synchronizedList(new ArrayList<>());

    @BeforeEach
    void start() throws IOException {
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "rw.qcow2", "8M");
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "ro.qcow2", "4M");
        ok(dir, "qemu-io", "-c", "write -P 0x5a 0 1M", "ro.qcow2");
        rw = Images.openWritable(dir.resolve("rw.qcow2"));
        ro = Images.open(dir.resolve("ro.qcow2"));
        server = NbdServer.builder().export(NbdExport.writable("rw", rw)).export(NbdExport.readOnly("ro", ro))
                .tcp(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0)).maxConnections(0).log(log::add)
                .start();
        address = (InetSocketAddress) server.address();
    }

    @AfterEach
    void stop() throws IOException {
        try {
            server.close();
        } finally {
            if (rw != null) {
                rw.close();
            }
            ro.close();
        }
    }

    private RawClient client(String export, boolean structured) throws IOException {
        RawClient c = new RawClient(address).greet(3);
        assertEquals(export.equals("rw") ? 8 << 20 : 4 << 20, c.go(export, structured));
        return c;
    }

    /** A well-behaved client still reads the right bytes. */
    private void goodClientReads() throws IOException {
        try (RawClient c = client("ro", false)) {
            c.request(0, 0, 77, 4096, 8192);
            RawClient.Reply r = c.reply(8192);
            assertEquals(0, r.error());
            byte[] want = new byte[8192];
            java.util.Arrays.fill(want, (byte) 0x5a);
            assertArrayEquals(want, r.payload());
        }
    }

    private static void assertError(RawClient.Reply r, long cookie, String message) {
        assertEquals(cookie, r.cookie());
        assertEquals(EINVAL, r.error());
        assertEquals(0x8001, r.type());
        assertTrue(r.message().startsWith(message), r.message());
    }

    @Test
    void handshakeAbuseDropsOnlyThatClient() throws IOException {
        try (RawClient c = new RawClient(address).greet(0x80)) { // unknown client flag
            assertTrue(c.closedByServer());
        }
        try (RawClient c = new RawClient(address).greet(3)) { // bad option magic
            c.out.writeLong(0x1122334455667788L);
            c.out.writeInt(7);
            c.out.writeInt(0);
            c.out.flush();
            assertTrue(c.closedByServer());
        }
        try (RawClient c = new RawClient(address).greet(3)) { // option longer than 32 MiB: never allocated
            c.out.writeLong(RawClient.IHAVEOPT);
            c.out.writeInt(7);
            c.out.writeInt(0x7fffffff);
            c.out.flush();
            assertTrue(c.closedByServer());
        }
        try (RawClient c = new RawClient(address).greet(3)) {
            c.option(99, new byte[] {1, 2, 3}); // unknown option: ERR_UNSUP, then the handshake goes on
            RawClient.OptionReply r = c.optionReply();
            assertEquals(0x80000001, r.type());
            assertEquals("Unsupported option 99 (<unknown>)", r.text());
            c.option(7, ByteBuffer.allocate(8).putInt(100).array()); // name longer than the option
            assertEquals(0x80000003, c.optionReply().type());
            c.option(7, ByteBuffer.allocate(8).putInt(2).put((byte) 110).put((byte) 111).putShort((short) 0).array()); // no such export
            RawClient.OptionReply u = c.optionReply();
            assertEquals(0x80000006, u.type());
            assertEquals("export 'no' not present", u.text());
            c.option(10, ByteBuffer.allocate(8).array()); // SET_META_CONTEXT before STRUCTURED_REPLY
            assertEquals(0x80000003, c.optionReply().type());
            assertEquals(4 << 20, c.go("ro", true));
        }
        try (RawClient c = new RawClient(address).greet(3)) { // a client that leaves mid-option
            c.out.writeLong(RawClient.IHAVEOPT);
            c.out.writeInt(7);
            c.out.writeInt(1000);
            c.out.write(new byte[10]);
            c.out.flush();
        }
        goodClientReads();
    }

    @Test
    void badRequestsGetQemuNbdsErrors() throws IOException {
        try (RawClient c = client("rw", true)) {
            c.request(0, 0, 1, 0, (32 << 20) + 1); // oversized read: EINVAL, the connection goes on
            assertError(c.reply(0), 1, "len (33554433 ) is larger than max len (33554432)");
            c.request(0, 0, 2, (8 << 20) - 512, 1024); // past the end
            assertError(c.reply(0), 2, "operation past EOF; From: 8388096, Len: 1024, Size: 8388608");
            c.request(0, 0, 3, -1L, 1);
            assertError(c.reply(0), 3, "operation past EOF; From: 18446744073709551615");
            c.request(0, 1, 4, 8 << 20, 512); // write past the end: the payload is read, then EINVAL
            c.out.write(new byte[512]);
            c.out.flush();
            assertError(c.reply(0), 4, "operation past EOF");
            c.request(0, 42, 5, 0, 1);
            assertError(c.reply(0), 5, "invalid request type (42) received");
            c.request(0x20, 0, 6, 0, 1);
            assertError(c.reply(0), 6, "unsupported flags for command read (got 0x20)");
            c.request(0, 7, 7, 0, 4096); // block status without a context
            assertError(c.reply(0), 7, "CMD_BLOCK_STATUS not negotiated");
            c.request(1, 0, 8, 0, 0); // an empty read with FUA: a DONE chunk
            RawClient.Reply none = c.reply(0);
            assertEquals(0, none.type());
            assertTrue(none.done());
            c.request(0, 1, 9, 0, (32 << 20) + 4096); // oversized write: answered, then the stream is lost
            assertError(c.reply(0), 9, "len (33558528 ) is larger");
            assertTrue(c.closedByServer());
        }
        try (RawClient c = client("ro", false)) { // simple replies: the error number only
            c.request(0, 1, 10, 0, 512);
            c.out.write(new byte[512]);
            c.out.flush();
            RawClient.Reply r = c.reply(0);
            assertTrue(r.simple());
            assertEquals(EINVAL, r.error());
            c.request(0, 4, 11, 0, 512);
            assertEquals(EINVAL, c.reply(0).error());
            c.request(0, 0x1234, 12, 0, 0); // a bad request magic ends the connection
            c.out.writeInt(0xdeadbeef);
            c.out.write(new byte[24]);
            c.out.flush();
            c.reply(0);
            assertTrue(c.closedByServer());
        }
        goodClientReads();
    }

    @Test
    void pipelinedRequestsAreAllAnsweredOnce() throws IOException {
        try (RawClient c = client("ro", true)) {
            int n = 100;
            for (int i = 0; i < n; i++) {
                c.request(0, 0, 1000 + i, (long) i * 40960, 40960);
            }
            Set<Long> done = new HashSet<>();
            long bytes = 0;
            while (done.size() < n) {
                RawClient.Reply r = c.reply(0);
                assertTrue(r.type() == 1 || r.type() == 2, "chunk type " + r.type());
                if (r.type() == 1) {
                    bytes += r.payload().length - 8;
                } else {
                    bytes += ByteBuffer.wrap(r.payload()).getInt(8);
                }
                if (r.done()) {
                    assertTrue(done.add(r.cookie()), "answered twice: " + r.cookie());
                }
            }
            assertEquals(100L * 40960, bytes);
        }
    }

    @Test
    void manyHostileClientsAtOnceLeaveNothingBehind() throws Exception {
        int baseFds = openFds();
        ExecutorService pool = Executors.newFixedThreadPool(6);
        try {
            List<Future<?>> jobs = new ArrayList<>();
            for (int round = 0; round < 4; round++) {
                jobs.add(pool.submit(() -> {
                    handshakeAbuseDropsOnlyThatClient();
                    return null;
                }));
                jobs.add(pool.submit(() -> {
                    badRequestsGetQemuNbdsErrors();
                    return null;
                }));
                jobs.add(pool.submit(() -> {
                    try (RawClient c = client("rw", true)) { // leaves in the middle of a write's payload
                        c.request(0, 1, 1, 0, 1 << 20);
                        c.out.write(new byte[1000]);
                        c.out.flush();
                    }
                    return null;
                }));
                jobs.add(pool.submit(() -> {
                    try (RawClient c = client("rw", true)) { // writes, pipelined, then flush, then leaves
                        byte[] d = new byte[65536];
                        java.util.Arrays.fill(d, (byte) 7);
                        for (int i = 0; i < 16; i++) {
                            c.request(i % 2, 1, i, (long) i * 65536, d.length);
                            c.out.write(d);
                        }
                        c.request(0, 3, 99, 0, 0);
                        c.out.flush();
                        for (int i = 0; i < 17; i++) {
                            assertEquals(0, c.reply(0).error());
                        }
                    }
                    return null;
                }));
                jobs.add(pool.submit(() -> {
                    goodClientReads();
                    return null;
                }));
            }
            for (Future<?> f : jobs) {
                f.get(60, TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while ((serverThreads() > 0 || openFds() > baseFds) && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertEquals(0, serverThreads(), "connection and worker threads left");
        assertTrue(openFds() <= baseFds, "file descriptors: " + openFds() + " > " + baseFds);
        assertEquals(0, server.connections());
        server.close();
        rw.close();
        rw = null;
        ok(dir, "qemu-img", "check", "rw.qcow2");
        assertFalse(log.isEmpty());
    }

    /** Threads of connections and their workers (the acceptor excluded). */
    private static int serverThreads() {
        int n = 0;
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.isAlive() && t.getName().startsWith("nbd-") && !t.getName().equals("nbd-accept")) {
                n++;
            }
        }
        return n;
    }

    private static int openFds() throws IOException {
        try (var s = Files.list(Path.of("/proc/self/fd"))) {
            return (int) s.count();
        }
    }
}
