package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import org.junit.jupiter.api.Test;

class IoBuffersTest {
    /** Every size, page multiple or not, gets exactly its capacity, direct, starting on a page. */
    @Test
    void directPageAlignedAndExactlyAsLarge() {
        for (int size : new int[] {1, 511, 512, 4095, 4096, 4097, 65536, 2 * 1024 * 1024, 2 * 1024 * 1024 + 512}) {
            for (int i = 0; i < 8; i++) { // malloc places blocks differently: several of each
                ByteBuffer b = IoBuffers.allocate(size);
                assertTrue(b.isDirect(), "direct");
                assertEquals(0, b.alignmentOffset(0, IoBuffers.PAGE), "aligned, size " + size);
                assertEquals(size, b.capacity(), "capacity");
                assertEquals(0, b.position());
                assertEquals(size, b.limit());
            }
        }
    }
}
