package org.qcow4j.nbd;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.qcow4j.testing.Processes;

/**
 * The reference server and clients for the NBD tests: qemu-nbd (started on a Unix socket, always killed), nbdinfo,
 * nbdcopy, qemu-img and qemu-io. ./test.sh installs them (qemu-utils, libnbd-bin): a missing one is a failure.
 */
final class NbdTools {
    private static final ObjectMapper JSON = new ObjectMapper();

    private NbdTools() {
    }

    /** The Unix socket a server listens on. */
    static Path socket(NbdServer server) throws IOException {
        return ((UnixDomainSocketAddress) server.address()).getPath();
    }

    static String uri(Path socket) {
        return "nbd+unix:///?socket=" + socket;
    }

    static String uri(Path socket, String export) {
        return "nbd+unix:///" + export + "?socket=" + socket;
    }

    /** Runs a command that must succeed; its standard output. */
    static String ok(Path dir, String... cmd) {
        Processes.Result r = Processes.run(dir, cmd);
        assertEquals(0, r.exit(), () -> String.join(" ", cmd) + "\nstdout: " + r.out() + "\nstderr: " + r.err());
        return r.out();
    }

    /** qemu-nbd serving {@code image} on {@code socket} with {@code flags}, once it accepts clients. */
    static Process qemuNbd(Path dir, Path socket, String image, String... flags) throws IOException {
        List<String> cmd = new ArrayList<>(List.of("qemu-nbd", "-t", "-k", socket.toString()));
        cmd.addAll(List.of(flags));
        cmd.add(image);
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true)
                .redirectOutput(dir.resolve("qemu-nbd.log").toFile()).start();
        awaitSocket(socket, p);
        return p;
    }

    /** Waits (5 s at most) until something accepts connections on {@code socket}. */
    static void awaitSocket(Path socket, Process p) throws IOException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (System.nanoTime() < deadline) {
            if (p != null && !p.isAlive()) {
                throw new AssertionError("server exited " + p.exitValue());
            }
            if (Files.exists(socket)) {
                try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                    ch.connect(UnixDomainSocketAddress.of(socket));
                    return;
                } catch (IOException e) {
                    // not yet
                }
            }
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError(e);
            }
        }
        throw new AssertionError("nothing listens on " + socket);
    }

    /** Ends a process and waits for it (5 s, then killed). */
    static void stop(Process p) {
        if (p == null) {
            return;
        }
        p.destroy();
        try {
            if (!p.waitFor(5, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                p.waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** {@code nbdinfo --json URI} without the fields that name the server's socket. */
    static JsonNode info(Path dir, String uri, String... flags) {
        List<String> cmd = new ArrayList<>(List.of("nbdinfo", "--json"));
        cmd.addAll(List.of(flags));
        cmd.add(uri);
        try {
            JsonNode n = JSON.readTree(ok(dir, cmd.toArray(String[]::new)));
            for (JsonNode e : n.get("exports")) {
                ((ObjectNode) e).remove("uri");
            }
            return n;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** {@code nbdinfo --map[=CONTEXT] URI}. */
    static String map(Path dir, String uri, String context) {
        return ok(dir, "nbdinfo", context == null ? "--map" : "--map=" + context, uri);
    }
}
