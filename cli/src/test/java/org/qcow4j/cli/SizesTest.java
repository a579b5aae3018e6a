package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
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

    /**
     * A snapshot's VM state size is QEMU's uint64_t: 2^64 - 4096 (as a hostile or damaged image may say) is "16 EiB",
     * not "-4 KiB", and no failure.
     */
    @Test
    void vmStateSizeAsUnsigned() throws IOException {
        Path img = Qemu.createQcow2(dir, "vm.qcow2", "64M");
        Qemu.img(dir, "snapshot", "-c", "s1", img.toString());
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer header = ByteBuffer.allocate(72);
            ch.read(header, 0);
            long table = header.getLong(64); // snapshots_offset
            // vm_state_size_large: the first field of the entry's extra data, 40 bytes into the entry
            ch.write(ByteBuffer.allocate(8).putLong(0, 0xFFFF_FFFF_FFFF_F000L), table + 40);
        }
        Qemu.Result want = Qemu.img(dir, "info", img.toString());
        Qemu.Result got = Qemu.qcow4j("info", img.toString());
        assertTrue(want.out().contains(" 16 EiB "), want.out());
        assertEquals(want.out(), got.out());
        assertEquals(want.exit(), got.exit());
    }
}
