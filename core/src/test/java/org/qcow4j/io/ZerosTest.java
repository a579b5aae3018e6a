package org.qcow4j.io;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.util.Random;
import org.junit.jupiter.api.Test;

class ZerosTest {
    /** The plain definition, byte by byte. */
    private static boolean expected(ByteBuffer b, int from, int to) {
        for (int i = from; i < to; i++) {
            if (b.get(i) != 0) {
                return false;
            }
        }
        return true;
    }

    @Test
    void agreesWithTheDefinitionAtEveryBoundary() {
        Random r = new Random(20261202);
        int size = 3 * 64 * 1024 + 13; // more than two of the zero buffer's chunks, and not a multiple of 8
        for (ByteBuffer b : new ByteBuffer[] {ByteBuffer.allocate(size), ByteBuffer.allocateDirect(size)}) {
            // a single non-zero byte at the edges of longs and of the 64 KiB chunks, or none
            int[] marks = {-1, 0, 7, 8, 65535, 65536, 65537, 131071, 131072, size - 9, size - 8, size - 1};
            for (int mark : marks) {
                for (int i = 0; i < size; i++) {
                    b.put(i, (byte) 0);
                }
                if (mark >= 0) {
                    b.put(mark, (byte) (1 + r.nextInt(255)));
                }
                int[][] ranges = {{0, size}, {1, size}, {0, size - 1}, {mark < 0 ? 0 : mark, size},
                    {0, mark < 0 ? 0 : mark}, {0, mark + 1}, {Math.max(0, mark - 3), Math.min(size, mark + 4)},
                    {5, 5}, {3, 10}, {65530, 131080}};
                for (int[] range : ranges) {
                    int from = range[0];
                    int to = Math.max(from, range[1]);
                    String what = "mark " + mark + " range " + from + ".." + to + (b.isDirect() ? " direct" : "");
                    assertEquals(expected(b, from, to), Zeros.isZero(b, from, to), what);
                    assertEquals(mark >= from && mark < to ? mark : -1, Zeros.firstNonZero(b, from, to), what);
                }
            }
        }
    }

    @Test
    void leavesTheBufferAsItWas() {
        ByteBuffer b = ByteBuffer.allocate(100_000);
        b.position(17).limit(99_000);
        Zeros.isZero(b, 0, 99_000); // absolute indexes, up to the limit as with get(int)
        assertEquals(17, b.position());
        assertEquals(99_000, b.limit());
    }
}
