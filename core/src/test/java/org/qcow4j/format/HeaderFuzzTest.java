package org.qcow4j.format;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.nio.ByteBuffer;
import org.qcow4j.QcowException;
import org.qcow4j.testing.DamagedInput;

/**
 * Coverage-guided: the qcow2 header and its extensions decoded from the fuzzer's bytes (cluster 0), checked against
 * a file as long as the bytes and against a 1 TiB file. It must decode or throw a {@link QcowException}.
 * Regression inputs: {@code src/test/resources/org/qcow4j/format/HeaderFuzzTestInputs/header/}.
 */
class HeaderFuzzTest {
    @FuzzTest
    void header(byte[] cluster0) {
        for (long fileLength : new long[] {cluster0.length, 1L << 40}) {
            DamagedInput.runOrRefuse(2000, QcowException.class, () -> {
                Header.peekClusterBits(ByteBuffer.wrap(cluster0), "fuzz.qcow2", fileLength);
                Header.parse(ByteBuffer.wrap(cluster0), "fuzz.qcow2", fileLength);
            });
        }
    }
}
