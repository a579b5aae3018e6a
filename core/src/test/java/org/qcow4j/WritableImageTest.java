package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.testing.Processes;

/** Targeted cases of the read-write image: structure growth, refusals, the corrupt bit, threads, the channel. */
class WritableImageTest {
    @TempDir
    Path dir;

    private void qemu(String... cmd) {
        Processes.Result r = Processes.run(dir, cmd);
        assertEquals(0, r.exit(), String.join(" ", cmd) + ": " + r.out() + r.err());
    }

    private void assertQemuSees(String image, byte[] expected) throws IOException {
        qemu("qemu-img", "check", image);
        Files.deleteIfExists(dir.resolve("out.raw"));
        qemu("qemu-img", "convert", "-O", "raw", image, "out.raw");
        assertArrayEquals(expected, Files.readAllBytes(dir.resolve("out.raw")));
    }

    private static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (seed + i / 511);
        }
        return b;
    }

    @Test
    void refcountTableGrowsWhenTheImageOutgrowsIt() throws IOException {
        // 512-byte clusters with 64-bit refcounts: a block counts 64 clusters, the one-cluster table 4096: 2 MiB.
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", "t.qcow2", "16M");
        byte[] model = new byte[16 << 20];
        byte[] data = pattern(6 << 20, 3);
        try (WritableImage image = Images.openWritable(dir.resolve("t.qcow2"))) {
            image.write(ByteBuffer.wrap(data), 1 << 20);
        }
        System.arraycopy(data, 0, model, 1 << 20, data.length);
        assertQemuSees("t.qcow2", model);
        assertTrue(headerInt("t.qcow2", 56) > 1, "refcount_table_clusters grew: " + headerInt("t.qcow2", 56));
    }

    @Test
    void l1TableGrowsWithTheDisk() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "g.qcow2", "64k");
        byte[] head = pattern(4096, 9);
        byte[] tail = pattern(3000, 77);
        try (WritableImage image = Images.openWritable(dir.resolve("g.qcow2"))) {
            image.write(ByteBuffer.wrap(head), 0);
            image.resize(32 << 20);
            image.write(ByteBuffer.wrap(tail), (32 << 20) - 3000);
            assertEquals(32 << 20, image.size());
        }
        byte[] model = new byte[32 << 20];
        System.arraycopy(head, 0, model, 0, head.length);
        System.arraycopy(tail, 0, model, model.length - tail.length, tail.length);
        assertQemuSees("g.qcow2", model);
        assertEquals(1024, headerInt("g.qcow2", 36), "l1_size: 32 MiB / (512 * 64)");
    }

    /**
     * ImageWriteFuzzTest's crash-large-l1-growth: an L1 table longer than one refcount block's range (here 65,536
     * clusters, 256 per block) never found room, as each new block was put inside the run it was to count, splitting
     * it again; the refcount table grew until it broke the image. The blocks now go after the run.
     */
    @Test
    void anL1TableLongerThanARefcountBlockRangeIsAllocated() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "l.qcow2", "64k");
        try (WritableImage image = Images.openWritable(dir.resolve("l.qcow2"))) {
            image.resize((128L << 30) - 512);
            image.write(ByteBuffer.wrap(pattern(512, 5)), (128L << 30) - 1024);
        }
        assertEquals(4194304, headerInt("l.qcow2", 36), "l1_size: QEMU's limit");
        qemu("qemu-img", "check", "l.qcow2");
    }

    private int headerInt(String image, int at) throws IOException {
        return ByteBuffer.wrap(Files.readAllBytes(dir.resolve(image))).getInt(at);
    }

    @Test
    void shrinkingThenGrowingReadsZerosInTheNewPart() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "s.qcow2", "1M");
        try (WritableImage image = Images.openWritable(dir.resolve("s.qcow2"))) {
            image.write(ByteBuffer.wrap(pattern(1 << 20, 5)), 0);
            image.resize(100 * 1024 + 512);
            image.resize(1 << 20);
        }
        byte[] model = new byte[1 << 20];
        System.arraycopy(pattern(1 << 20, 5), 0, model, 0, 100 * 1024 + 512);
        assertQemuSees("s.qcow2", model);
    }

    @Test
    void freedClustersAreReusedAfterAFlush() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=1.1", "f.qcow2", "64M");
        Path img = dir.resolve("f.qcow2");
        try (WritableImage image = Images.openWritable(img)) {
            image.write(ByteBuffer.wrap(pattern(8 << 20, 1)), 0);
            image.flush();
            long full = Files.size(img);
            image.discard(0, 8 << 20);
            image.writeZeroes(8 << 20, 8 << 20, true);
            image.flush();
            image.write(ByteBuffer.wrap(pattern(8 << 20, 2)), 32 << 20);
            image.flush();
            assertEquals(full, Files.size(img), "the second 8 MiB went into the clusters the first gave back");
        }
        byte[] model = new byte[64 << 20];
        System.arraycopy(pattern(8 << 20, 2), 0, model, 32 << 20, 8 << 20);
        assertQemuSees("f.qcow2", model);
    }

    @Test
    void aFourTebibyteDiskIsCheapToGrowZeroAndDiscard() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "big.qcow2", "1G");
        long t0 = System.nanoTime();
        try (WritableImage image = Images.openWritable(dir.resolve("big.qcow2"))) {
            image.resize(4L << 40);
            image.write(ByteBuffer.wrap(pattern(4096, 1)), (4L << 40) - 4096);
            image.writeZeroes(0, (4L << 40) - 65536, false);
            image.discard(0, (4L << 40) - 65536);
        }
        assertTrue(System.nanoTime() - t0 < 3_000_000_000L, "cost follows the data, not the virtual size");
        assertTrue(Files.size(dir.resolve("big.qcow2")) < 1 << 20);
        qemu("qemu-img", "check", "big.qcow2");
    }

    @Test
    void aCorruptImageOpensReadOnlyWithAWarning() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "c.qcow2", "1M");
        try (RandomAccessFile f = new RandomAccessFile(dir.resolve("c.qcow2").toFile(), "rw")) {
            f.seek(79);
            f.write(2); // incompatible feature bit 1: corrupt
        }
        try (WritableImage image = Images.openWritable(dir.resolve("c.qcow2"))) {
            assertTrue(image.readOnly());
            assertTrue(image.warnings().get(0).contains("marked corrupt; opened read-only"), image.warnings().toString());
            QcowException e = assertThrows(WriteRefusedException.class, () -> image.write(ByteBuffer.allocate(512), 0));
            assertTrue(e.getMessage().contains("opened read-only"), e.getMessage());
        }
    }

    @Test
    void writesAnExternalDataFileAtGuestOffsetsAndRefusesItsSnapshots() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file=" + dir.resolve("d.raw"), "df.qcow2", "1M");
        Path img = dir.resolve("df.qcow2");
        try (WritableImage image = Images.openWritable(img)) {
            image.write(ByteBuffer.wrap(pattern(100_000, 3)), 70_000);
        }
        byte[] data = Files.readAllBytes(dir.resolve("d.raw"));
        assertArrayEquals(pattern(100_000, 3), Arrays.copyOfRange(data, 70_000, 170_000), "data at its guest offset");
        Processes.Result check = Processes.run(dir, "qemu-img", "check", "df.qcow2");
        assertEquals(0, check.exit(), check.out() + check.err());
        byte[] before = Files.readAllBytes(img);
        SnapshotException e = assertThrows(SnapshotException.class,
                () -> Images.createSnapshot(img, OpenOptions.defaults(), "s"));
        assertEquals(SnapshotException.Reason.EXTERNAL_DATA_FILE, e.reason());
        assertArrayEquals(before, Files.readAllBytes(img), "refused snapshot: image untouched");
    }

    /** A lazy-refcounts image with a data file left dirty by a crash is repaired on open, as QEMU's open repairs it. */
    @Test
    void aDirtyImageWithADataFileIsRepairedOnOpen() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file=" + dir.resolve("dd.raw") + ",lazy_refcounts=on", "dd.qcow2", "4M");
        Processes.run(dir, "qemu-io", "-c", "write -P 1 0 1M", "-c", "abort", "dd.qcow2"); // killed by SIGABRT: dirty
        Path img = dir.resolve("dd.qcow2");
        assertEquals(5, Files.readAllBytes(img)[79] & 5, "dirty, with its data file");
        try (WritableImage image = Images.openWritable(img)) {
            assertTrue(image.warnings().toString().contains("repaired"), image.warnings().toString());
            image.write(ByteBuffer.wrap(pattern(4096, 9)), 2 << 20);
        }
        assertEquals(4, Files.readAllBytes(img)[79] & 5, "clean after close");
        Processes.Result check = Processes.run(dir, "qemu-img", "check", "dd.qcow2");
        assertEquals(0, check.exit(), check.out() + check.err());
    }

    /** Guest data written at guest offsets into the image itself would overwrite its header: QEMU's locks refuse. */
    @Test
    void refusesADataFileThatIsTheImageItself() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file=" + dir.resolve("bb.qcow2"), "aa.qcow2", "1M");
        Path img = dir.resolve("aa.qcow2");
        byte[] bytes = Files.readAllBytes(img);
        String header = new String(bytes, 0, 4096, java.nio.charset.StandardCharsets.ISO_8859_1);
        int at = header.indexOf("bb.qcow2");
        assertTrue(at > 0);
        bytes[at] = 'a';
        bytes[at + 1] = 'a';
        Files.write(img, bytes);
        QcowException e = assertThrows(QcowException.class, () -> Images.openWritable(img));
        assertTrue(e.getMessage().contains("is also an image of the chain"), e.getMessage());
        assertArrayEquals(bytes, Files.readAllBytes(img), "refused image untouched");
    }

    @Test
    void lazyRefcountsSetTheDirtyBitUntilClose() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "l.qcow2", "4M");
        Path img = dir.resolve("l.qcow2");
        try (WritableImage image = Images.openWritable(img)) {
            image.write(ByteBuffer.wrap(pattern(300_000, 1)), 12345);
            image.flush();
            assertEquals(1, Files.readAllBytes(img)[79] & 1, "dirty while open after a flush");
        }
        assertEquals(0, Files.readAllBytes(img)[79] & 1, "clean after close");
        byte[] model = new byte[4 << 20];
        System.arraycopy(pattern(300_000, 1), 0, model, 12345, 300_000);
        assertQemuSees("l.qcow2", model);
    }

    @Test
    void concurrentWritersAndReaders() throws Exception {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "base.qcow2", "8M");
        qemu("qemu-io", "-c", "write -P 0x11 0 8M", "base.qcow2");
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "-o", "cluster_size=4096", "top.qcow2");
        byte[] model = new byte[8 << 20];
        Arrays.fill(model, (byte) 0x11);
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try (WritableImage image = Images.openWritable(dir.resolve("top.qcow2"), OpenOptions.defaults().withL2CacheBytes(8192))) {
            List<Future<?>> jobs = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                int thread = t;
                jobs.add(pool.submit(() -> {
                    // each thread owns every fourth 3000-byte stripe, so the stripes share clusters across threads
                    for (int s = thread; s * 3000L + 3000 <= model.length; s += 4) {
                        byte[] d = pattern(3000, s);
                        image.write(ByteBuffer.wrap(d), s * 3000L);
                        ByteBuffer back = ByteBuffer.allocate(3000);
                        image.read(back, s * 3000L);
                        assertArrayEquals(d, back.array());
                    }
                    return null;
                }));
            }
            for (Future<?> j : jobs) {
                j.get();
            }
        } finally {
            pool.shutdown();
        }
        for (int s = 0; s * 3000L + 3000 <= model.length; s++) {
            System.arraycopy(pattern(3000, s), 0, model, s * 3000, 3000);
        }
        assertQemuSees("top.qcow2", model);
    }

    @Test
    void channelView() throws IOException {
        qemu("qemu-img", "create", "-q", "-f", "qcow2", "ch.qcow2", "1M");
        try (WritableImage image = Images.openWritable(dir.resolve("ch.qcow2"))) {
            SeekableByteChannel ch = image.channel();
            ch.position(1000).write(ByteBuffer.wrap("hello".getBytes()));
            ByteBuffer b = ByteBuffer.allocate(5);
            assertEquals(5, ch.position(1000).read(b));
            assertEquals("hello", new String(b.array()));
            assertEquals(-1, ch.position(1 << 20).read(ByteBuffer.allocate(1)));
            ch.truncate(512 * 1024);
            assertEquals(512 * 1024, image.size());
            ch.close();
            assertFalse(ch.isOpen());
        }
        qemu("qemu-img", "check", "ch.qcow2");
    }
}
