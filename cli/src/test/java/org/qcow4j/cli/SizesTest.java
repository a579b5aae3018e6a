package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link Sizes}: qemu-img's human sizes ({@code size_to_str}, C's "%0.3g"), against qemu-img info itself. */
class SizesTest {
    @TempDir
    Path dir;

    /**
     * Raw files of these sizes (multiples of 512, as QEMU counts them), with the units' edges and ties: 999.5 KiB rounds
     * half to even up to "1e+03 KiB", 100.5 KiB down to "100 KiB", 101.5 KiB up to "102 KiB"; 1000 KiB is
     * "0.977 MiB"; 1023.5 KiB "1 MiB".
     */
    private static final long[] SIZES = {0, 512, 1024, 1536, 10240, 102400, 102912, 103936, 512000, 1022976, 1023488,
            1023999 / 512 * 512, 1024000, 1048064, 1048576, 1073741312, 1073741824, 5L << 30, 999L << 30,
            (1L << 40) - 512, 15L << 40, 123456789L * 512};

    @Test
    void virtualSizesAsQemuImgInfo() throws IOException {
        for (long size : SIZES) {
            Path f = dir.resolve("s" + size + ".raw");
            try (RandomAccessFile r = new RandomAccessFile(f.toFile(), "rw")) {
                r.setLength(size);
            }
            String out = Qemu.img(dir, "info", "-f", "raw", f.toString()).out();
            String line = out.lines().filter(l -> l.startsWith("virtual size: ")).findFirst().orElseThrow();
            assertEquals(line, "virtual size: " + Sizes.human(size) + " (" + size + " bytes)", out);
        }
    }
}
