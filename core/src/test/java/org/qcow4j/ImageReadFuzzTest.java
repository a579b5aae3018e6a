package org.qcow4j;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;
import org.qcow4j.testing.DamagedInput;

/**
 * Coverage-guided: open, read, map and check a qcow2 image whose metadata comes from the fuzzer. The first input
 * byte picks one of {@link FuzzedImages#KINDS}; the rest overwrites the start of that image (header, L1, refcount
 * table and blocks, L2 tables, snapshot table, bitmap directory). Everything must work or throw a
 * {@link QcowException}, within 5 s. Regression inputs:
 * {@code src/test/resources/org/qcow4j/ImageReadFuzzTestInputs/openReadMapCheck/}.
 */
class ImageReadFuzzTest {
    /** At most this much of the disk is read and this many extents mapped: the size may be anything. */
    private static final long READ_LIMIT = 512 * 1024;
    private static final int EXTENT_LIMIT = 2000;

    @FuzzTest
    void openReadMapCheck(byte[] input) {
        if (input.length == 0) {
            return;
        }
        Path img = FuzzedImages.image(input[0], Arrays.copyOfRange(input, 1, input.length), "fuzz-read.qcow2");
        DamagedInput.runOrRefuse(5000, QcowException.class, () -> {
            try (DiskImage d = Images.open(img, OpenOptions.defaults().withFormat("qcow2"))) {
                d.qcow2().ifPresent(q -> {
                    q.snapshots();
                    q.bitmaps();
                });
                ByteBuffer buf = ByteBuffer.allocate(64 * 1024);
                long size = d.size();
                for (long pos = 0; pos < Math.min(size, READ_LIMIT); pos += buf.capacity()) {
                    d.read(buf.clear().limit((int) Math.min(buf.capacity(), size - pos)), pos);
                }
                if (size > READ_LIMIT) {
                    d.read(buf.clear().limit(4096), size - 4096);
                }
                long pos = 0;
                for (int n = 0; n < EXTENT_LIMIT && pos < size; n++) {
                    pos = d.extentAt(pos, size - pos).end();
                }
            }
        });
        DamagedInput.runOrRefuse(5000, QcowException.class, () -> Images.check(img));
    }
}
