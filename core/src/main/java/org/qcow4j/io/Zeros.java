package org.qcow4j.io;

import java.nio.ByteBuffer;

/** Zero filling and zero detection for buffers. */
public final class Zeros {
    private static final byte[] ZEROS = new byte[64 * 1024];

    private Zeros() {
    }

    /**
     * Whether {@code buf[from, to)} is all zeros. Data blocks are rarely zero and usually differ in their
     * first bytes, so this reads longs with absolute gets and stops at the first non-zero one: no slices,
     * no allocation per block.
     */
    public static boolean isZero(ByteBuffer buf, int from, int to) {
        int i = from;
        for (; i + 8 <= to; i += 8) {
            if (buf.getLong(i) != 0) {
                return false;
            }
        }
        for (; i < to; i++) {
            if (buf.get(i) != 0) {
                return false;
            }
        }
        return true;
    }

    public static void fill(ByteBuffer dst) {
        while (dst.hasRemaining()) {
            dst.put(ZEROS, 0, Math.min(ZEROS.length, dst.remaining()));
        }
    }
}
