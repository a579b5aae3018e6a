package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Cost follows allocated data, not virtual size: a 4 TiB image with 3 MiB of data converts at once. */
class LargeSparseTest {
    private static final long TIB = 1L << 40;

    @TempDir
    Path dir;

    @Test
    void convertsFourTebibyteSparseImageInWellUnderASecond() throws IOException {
        String image = dir.resolve("huge.qcow2").toString();
        String out = dir.resolve("huge.raw").toString();
        Qemu.img(dir, "create", "-q", "-f", "qcow2", image, "4T");
        Qemu.io(dir, image, "write -P 0x11 0 1M", "write -P 0x22 " + (TIB + 12345 * 512) + " 1M",
                "write -P 0x33 " + (4 * TIB - (1 << 20)) + " 1M", "write -z " + (2 * TIB) + " 64M");

        Qemu.qcow4j("map", "--output=json", image).ok(); // warm up class loading: the JVM is not what is measured
        long start = System.nanoTime();
        Qemu.qcow4j("convert", "-O", "raw", image, out).ok();
        double seconds = (System.nanoTime() - start) / 1e9;

        assertEquals(4 * TIB, Files.size(Path.of(out)));
        assertTrue(seconds < 1.0, "convert of a 4 TiB sparse image took " + seconds + " s");
        // qemu-img compares sparse files by their allocation, so this is quick too.
        Qemu.Result cmp = Qemu.img(dir, "compare", "-f", "qcow2", "-F", "raw", image, out);
        assertEquals("Images are identical.\n", cmp.out());
        long allocated = org.qcow4j.Images.allocatedBytes(Path.of(out));
        assertTrue(allocated < 16L << 20, "output should stay sparse, has " + allocated + " bytes allocated");
    }

    @Test
    void mapsFourTebibyteImageLikeQemu() {
        String image = dir.resolve("huge.qcow2").toString();
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", image, "4T");
        Qemu.io(dir, image, "write -P 1 " + (3 * TIB) + " 8k", "write -z 4096 4096");
        assertEquals(Qemu.img(dir, "map", "--output=json", image).out(), Qemu.qcow4j("map", "--output=json", image).ok().out());
    }
}
