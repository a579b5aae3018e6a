package org.qcow4j;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;
import org.qcow4j.format.Header;
import org.qcow4j.format.L2Entry;
import org.qcow4j.testing.DamagedInput;
import org.qcow4j.testing.FuzzTemplates;

/**
 * Coverage-guided: compressed cluster streams. A one-cluster qcow2 image (4 KiB clusters) made by {@code qemu-img
 * convert -c}, zlib or zstd as the first input byte says, gets the rest of the input as its compressed stream (its
 * L2 entry's sector count set to cover it) and is read back through {@link Images#open}: the cluster must read or
 * the read must throw a {@link QcowException}. Regression inputs:
 * {@code src/test/resources/org/qcow4j/CompressedClusterFuzzTestInputs/compressedStream/}.
 */
class CompressedClusterFuzzTest {
    private static final int CLUSTER_BITS = 12;

    @FuzzTest
    void compressedStream(byte[] input) throws Exception {
        if (input.length == 0) {
            return;
        }
        String type = (input[0] & 1) == 0 ? "zlib" : "zstd";
        byte[] template = FuzzTemplates.template(type + "4k.qcow2", "seq 1 1000 | head -c 4096 > c.raw; "
                + "qemu-img convert -q -c -O qcow2 -o cluster_size=4k,compression_type=" + type + " c.raw " + type + "4k.qcow2");
        ByteBuffer t = ByteBuffer.wrap(template);
        Header h = Header.parse(t, type, template.length);
        int l2At = (int) (t.getLong((int) h.l1TableOffset()) & L2Entry.OFFSET_MASK);
        long entry = t.getLong(l2At);
        int streamAt = (int) L2Entry.compressedOffset(entry, CLUSTER_BITS);
        if ((entry & L2Entry.COMPRESSED) == 0 || streamAt >= template.length) {
            throw new AssertionError("the template's cluster is not compressed: " + Long.toHexString(entry));
        }
        byte[] stream = Arrays.copyOfRange(input, 1, input.length);
        byte[] bytes = Arrays.copyOf(template, streamAt + stream.length);
        System.arraycopy(stream, 0, bytes, streamAt, stream.length);
        int shift = L2Entry.compressedSizeShift(CLUSTER_BITS);
        long sectors = Math.max(1, Math.min(1L << (CLUSTER_BITS - 8), ((streamAt & 511) + stream.length + 511) / 512));
        ByteBuffer.wrap(bytes).putLong(l2At, L2Entry.COMPRESSED | ((sectors - 1) << shift) | streamAt);
        Path img = FuzzTemplates.write("fuzz-compressed.qcow2", bytes);
        DamagedInput.runOrRefuse(5000, QcowException.class, () -> {
            try (DiskImage d = Images.open(img, OpenOptions.defaults().withFormat("qcow2"))) {
                d.read(ByteBuffer.allocate(1 << CLUSTER_BITS), 0);
            }
        });
    }
}
