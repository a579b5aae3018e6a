package org.qcow4j.format;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.nio.ByteBuffer;
import java.util.Arrays;
import org.qcow4j.QcowException;
import org.qcow4j.testing.DamagedInput;

/**
 * Coverage-guided: the snapshot table and the bitmap directory of an image file that is the fuzzer's bytes (the
 * seeds are whole small images with snapshots and bitmaps). Decoding must succeed or throw a
 * {@link QcowException}, and never read outside the file. Regression inputs:
 * {@code src/test/resources/org/qcow4j/format/SnapshotTableFuzzTestInputs/snapshotsAndBitmaps/}.
 */
class SnapshotTableFuzzTest {
    @FuzzTest
    void snapshotsAndBitmaps(byte[] file) {
        String name = "fuzz.qcow2";
        long length = file.length;
        Snapshot.Reader reader = (offset, n) -> {
            if (offset < 0 || n < 0 || n > 1 << 20) {
                throw new AssertionError("read of " + n + " bytes at " + offset);
            }
            // as FileStorage reads: zeros past the end of the file, as QEMU's block layer gives them
            byte[] b = new byte[n];
            if (offset < length) {
                System.arraycopy(file, (int) offset, b, 0, (int) Math.min(n, length - offset));
            }
            return ByteBuffer.wrap(b);
        };
        DamagedInput.runOrRefuse(2000, QcowException.class, () -> {
            Header h = Header.parse(ByteBuffer.wrap(file), name, length);
            Snapshot.readTable(h, reader, name, length);
            if (h.bitmaps() != null) {
                Bitmap.readDirectory(h.bitmaps(), reader, name, length);
                BitmapTable.readDirectory(h.bitmaps(), reader, name, length, h.size(), h.clusterBits());
            }
        });
    }
}
