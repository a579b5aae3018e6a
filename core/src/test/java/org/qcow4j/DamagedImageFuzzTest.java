package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.testing.DamagedInput;
import org.qcow4j.testing.Processes;

/**
 * Hostile input, at random: images QEMU made, with bytes of their metadata flipped. Opening and reading all of
 * such an image must either work or fail with a {@link QcowException} (one line for the CLI), never another
 * exception, a hang or an allocation sized by a broken field. The same holds for writing into such an image.
 */
class DamagedImageFuzzTest {
    private static final int ROUNDS_PER_IMAGE = 300;

    @TempDir
    Path dir;

    private Path make(String name, String script) {
        Processes.Result r = Processes.run(dir, "bash", "-ec", script);
        assertEquals(0, r.exit(), r.err());
        return dir.resolve(name);
    }

    @Test
    void damagedMetadataIsReadOrRefusedCleanly() throws Exception {
        fuzz(ROUNDS_PER_IMAGE, DamagedImageFuzzTest::readAll);
    }

    @Test
    void damagedMetadataIsWrittenOrRefusedCleanly() throws Exception {
        fuzz(ROUNDS_PER_IMAGE / 2, DamagedImageFuzzTest::writeSome);
    }

    /** What is done with one damaged image: "read" (it worked) or "refused". */
    @FunctionalInterface
    private interface Use {
        String on(Path img) throws Exception;
    }

    private void fuzz(int rounds, Use use) throws Exception {
        List<Path> images = List.of(
                make("plain.qcow2", "qemu-img create -q -f qcow2 -o cluster_size=4k plain.qcow2 1M; "
                        + "qemu-io -c 'write -P 1 0 64k' -c 'write -z 128k 8k' plain.qcow2 >/dev/null"),
                make("zlib.qcow2", "head -c 300000 /dev/urandom > r; yes x | head -c 300000 >> r; "
                        + "qemu-img convert -q -c -O qcow2 -o cluster_size=4k r zlib.qcow2"),
                make("zstd-ext.qcow2", "yes y | head -c 500000 > s; qemu-img convert -q -c -O qcow2 "
                        + "-o cluster_size=16k,extended_l2=on,compression_type=zstd s zstd-ext.qcow2"),
                make("snap.qcow2", "qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=8 snap.qcow2 256k; "
                        + "qemu-io -c 'write -P 2 0 10k' snap.qcow2 >/dev/null; qemu-img snapshot -c s1 snap.qcow2"));
        Random random = new Random(Long.getLong("fuzz.seed", 42));
        int refused = 0;
        int read = 0;
        for (Path original : images) {
            byte[] bytes = Files.readAllBytes(original);
            int metadataEnd = Math.min(bytes.length, 64 * 1024);
            for (int round = 0; round < rounds; round++) {
                byte[] damaged = bytes.clone();
                int flips = 1 + random.nextInt(4);
                for (int f = 0; f < flips; f++) {
                    int at = random.nextInt(metadataEnd);
                    damaged[at] = random.nextBoolean() ? (byte) random.nextInt() : (byte) (damaged[at] ^ (1 << random.nextInt(8)));
                }
                Path img = dir.resolve("damaged.qcow2");
                Files.write(img, damaged);
                switch (use.on(img)) {
                    case "refused" -> refused++;
                    case "read" -> read++;
                    default -> fail("unreachable");
                }
            }
        }
        assertTrue(refused > 0 && read > 0, "the damage should sometimes matter and sometimes not: refused " + refused
                + ", read " + read);
    }

    /** Opens the image for writing, writes, zeroes, discards and grows it, and closes it. */
    private static String writeSome(Path img) throws Exception {
        return DamagedInput.readOrRefuse(img, 5000, () -> {
            try (WritableImage d = Images.openWritable(img, OpenOptions.defaults().withFormat("qcow2"))) {
                long size = d.size();
                for (long pos : new long[] {0, size / 3, size - 5000}) {
                    if (pos >= 0 && pos + 5000 <= size) {
                        d.write(ByteBuffer.allocate(5000), pos);
                    }
                }
                d.writeZeroes(0, Math.min(size, 20000), true);
                d.discard(size / 2, size / 2);
                d.flush();
                d.resize(size + (1 << 20));
            }
        }) ? "read" : "refused";
    }

    /** Opens and reads every byte and extent of the image: "read", or "refused" with a QcowException. */
    private static String readAll(Path img) throws Exception {
        return DamagedInput.readOrRefuse(img, 5000, () -> {
            try (DiskImage d = Images.open(img, OpenOptions.defaults().withFormat("qcow2"))) {
                ByteBuffer buf = ByteBuffer.allocate(64 * 1024);
                for (long pos = 0; pos < d.size(); pos += buf.capacity()) {
                    buf.clear().limit((int) Math.min(buf.capacity(), d.size() - pos));
                    d.read(buf, pos);
                }
                for (long pos = 0; pos < d.size(); ) {
                    pos = d.extentAt(pos, d.size() - pos).end();
                }
            }
        }) ? "read" : "refused";
    }
}
