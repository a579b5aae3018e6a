package org.qcow4j;

import java.nio.ByteBuffer;

/** Zero filling and zero detection for buffers. */
final class Zeros {
    private static final byte[] ZEROS = new byte[64 * 1024];

    private Zeros() {
    }

    static void fill(ByteBuffer dst) {
        while (dst.hasRemaining()) {
            dst.put(ZEROS, 0, Math.min(ZEROS.length, dst.remaining()));
        }
    }
}
