package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Conversions in a child JVM capped at 256 MiB of heap: memory must not follow the image size. The sparse case
 * must also take seconds, not the time to read 64 GiB of holes.
 */
class BoundedMemoryTest {
    private static final long GIB = 1L << 30;

    @TempDir
    Path dir;

    /** Runs the CLI in a new JVM with a 256 MiB heap, on the test class path. */
    private Qemu.Result qcow4jIn256MiB(String... args) {
        String[] cmd = Qemu.concat("java", Qemu.concat("-Xmx256m", Qemu.concat("-cp",
                Qemu.concat(System.getProperty("java.class.path"), Qemu.concat(Main.class.getName(), args)))));
        return Qemu.run(dir, cmd);
    }

    @Test
    void convertsSixtyFourGibibyteSparseRawToQcow2InSeconds() throws IOException {
        Path raw = dir.resolve("sparse.raw");
        try (FileChannel ch = FileChannel.open(raw, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            SplittableRandom r = new SplittableRandom(1);
            for (long at : new long[] {0, 5 * GIB + 12345, 40 * GIB, 64 * GIB - (1 << 20)}) {
                ByteBuffer b = ByteBuffer.allocate(1 << 20);
                while (b.hasRemaining()) {
                    b.putLong(r.nextLong());
                }
                ch.write(b.flip(), at);
            }
        }
        String out = dir.resolve("sparse.qcow2").toString();
        long start = System.nanoTime();
        qcow4jIn256MiB("convert", "-O", "qcow2", raw.toString(), out).ok();
        double seconds = (System.nanoTime() - start) / 1e9;
        assertTrue(seconds < 15, "64 GiB sparse convert took " + seconds + " s");
        WriteCompatibilityTest.assertClean(dir, out);
        WriteCompatibilityTest.assertSameContent(dir, raw.toString(), out);
        assertTrue(java.nio.file.Files.size(Path.of(out)) < 16L << 20, "the qcow2 holds only the data");
    }

    @Test
    void convertsFourGibibytesOfRandomDataWithBoundedHeap() throws IOException {
        Path raw = dir.resolve("random.raw");
        try (FileChannel ch = FileChannel.open(raw, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            SplittableRandom r = new SplittableRandom(2);
            ByteBuffer b = ByteBuffer.allocateDirect(8 << 20);
            for (long at = 0; at < 4 * GIB; at += b.capacity()) {
                b.clear();
                while (b.hasRemaining()) {
                    b.putLong(r.nextLong());
                }
                ch.write(b.flip(), at);
            }
        }
        String out = dir.resolve("random.qcow2").toString();
        qcow4jIn256MiB("convert", "-O", "qcow2", raw.toString(), out).ok();
        WriteCompatibilityTest.assertClean(dir, out);
        WriteCompatibilityTest.assertSameContent(dir, raw.toString(), out);
        String back = dir.resolve("back.raw").toString();
        qcow4jIn256MiB("convert", "-O", "raw", out, back).ok();
        assertEquals(-1L, java.nio.file.Files.mismatch(raw, Path.of(back)));
    }
}
