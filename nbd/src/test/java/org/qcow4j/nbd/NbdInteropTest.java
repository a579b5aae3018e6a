package org.qcow4j.nbd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.qcow4j.nbd.NbdTools.info;
import static org.qcow4j.nbd.NbdTools.map;
import static org.qcow4j.nbd.NbdTools.ok;
import static org.qcow4j.nbd.NbdTools.uri;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.WritableImage;

/**
 * Real NBD clients against our server and qemu-nbd 7.2 serving the same images: what nbdinfo sees (size, flags,
 * block sizes, contexts, both maps) must be equal; what nbdcopy and qemu-img read must be the image's bytes; what
 * nbdcopy and qemu-io write must land as they land in the image directly.
 */
class NbdInteropTest {
    @TempDir
    static Path dir;

    /** name, format, file */
    record Variant(String name, String format, String file) {
        @Override
        public String toString() {
            return name;
        }
    }

    static final List<Variant> VARIANTS = List.of(
            new Variant("backing chain (shorter base, zero clusters)", "qcow2", "top.qcow2"),
            new Variant("compressed", "qcow2", "compressed.qcow2"),
            new Variant("extended L2", "qcow2", "extl2.qcow2"),
            new Variant("version 2 over raw base", "qcow2", "v2.qcow2"),
            new Variant("4 TiB sparse", "qcow2", "big.qcow2"),
            new Variant("preallocated metadata (holes in the file read as zeros)", "qcow2", "prealloc.qcow2"),
            new Variant("raw", "raw", "plain.raw"));

    static Stream<Variant> variants() {
        return VARIANTS.stream();
    }

    @BeforeAll
    static void images() {
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "4M");
        ok(dir, "qemu-io", "-c", "write -P 1 0 64k", "-c", "write -P 2 1M 1M", "-c", "write -z 3M 64k", "base.qcow2");
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", "8M");
        ok(dir, "qemu-io", "-c", "write -P 3 64k 64k", "-c", "write -z 128k 64k", "-c", "write -P 5 3M 64k",
                "-c", "write -P 6 5M 4k", "-c", "write -z -u 1536k 64k", "top.qcow2");
        ok(dir, "qemu-img", "create", "-q", "-f", "raw", "src.raw", "6M");
        ok(dir, "qemu-io", "-f", "raw", "-c", "write -P 7 0 1M", "-c", "write -P 0 1M 1M", "-c", "write -P 9 3M 100k",
                "src.raw");
        ok(dir, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "src.raw", "compressed.qcow2");
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=128k", "extl2.qcow2", "4M");
        ok(dir, "qemu-io", "-c", "write -P 4 4k 8k", "-c", "write -z 64k 4k", "-c", "write -P 8 1M 300k", "extl2.qcow2");
        ok(dir, "qemu-img", "create", "-q", "-f", "raw", "vbase.raw", "2M");
        ok(dir, "qemu-io", "-f", "raw", "-c", "write -P 10 0 512k", "vbase.raw");
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "vbase.raw", "-F", "raw",
                "v2.qcow2", "3M");
        ok(dir, "qemu-io", "-c", "write -P 11 256k 64k", "-c", "write -z 2560k 64k", "v2.qcow2");
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "big.qcow2", "4T");
        ok(dir, "qemu-io", "-c", "write -P 12 0 64k", "-c", "write -P 13 2T 1M", "-c", "write -z 3T 1M",
                "-c", "write -P 14 4294967296000 4k", "big.qcow2");
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", "prealloc.qcow2", "4M");
        ok(dir, "qemu-io", "-c", "write -P 17 1M 64k", "-c", "write -z 2M 64k", "prealloc.qcow2");
        ok(dir, "qemu-img", "create", "-q", "-f", "raw", "plain.raw", "3M");
        ok(dir, "qemu-io", "-f", "raw", "-c", "write -P 15 64k 64k", "-c", "write -P 16 2M 4k", "plain.raw");
    }

    /** What nbdinfo says of an export: the JSON, both maps. */
    record Seen(JsonNode json, String map, String depth) {
    }

    private static Seen look(NbdServer server) throws IOException {
        return look(NbdTools.socket(server));
    }

    private static Seen look(Path socket) {
        String u = uri(socket);
        return new Seen(info(dir, u), map(dir, u, null), map(dir, u, "qemu:allocation-depth"));
    }

    private static Seen qemuNbd(Variant v, boolean readOnly) throws IOException {
        Path socket = dir.resolve("q.sock");
        Process p = NbdTools.qemuNbd(dir, socket, v.file, readOnly ? new String[] {"-r", "-A", "-f", v.format}
                : new String[] {"-A", "-f", v.format});
        try {
            return look(socket);
        } finally {
            NbdTools.stop(p);
        }
    }

    private static NbdServer serve(Path socket, NbdExport export) throws IOException {
        NbdServer s = NbdServer.builder().export(export).unixSocket(socket).start();
        NbdTools.awaitSocket(socket, null);
        return s;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void nbdinfoSeesWhatItSeesOfQemuNbd(Variant v) throws Exception {
        Seen theirs = qemuNbd(v, true);
        Path socket = dir.resolve("ours.sock");
        try (DiskImage image = Images.open(dir.resolve(v.file), OpenOptions.defaults().withFormat(v.format));
             NbdServer server = serve(socket, NbdExport.readOnly("", image).withAllocationDepth(true))) {
            Seen ours = look(server);
            assertEquals(theirs.json, ours.json);
            assertEquals(theirs.map, ours.map);
            assertEquals(theirs.depth, ours.depth);
            if (!v.name.startsWith("4 TiB")) {
                ok(dir, "nbdcopy", uri(socket), dir.resolve("copied.raw").toString());
                ok(dir, "qemu-img", "convert", "-f", v.format, "-O", "raw", v.file, "expected.raw");
                assertArrayEquals(Files.readAllBytes(dir.resolve("expected.raw")),
                        Files.readAllBytes(dir.resolve("copied.raw")));
                // qemu's own NBD client, through the protocol's reads and block status
                ok(dir, "qemu-img", "compare", "-f", "raw", "-F", v.format, uri(socket), v.file);
            }
        }
    }

    @Test
    void aWritableExportLooksLikeQemuNbds() throws Exception {
        Variant v = VARIANTS.get(0);
        Seen theirs = qemuNbd(v, false);
        Path socket = dir.resolve("ours.sock");
        try (WritableImage image = Images.openWritable(dir.resolve(v.file), OpenOptions.defaults().withQemuLayout(true));
             NbdServer server = serve(socket, NbdExport.writable("", image).withAllocationDepth(true))) {
            Seen ours = look(server);
            assertEquals(theirs.json, ours.json);
            assertEquals(theirs.map, ours.map);
            assertEquals(theirs.depth, ours.depth);
        }
    }

    @Test
    void nbdcopyIntoAWritableExportMakesACleanEqualImage() throws Exception {
        byte[] data = new byte[6 << 20];
        Random r = new Random(12);
        for (int i = 0; i < data.length; i += 4096) {
            if (r.nextInt(3) != 0) {
                for (int j = 0; j < 4096; j += 8) {
                    data[i + j] = (byte) r.nextInt();
                }
            }
        }
        Files.write(dir.resolve("in.raw"), data);
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "target.qcow2", "6M");
        Path socket = dir.resolve("ours.sock");
        try (WritableImage image = Images.openWritable(dir.resolve("target.qcow2"));
             NbdServer server = serve(socket, NbdExport.writable("", image))) {
            ok(dir, "nbdcopy", dir.resolve("in.raw").toString(), uri(NbdTools.socket(server)));
        }
        ok(dir, "qemu-img", "check", "target.qcow2");
        ok(dir, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", "in.raw", "target.qcow2");
    }

    @Test
    void qemuIoThroughTheServerWritesWhatQemuIoWrites() throws Exception {
        String[] script = {"write -P 0xab 100k 200k", "write -z 1M 512k", "write -z -u 2M 128k", "discard 3M 192k",
            "write -P 0xcd 7M 64k", "write -P 0xef 4095k 8k", "flush", "discard 5M 4k"};
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "direct.qcow2", "8M");
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "served.qcow2", "8M");
        for (String f : List.of("direct.qcow2", "served.qcow2")) {
            ok(dir, "qemu-io", "-c", "write -P 3 64k 64k", "-c", "write -P 5 3M 64k", f);
        }
        ok(dir, withCommands(List.of("qemu-io", "direct.qcow2"), script));
        Path socket = dir.resolve("ours.sock");
        try (WritableImage image = Images.openWritable(dir.resolve("served.qcow2"),
                OpenOptions.defaults().withQemuLayout(true));
             NbdServer server = serve(socket, NbdExport.writable("", image).withDiscard(NbdExport.Discard.UNMAP))) {
            ok(dir, withCommands(List.of("qemu-io", "-f", "raw", uri(NbdTools.socket(server))), script));
        }
        ok(dir, "qemu-img", "check", "served.qcow2");
        ok(dir, "qemu-img", "compare", "direct.qcow2", "served.qcow2");
        // byte for byte: the clusters, tables and refcounts land where qemu-io's own writes put them
        assertArrayEquals(Files.readAllBytes(dir.resolve("direct.qcow2")), Files.readAllBytes(dir.resolve("served.qcow2")));
    }

    private static String[] withCommands(List<String> head, String[] script) {
        List<String> cmd = new java.util.ArrayList<>(head.subList(0, head.size() - 1));
        for (String c : script) {
            cmd.add("-c");
            cmd.add(c);
        }
        cmd.add(head.get(head.size() - 1));
        return cmd.toArray(String[]::new);
    }

    @Test
    void listShowsEveryExportAndEachServesItsImage() throws Exception {
        Path socket = dir.resolve("ours.sock");
        try (DiskImage a = Images.open(dir.resolve("plain.raw"), OpenOptions.defaults().withFormat("raw"));
             DiskImage b = Images.open(dir.resolve("compressed.qcow2"));
             NbdServer server = NbdServer.builder().export(NbdExport.readOnly("first", a).withDescription("raw file"))
                     .export(NbdExport.readOnly("second", b)).unixSocket(socket).maxConnections(4).start()) {
            String list = ok(dir, "nbdinfo", "--list", uri(NbdTools.socket(server)));
            assertTrue(list.contains("export=\"first\"") && list.contains("export=\"second\"")
                    && list.contains("description: raw file"), list);
            assertTrue(list.contains("can_multi_conn: true"), list);
            ok(dir, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", NbdTools.uri(socket, "second"),
                    "compressed.qcow2");
            ok(dir, "qemu-img", "compare", "-f", "raw", "-F", "raw", NbdTools.uri(socket, "first"), "plain.raw");
        }
    }
    /** Over TCP on 127.0.0.1 (an ephemeral port): qemu-img's own client converts, compares and maps the export. */
    @Test
    void qemuImgReadsAnExportOverTcp() throws Exception {
        try (DiskImage image = Images.open(dir.resolve("compressed.qcow2"));
             NbdServer server = NbdServer.builder().export(NbdExport.readOnly("", image))
                     .tcp(new java.net.InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), 0)).start()) {
            int port = ((java.net.InetSocketAddress) server.address()).getPort();
            String uri = "nbd://127.0.0.1:" + port;
            ok(dir, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, "tcp.raw");
            ok(dir, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", "compressed.qcow2", "want.raw");
            assertArrayEquals(Files.readAllBytes(dir.resolve("want.raw")), Files.readAllBytes(dir.resolve("tcp.raw")));
            ok(dir, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", uri, "compressed.qcow2");
            String map = ok(dir, "qemu-img", "map", "--output=json", "-f", "raw", uri);
            Path socket = dir.resolve("theirs.sock");
            Process theirs = NbdTools.qemuNbd(dir, socket, "compressed.qcow2", "-r", "-f", "qcow2");
            try { // qemu-nbd's map through the same client: block status over TCP as over its socket
                assertEquals(ok(dir, "qemu-img", "map", "--output=json", "-f", "raw", uri(socket)), map);
            } finally {
                NbdTools.stop(theirs);
            }
        }
    }
}
