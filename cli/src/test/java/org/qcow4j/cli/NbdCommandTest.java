package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code nbd} and the {@code qemu-nbd} drop-in, run as their own JVMs: qemu-nbd's lifetime rules (the server ends
 * with its last client unless {@code -t}; SIGTERM finishes, flushes and closes, leaving a lazy-refcount image clean),
 * several exports, multi-conn with {@code -e}, the options refused by name.
 */
class NbdCommandTest {
    @TempDir
    Path dir;

    private Process start(String program, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "-Dqcow4j.program=" + program, Main.class.getName()));
        cmd.addAll(List.of(args));
        return new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true)
                .redirectOutput(dir.resolve(program + ".log").toFile()).start();
    }

    private String log(String program) throws IOException {
        return Files.readString(dir.resolve(program + ".log"), StandardCharsets.UTF_8);
    }

    /** Waits (20 s at most) until {@code p} accepts connections on {@code socket}. */
    static void awaitSocket(Path socket, Process p) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (System.nanoTime() < deadline && p.isAlive()) {
            if (Files.exists(socket)) {
                try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                    ch.connect(UnixDomainSocketAddress.of(socket));
                    return;
                } catch (IOException e) {
                    // not yet
                }
            }
            Thread.sleep(20);
        }
        throw new AssertionError("server not listening on " + socket + " (alive: " + p.isAlive() + ")");
    }

    private static void kill(Process p) throws InterruptedException {
        if (p.isAlive()) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    private Qemu.Result ok(String... cmd) {
        return Qemu.run(dir, cmd).ok();
    }

    @Test
    void aServerWithoutPersistentEndsWithItsClient() throws Exception {
        ok("qemu-img", "create", "-q", "-f", "qcow2", "a.qcow2", "4M");
        Path socket = dir.resolve("a.sock");
        // the "probe" connection below never negotiates, so it does not end the server (as with qemu-nbd)
        Process p = start("qcow4j", "nbd", "-r", "-k", socket.toString(), "a.qcow2");
        try {
            awaitSocket(socket, p);
            String info = ok("nbdinfo", "nbd+unix:///?socket=" + socket).out();
            assertTrue(info.contains("is_read_only: true") && info.contains("can_multi_conn: false"), info);
            assertTrue(p.waitFor(20, TimeUnit.SECONDS), "still serving after its client left");
            assertEquals(0, p.exitValue(), log("qcow4j"));
            assertFalse(Files.exists(socket));
        } finally {
            kill(p);
        }
    }

    /**
     * {@code -B NAME}: the {@code qemu:dirty-bitmap:} meta contexts as qemu-nbd lists and serves them, writes through
     * a writable export recorded in the enabled bitmap; after SIGTERM the file is byte for byte qemu-nbd's.
     */
    @Test
    void dirtyBitmapsServedAsQemuNbdServesThem() throws Exception {
        ok("qemu-img", "create", "-q", "-f", "qcow2", "theirs.qcow2", "8M");
        ok("qemu-img", "bitmap", "--add", "-g", "4k", "theirs.qcow2", "b0");
        ok("qemu-img", "bitmap", "--add", "--disable", "theirs.qcow2", "b1");
        ok("qemu-io", "-c", "write 0 64k", "-c", "write 3M 1k", "theirs.qcow2");
        Files.copy(dir.resolve("theirs.qcow2"), dir.resolve("ours.qcow2"));
        List<String> maps = new ArrayList<>();
        for (String side : List.of("theirs", "ours")) {
            Path socket = dir.resolve(side + ".sock");
            List<String> args = List.of("-B", "b0", "-B", "b1", "-f", "qcow2", "-k", socket.toString(), side + ".qcow2");
            Process p;
            if (side.equals("theirs")) {
                List<String> cmd = new ArrayList<>(List.of("qemu-nbd", "-t"));
                cmd.addAll(args);
                p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true)
                        .redirectOutput(dir.resolve("qemu-nbd-real.log").toFile()).start();
            } else {
                List<String> cmd = new ArrayList<>(List.of("-t"));
                cmd.addAll(args);
                p = start("qemu-nbd", cmd.toArray(String[]::new));
            }
            try {
                awaitSocket(socket, p);
                String uri = "nbd+unix:///?socket=" + socket;
                StringBuilder seen = new StringBuilder(ok("nbdinfo", "--list", uri).out().replaceAll(".*(socket|uri).*\n", ""));
                ok("qemu-io", "-f", "raw", "-c", "write -P 5 1M 8k", "-c", "write -z 5M 64k", "-c", "discard 6M 4k", uri);
                for (String b : List.of("b0", "b1")) {
                    seen.append(ok("nbdinfo", "--map=qemu:dirty-bitmap:" + b, uri).out());
                    seen.append(ok("nbdinfo", "--map=qemu:dirty-bitmap:" + b, "--totals", uri).out());
                }
                maps.add(seen.toString());
                p.destroy(); // SIGTERM: the bitmaps are stored as the image closes
                assertTrue(p.waitFor(20, TimeUnit.SECONDS), "did not stop on SIGTERM");
            } finally {
                kill(p);
            }
        }
        assertEquals(maps.get(0), maps.get(1));
        assertTrue(maps.get(1).contains("qemu:dirty-bitmap:b1") && maps.get(1).contains("dirty"), maps.get(1));
        assertEquals(-1L, Files.mismatch(dir.resolve("theirs.qcow2"), dir.resolve("ours.qcow2")));
        String image = dir.resolve("ours.qcow2").toString();
        String socket = dir.resolve("x.sock").toString();
        assertEquals(Qemu.run(dir, "qemu-nbd", "-r", "-B", "nope", "-k", socket, image),
                SnapshotCommandTest.run(Program.QEMU_NBD, "-r", "-B", "nope", "-k", socket, image));
    }

    @Test
    void sigtermFinishesFlushesAndLeavesALazyRefcountImageClean() throws Exception {
        ok("qemu-img", "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "lazy.qcow2", "16M");
        ok("qemu-img", "create", "-q", "-f", "qcow2", "b.qcow2", "1M");
        Path socket = dir.resolve("q.sock");
        Path pid = dir.resolve("nbd.pid");
        Process p = start("qemu-nbd", "-t", "-e", "2", "--pid-file", pid.toString(), "-k", socket.toString(),
                "-x", "disk", "--export", "other=b.qcow2", "lazy.qcow2");
        try {
            awaitSocket(socket, p);
            for (int i = 0; i < 500 && !Files.exists(pid); i++) { // written just after the socket listens
                Thread.sleep(10);
            }
            assertEquals(Long.toString(p.pid()), Files.readString(pid).trim());
            String list = ok("nbdinfo", "--list", "nbd+unix:///?socket=" + socket).out();
            assertTrue(list.contains("export=\"disk\"") && list.contains("export=\"other\"")
                    && list.contains("can_multi_conn: true"), list);
            ok("qemu-io", "-f", "raw", "-c", "write -P 3 0 3M", "-c", "write -z 4M 1M", "-c", "write -P 4 8M 1M",
                    "nbd+unix:///disk?socket=" + socket);
            p.destroy(); // SIGTERM
            assertTrue(p.waitFor(20, TimeUnit.SECONDS), "did not stop on SIGTERM");
        } finally {
            kill(p);
        }
        assertFalse(Files.exists(socket));
        assertFalse(Files.exists(pid));
        ok("qemu-img", "check", "lazy.qcow2");
        assertFalse(ok("qemu-img", "info", "lazy.qcow2").out().contains("dirty"), "lazy refcounts left dirty");
        ok("qemu-io", "-c", "read -P 3 0 3M", "-c", "read -P 0 4M 1M", "-c", "read -P 4 8M 1M", "lazy.qcow2");
    }

    @Test
    void optionsWithoutAMeaningHereAreRefusedByName() throws Exception {
        ok("qemu-img", "create", "-q", "-f", "qcow2", "c.qcow2", "1M");
        for (String[] args : List.of(new String[] {"-c", "/dev/nbd0", "c.qcow2"}, new String[] {"--fork", "c.qcow2"},
                new String[] {"--discard=sometimes", "c.qcow2"}, new String[] {"--detect-zeroes=unmap", "c.qcow2"},
                new String[] {"-e", "-3", "c.qcow2"}, new String[] {"-k", "relative.sock", "c.qcow2"},
                new String[] {})) {
            Process p = start("qemu-nbd", args);
            try {
                assertTrue(p.waitFor(20, TimeUnit.SECONDS));
                assertEquals(1, p.exitValue());
                String err = log("qemu-nbd");
                assertTrue(err.startsWith("qemu-nbd: ") && !err.contains("Exception"), err);
            } finally {
                kill(p);
            }
        }
        Qemu.Result r = Qemu.qcow4j("nbd", "--fork", "c.qcow2");
        assertEquals(1, r.exit());
        assertTrue(r.err().startsWith("qcow4j: --fork is not supported"), r.err());
    }

    /** A CA and a server certificate for localhost, made with openssl, in QEMU's x509 directory layout. */
    private Path pki() throws IOException {
        Path pki = Files.createDirectory(dir.resolve("pki"));
        Qemu.run(pki, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out",
                "ca-cert.pem", "-days", "2", "-subj", "/CN=test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign").ok();
        Qemu.run(pki, "openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server-key.pem", "-out",
                "server.csr", "-subj", "/CN=localhost").ok();
        Files.writeString(pki.resolve("ext"), "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n");
        Qemu.run(pki, "openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-out", "server-cert.pem", "-days", "2", "-extfile", "ext").ok();
        return pki;
    }

    @Test
    void tlsWithQemuNbdsObjectsAndWithADirectory() throws Exception {
        ok("qemu-img", "create", "-q", "-f", "qcow2", "t.qcow2", "2M");
        Path pki = pki();
        Path socket = dir.resolve("t.sock");
        Process p = start("qemu-nbd", "-r", "-k", socket.toString(), "--object",
                "tls-creds-x509,id=tls0,dir=" + pki + ",endpoint=server,verify-peer=off", "--tls-creds", "tls0", "t.qcow2");
        try {
            awaitSocket(socket, p);
            assertEquals(1, Qemu.run(dir, "nbdinfo", "nbd+unix:///?socket=" + socket).exit()); // no TLS: refused
            String info = ok("nbdinfo", "nbds+unix:///?socket=" + socket + "&tls-certificates=" + pki).out();
            assertTrue(info.contains("newstyle-fixed with TLS"), info);
            assertTrue(p.waitFor(20, TimeUnit.SECONDS), "still serving after its client left");
            assertEquals(0, p.exitValue(), log("qemu-nbd"));
        } finally {
            kill(p);
        }
        p = start("qcow4j", "nbd", "-r", "-k", socket.toString(), "--tls-creds", pki.toString(), "t.qcow2");
        try {
            awaitSocket(socket, p);
            String info = ok("nbdinfo", "nbds+unix:///?socket=" + socket + "&tls-certificates=" + pki).out();
            assertTrue(info.contains("newstyle-fixed with TLS"), info);
        } finally {
            kill(p);
        }
        // refusals before anything is served, word for word as qemu-nbd's
        Path image = dir.resolve("t.qcow2");
        for (List<String> args : List.of(
                List.of("--object", "tls-creds-x509,id=tls0,dir=" + dir.resolve("none") + ",endpoint=server",
                        "--tls-creds", "tls0"),
                List.of("--object", "tls-creds-x509,id=tls0,dir=" + pki, "--tls-creds", "tls0"),
                List.of("--tls-creds", pki.toString()),
                List.of("--tls-authz", "a0"))) {
            List<String> cmd = new ArrayList<>(List.of("-k", dir.resolve("never.sock").toString()));
            cmd.addAll(args);
            cmd.add(image.toString());
            Qemu.Result theirs = Qemu.run(dir, Qemu.concat("qemu-nbd", cmd.toArray(String[]::new)));
            java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
            int code = Main.run(Program.QEMU_NBD, cmd.toArray(String[]::new), new java.io.PrintStream(
                    new java.io.ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
                    new java.io.PrintStream(err, true, StandardCharsets.UTF_8));
            assertEquals(theirs.exit(), code, theirs.err());
            assertEquals(theirs.err(), err.toString(StandardCharsets.UTF_8));
        }
    }
}
