package org.qcow4j;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.qcow4j.testing.DamagedInput;

/**
 * Coverage-guided: the write path on a qcow2 image whose metadata comes from the fuzzer. The input's last bytes
 * pick one of {@link FuzzedImages#KINDS} and up to 8 operations (write, writeZeroes, discard, flush, resize, in
 * range); its first bytes overwrite the start of the image. {@code Images.openWritable} and every operation must
 * work or throw a {@link QcowException}, within 5 s. Regression inputs:
 * {@code src/test/resources/org/qcow4j/ImageWriteFuzzTestInputs/writePath/}.
 */
class ImageWriteFuzzTest {
    @FuzzTest
    void writePath(FuzzedDataProvider data) {
        int kind = data.consumeInt(0, FuzzedImages.KINDS.size() - 1);
        int[][] ops = new int[data.consumeInt(0, 8)][];
        for (int i = 0; i < ops.length; i++) {
            ops[i] = new int[] {data.consumeInt(0, 4), data.consumeInt(), data.consumeInt(), data.consumeInt(0, 255)};
        }
        Path img = FuzzedImages.image(kind, data.consumeRemainingAsBytes(), "fuzz-write.qcow2");
        // 30 s: a bound for hangs, not a speed test. Growing a 512-byte-cluster image to 128 GiB writes a 32 MiB L1
        // table (its size follows the virtual size in qcow2): about 3 s, and several times that under the fuzzer's
        // instrumentation on a busy machine.
        DamagedInput.runOrRefuse(30_000, QcowException.class, () -> {
            try (WritableImage d = Images.openWritable(img, OpenOptions.defaults().withFormat("qcow2"))) {
                for (int[] op : ops) {
                    long size = d.size();
                    // offsets and lengths within the disk, as the API asks (at most 64 KiB at a time)
                    long offset = size == 0 ? 0 : Integer.toUnsignedLong(op[1]) % size;
                    long length = Math.min(size - offset, Integer.toUnsignedLong(op[2]) % (64 * 1024 + 1));
                    switch (op[0]) {
                        case 0 -> {
                            ByteBuffer b = ByteBuffer.allocate((int) length);
                            while (b.hasRemaining()) {
                                b.put((byte) op[3]);
                            }
                            d.write(b.flip(), offset);
                        }
                        case 1 -> d.writeZeroes(offset, length, (op[3] & 1) != 0);
                        case 2 -> d.discard(offset, length);
                        case 3 -> d.flush();
                        default -> d.resize(Integer.toUnsignedLong(op[1]) << (op[3] & 15));
                    }
                }
            }
        });
    }
}
