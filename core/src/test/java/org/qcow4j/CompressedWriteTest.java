package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.qcow4j.testing.Processes;

/**
 * {@link WritableImage#writeCompressed}, QEMU's compressed writes in place ({@code qemu-io write -c}): whole clusters
 * stored compressed and packed as {@code qcow2_alloc_bytes} packs them, refused as QEMU refuses them, and images that
 * {@code qemu-img check} finds clean, with the compressed clusters it counts, reading back what was written.
 */
class CompressedWriteTest {
    @TempDir
    Path dir;

    private Processes.Result qemu(String... cmd) {
        Processes.Result r = Processes.run(dir, cmd);
        assertEquals(0, r.exit(), String.join(" ", cmd) + ": " + r.out() + r.err());
        return r;
    }

    /** qemu-img check's "N/M = ...% allocated, ...% fragmented, P% compressed clusters" and no errors. */
    private double checkCleanCompressedPercent(String image) {
        Processes.Result r = qemu("qemu-img", "check", image);
        assertTrue(r.out().contains("No errors were found on the image."), r.out());
        Matcher m = Pattern.compile("([0-9.]+)% compressed clusters").matcher(r.out());
        assertTrue(m.find(), r.out());
        return Double.parseDouble(m.group(1));
    }

    private void assertReadsBack(String image, byte[] model) throws IOException {
        Files.deleteIfExists(dir.resolve("out.raw"));
        qemu("qemu-img", "convert", "-O", "raw", image, "out.raw");
        byte[] got = Files.readAllBytes(dir.resolve("out.raw"));
        assertEquals(-1, Arrays.mismatch(model, got), "first difference");
        try (DiskImage d = Images.open(dir.resolve(image))) {
            byte[] ours = new byte[model.length];
            d.read(ByteBuffer.wrap(ours), 0);
            assertArrayEquals(model, ours);
        }
    }

    /** Compressible: text-like bytes; incompressible: random bytes. */
    private static byte[] data(int length, long seed, boolean compressible) {
        byte[] b = new byte[length];
        Random r = new Random(seed);
        if (compressible) {
            for (int i = 0; i < length; i++) {
                b[i] = (byte) ('a' + (i / 7 + seed) % 13);
            }
        } else {
            r.nextBytes(b);
        }
        return b;
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "cluster_size=512", "cluster_size=512,refcount_bits=1", "cluster_size=4096,refcount_bits=2",
            "compression_type=zstd", "compat=0.10", "extended_l2=on", "lazy_refcounts=on", "cluster_size=2M"})
    void wholeClustersAreStoredCompressedAndReadBack(String options) throws IOException {
        Files.deleteIfExists(dir.resolve("t.qcow2"));
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", options.isEmpty() ? "compat=1.1" : options, "t.qcow2", "8M");
        int cluster;
        try (DiskImage d = Images.open(dir.resolve("t.qcow2"))) {
            cluster = (int) d.qcow2().orElseThrow().header().clusterSize();
        }
        int clusters = Math.min(64, (8 << 20) / cluster);
        byte[] model = new byte[8 << 20];
        try (WritableImage w = Images.openWritable(dir.resolve("t.qcow2"))) {
            for (int i = 0; i < clusters; i++) {
                // mostly compressible (packed several to a host cluster), one in five random (written plainly)
                byte[] c = data(cluster, i, i % 5 != 3);
                w.writeCompressed(ByteBuffer.wrap(c), (long) i * cluster);
                System.arraycopy(c, 0, model, i * cluster, cluster);
            }
            // rewriting a compressed cluster plainly frees its share of the host cluster
            byte[] plain = data(100, 99, false);
            w.write(ByteBuffer.wrap(plain), cluster + 10);
            System.arraycopy(plain, 0, model, cluster + 10, plain.length);
        }
        // qemu-img check counts the clusters stored compressed: the compressible ones but the one rewritten
        long compressed = java.util.stream.IntStream.range(0, clusters).filter(i -> i % 5 != 3 && i != 1).count();
        assertEquals(100.0 * compressed / clusters, checkCleanCompressedPercent("t.qcow2"), 0.01);
        assertReadsBack("t.qcow2", model);
    }

    @Test
    void refusesWhatQemuRefuses() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "t.qcow2", "1000k"); // the last cluster is 40k long
        qemu("qemu-io", "-c", "write -P 1 64k 64k", "-c", "write -z 256k 64k", "-c", "write -z 320k 64k",
                "-c", "write -c -P 2 384k 64k", "t.qcow2");
        byte[] model = new byte[1000 << 10];
        Arrays.fill(model, 64 << 10, 128 << 10, (byte) 1);
        Arrays.fill(model, 384 << 10, 448 << 10, (byte) 2);
        try (WritableImage w = Images.openWritable(dir.resolve("t.qcow2"))) {
            byte[] c = data(64 << 10, 1, true);
            RefusedRequestException e = assertThrows(RefusedRequestException.class, () -> w.writeCompressed(ByteBuffer.wrap(c), 512));
            assertEquals(RefusedRequestException.Reason.INVALID, e.reason());
            e = assertThrows(RefusedRequestException.class, () -> w.writeCompressed(ByteBuffer.wrap(c, 0, 4096), 0));
            assertEquals(RefusedRequestException.Reason.INVALID, e.reason());
            // cluster 0 goes in, cluster 1 (allocated) stops the request
            e = assertThrows(RefusedRequestException.class, () -> w.writeCompressed(ByteBuffer.wrap(new byte[128 << 10]), 0));
            assertEquals(RefusedRequestException.Reason.CONFLICT, e.reason());
            e = assertThrows(RefusedRequestException.class, () -> w.writeCompressed(ByteBuffer.wrap(c), 384 << 10));
            assertEquals(RefusedRequestException.Reason.CONFLICT, e.reason(), "a compressed cluster is allocated too");
            // write -z made cluster 4 a plain zero cluster (version 3) and left cluster 5 unallocated: both take it
            w.writeCompressed(ByteBuffer.wrap(c), 256 << 10);
            System.arraycopy(c, 0, model, 256 << 10, c.length);
            // the last, short cluster may be written up to the end of the disk
            byte[] tail = data(40 << 10, 2, true);
            w.writeCompressed(ByteBuffer.wrap(tail), 960 << 10);
            System.arraycopy(tail, 0, model, 960 << 10, tail.length);
        }
        checkCleanCompressedPercent("t.qcow2");
        assertReadsBack("t.qcow2", model);

        Files.write(dir.resolve("r.raw"), new byte[1 << 20]);
        try (WritableImage w = Images.openWritable(dir.resolve("r.raw"), OpenOptions.defaults().withFormat("raw"))) {
            RefusedRequestException e = assertThrows(RefusedRequestException.class,
                    () -> w.writeCompressed(ByteBuffer.wrap(new byte[65536]), 0));
            assertEquals(RefusedRequestException.Reason.NOT_SUPPORTED, e.reason());
        }
        assertArrayEquals(new byte[1 << 20], Files.readAllBytes(dir.resolve("r.raw")));
    }

    /** QEMU reads what we compress, and we read what QEMU compresses, into the same partly filled host clusters. */
    @Test
    void interleavesWithQemusCompressedWrites() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "t.qcow2", "1M");
        byte[] model = new byte[1 << 20];
        for (int round = 0; round < 4; round++) {
            try (WritableImage w = Images.openWritable(dir.resolve("t.qcow2"))) {
                for (int i = 0; i < 8; i++) {
                    int at = (round * 16 + i) * 4096;
                    byte[] c = data(4096, at, true);
                    w.writeCompressed(ByteBuffer.wrap(c), at);
                    System.arraycopy(c, 0, model, at, 4096);
                }
            }
            int at = (round * 16 + 8) * 4096;
            qemu("qemu-io", "-c", "write -c -P " + (round + 1) + " " + at + " 32k", "t.qcow2");
            Arrays.fill(model, at, at + 32768, (byte) (round + 1));
            checkCleanCompressedPercent("t.qcow2");
        }
        assertReadsBack("t.qcow2", model);
    }
}
