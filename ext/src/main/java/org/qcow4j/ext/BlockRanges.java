package org.qcow4j.ext;

import java.util.Arrays;
import java.util.NoSuchElementException;
import java.util.PrimitiveIterator;

/**
 * An immutable set of block numbers, kept as sorted, merged, non-overlapping runs {@code [start(i), end(i))}: a
 * filesystem's metadata is a few thousand runs however large the filesystem is.
 */
public final class BlockRanges {
    private static final BlockRanges EMPTY = new BlockRanges(new long[0], new long[0], 0);

    private final long[] starts;
    private final long[] ends;
    private final int size;
    private final long count;

    /** Takes sorted, merged runs (from {@link BlockRangesBuilder}); the arrays are not copied. */
    BlockRanges(long[] starts, long[] ends, int size) {
        this.starts = starts;
        this.ends = ends;
        this.size = size;
        long total = 0;
        for (int i = 0; i < size; i++) {
            total += ends[i] - starts[i];
        }
        this.count = total;
    }

    static BlockRanges empty() {
        return EMPTY;
    }

    /** Number of blocks in the set. */
    public long count() {
        return count;
    }

    /** Number of runs. */
    public int size() {
        return size;
    }

    /** First block of run {@code i} (runs ascend). */
    public long start(int i) {
        return starts[checkIndex(i)];
    }

    /** One past the last block of run {@code i}. */
    public long end(int i) {
        return ends[checkIndex(i)];
    }

    public boolean contains(long block) {
        int i = Arrays.binarySearch(starts, 0, size, block);
        if (i >= 0) {
            return true;
        }
        int before = -i - 2; // the last run starting below block
        return before >= 0 && block < ends[before];
    }

    /** The block numbers in ascending order. */
    public PrimitiveIterator.OfLong iterator() {
        return new PrimitiveIterator.OfLong() {
            private int run;
            private long next = size > 0 ? starts[0] : 0;

            @Override
            public boolean hasNext() {
                return run < size;
            }

            @Override
            public long nextLong() {
                if (run >= size) {
                    throw new NoSuchElementException();
                }
                long block = next++;
                if (next == ends[run] && ++run < size) {
                    next = starts[run];
                }
                return block;
            }
        };
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof BlockRanges r && r.size == size && Arrays.equals(starts, 0, size, r.starts, 0, size)
                && Arrays.equals(ends, 0, size, r.ends, 0, size);
    }

    @Override
    public int hashCode() {
        int h = size;
        for (int i = 0; i < size; i++) {
            h = 31 * (31 * h + Long.hashCode(starts[i])) + Long.hashCode(ends[i]);
        }
        return h;
    }

    /** The runs with inclusive ends, e.g. {@code [3-258, 4384] (257 blocks)}, for messages and test failures
     *  (cut short after 200 runs). */
    @Override
    public String toString() {
        StringBuilder s = new StringBuilder("[");
        for (int i = 0; i < size; i++) {
            if (i > 0) {
                s.append(", ");
            }
            if (i == 200) {
                s.append("... ").append(size - i).append(" more");
                break;
            }
            s.append(starts[i]);
            if (ends[i] - starts[i] > 1) {
                s.append('-').append(ends[i] - 1);
            }
        }
        return s.append("] (").append(count).append(" blocks)").toString();
    }

    private int checkIndex(int i) {
        if (i < 0 || i >= size) {
            throw new IndexOutOfBoundsException("run " + i + " of " + size);
        }
        return i;
    }
}
