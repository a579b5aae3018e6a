package org.qcow4j.ext;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.BitSet;
import java.util.Random;
import java.util.stream.LongStream;
import org.junit.jupiter.api.Test;

/** {@link BlockRangesBuilder} and {@link BlockRanges} against a plain bit set. */
class BlockRangesTest {

    @Test
    void mergesTouchingAndOverlappingRunsInAnyOrder() {
        BlockRangesBuilder b = new BlockRangesBuilder();
        b.add(10, 20);
        b.add(0, 5);
        b.add(5, 7);   // touches [0,5)
        b.add(15, 30); // overlaps [10,20)
        b.add(40);
        b.add(30);     // touches [15,30)
        b.add(8, 8);   // empty
        BlockRanges r = b.build(0, 0, Long.MAX_VALUE);
        assertEquals(3, r.size());
        assertEquals(0, r.start(0));
        assertEquals(7, r.end(0));
        assertEquals(10, r.start(1));
        assertEquals(31, r.end(1));
        assertEquals(40, r.start(2));
        assertEquals(41, r.end(2));
        assertEquals(7 + 21 + 1, r.count());
        assertTrue(r.contains(0) && r.contains(6) && r.contains(30) && r.contains(40));
        assertFalse(r.contains(7) || r.contains(9) || r.contains(31) || r.contains(41) || r.contains(-1));
        assertEquals("[0-6, 10-30, 40] (29 blocks)", r.toString());
        assertThrows(IndexOutOfBoundsException.class, () -> r.start(3));
    }

    @Test
    void iteratesBlocksInOrder() {
        BlockRangesBuilder b = new BlockRangesBuilder();
        b.add(7, 9);
        b.add(2);
        BlockRanges r = b.build(0, 0, Long.MAX_VALUE);
        long[] blocks = LongStream.generate(r.iterator()::nextLong).limit(r.count()).toArray();
        assertArrayEquals(new long[] {2, 7, 8}, blocks);
        var it = r.iterator();
        it.nextLong();
        it.nextLong();
        it.nextLong();
        assertFalse(it.hasNext());
        assertThrows(java.util.NoSuchElementException.class, it::nextLong);
        assertFalse(BlockRanges.empty().iterator().hasNext());
    }

    /** bigalloc: a block marks its whole cluster; then the set is clipped to the filesystem. */
    @Test
    void roundsToClustersAndClips() {
        BlockRangesBuilder b = new BlockRangesBuilder();
        b.add(0);
        b.add(17, 18);
        b.add(60, 70);
        BlockRanges r = b.build(4, 1, 66);
        assertEquals("[1-31, 48-65] (49 blocks)", r.toString());
    }

    @Test
    void matchesABitSetUnderRandomAdds() {
        Random random = new Random(7);
        for (int round = 0; round < 20; round++) {
            BlockRangesBuilder b = new BlockRangesBuilder();
            BitSet expected = new BitSet();
            for (int i = 0; i < 5000; i++) {
                int start = random.nextInt(100_000);
                int len = random.nextInt(i % 3 == 0 ? 200 : 3);
                b.add(start, start + len);
                expected.set(start, start + len);
            }
            BlockRanges r = b.build(0, 0, Long.MAX_VALUE);
            assertEquals(expected.cardinality(), r.count());
            for (int i = 0; i < 100_200; i++) {
                if (expected.get(i) != r.contains(i)) {
                    throw new AssertionError("block " + i + " round " + round);
                }
            }
            for (int i = 1; i < r.size(); i++) {
                assertTrue(r.end(i - 1) < r.start(i), "runs sorted, merged, apart");
            }
        }
    }

    @Test
    void memoryFollowsRunsNotBlocks() {
        BlockRangesBuilder b = new BlockRangesBuilder();
        for (int i = 0; i < 1_000_000; i++) {
            b.add(i % 1000 * 10L, i % 1000 * 10L + 5); // a million adds, 1000 distinct runs
        }
        assertEquals(1000, b.build(0, 0, Long.MAX_VALUE).size());
    }

    @Test
    void equalityIsBySet() {
        BlockRangesBuilder a = new BlockRangesBuilder();
        a.add(1, 3);
        a.add(3, 4);
        BlockRangesBuilder b = new BlockRangesBuilder();
        b.add(1, 4);
        assertEquals(a.build(0, 0, 10), b.build(0, 0, 10));
        assertEquals(a.build(0, 0, 10).hashCode(), b.build(0, 0, 10).hashCode());
    }
}
