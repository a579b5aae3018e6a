package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Random reads from several threads through a one-table L2 cache (constant eviction) over a chain that mixes
 * compressed, extended-L2 and backing data; every byte must equal qemu-img's raw conversion.
 */
class ConcurrentReadTest {
    @TempDir
    Path dir;

    private void sh(String script) throws IOException, InterruptedException {
        Process p = new ProcessBuilder("bash", "-ec", script).directory(dir.toFile()).inheritIO().start();
        assertEquals(0, p.waitFor(), script);
    }

    @Test
    void concurrentRandomReadsMatchQemu() throws Exception {
        sh("""
                head -c 3M /dev/urandom > s.raw
                yes qcow4j | head -c 1M | dd of=s.raw bs=1M seek=1 conv=notrunc status=none
                qemu-img convert -q -c -O qcow2 -o cluster_size=16k,compression_type=zstd s.raw base.qcow2
                qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k -b base.qcow2 -F qcow2 top.qcow2 4M
                qemu-io -c 'write -P 7 1000k 3k' -c 'write -z 2M 40k' -c 'write -P 9 3M 100k' top.qcow2 >/dev/null
                qemu-img convert -O raw top.qcow2 expected.raw
                """);
        byte[] expected = Files.readAllBytes(dir.resolve("expected.raw"));
        OpenOptions tiny = OpenOptions.defaults().withL2CacheBytes(16 * 1024);
        try (DiskImage image = Images.open(dir.resolve("top.qcow2"), tiny)) {
            assertEquals(expected.length, image.size());
            ExecutorService pool = Executors.newFixedThreadPool(4);
            List<Future<?>> done = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                long seed = t;
                done.add(pool.submit(() -> {
                    Random r = new Random(seed);
                    for (int i = 0; i < 300; i++) {
                        int len = 1 + r.nextInt(100_000);
                        int off = r.nextInt(expected.length - len);
                        ByteBuffer b = ByteBuffer.allocate(len);
                        image.read(b, off);
                        assertEquals(-1, ByteBuffer.wrap(expected, off, len).mismatch(b.flip()),
                                "mismatch reading " + len + " bytes at " + off);
                    }
                    return null;
                }));
            }
            for (Future<?> f : done) {
                f.get();
            }
            pool.shutdown();

            long covered = 0;
            for (long pos = 0; pos < image.size(); ) {
                Extent e = image.extentAt(pos, image.size() - pos);
                assertEquals(pos, e.start());
                pos = e.end();
                covered += e.length();
            }
            assertEquals(image.size(), covered);
        }
    }
}
