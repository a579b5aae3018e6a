package org.qcow4j.ext;

import java.util.Arrays;

/**
 * Collects block runs in any order and builds a {@link BlockRanges}. Runs that continue the last one are merged
 * at once (files are mostly contiguous); when the buffer fills, it is sorted and merged in place, and grows only if
 * that did not free enough room, so memory follows the number of distinct runs, not of blocks added.
 */
final class BlockRangesBuilder {
    private long[] starts = new long[64];
    private long[] ends = new long[64];
    private int size;

    /** Adds the blocks {@code [start, end)}. */
    void add(long start, long end) {
        if (start >= end) {
            return;
        }
        if (size > 0 && start >= starts[size - 1] && start <= ends[size - 1]) {
            ends[size - 1] = Math.max(ends[size - 1], end);
            return;
        }
        if (size == starts.length) {
            compact();
            if (size > starts.length / 2) {
                starts = Arrays.copyOf(starts, starts.length * 2);
                ends = Arrays.copyOf(ends, ends.length * 2);
            }
        }
        starts[size] = start;
        ends[size] = end;
        size++;
    }

    void add(long block) {
        add(block, block + 1);
    }

    /**
     * The set built so far, as e2image's block bitmap would hold it: with {@code clusterBits > 0} (bigalloc) every
     * run grows to whole clusters, since marking a block marks its cluster; then only blocks in
     * {@code [from, to)} are kept (e2image writes nothing below s_first_data_block nor past the end).
     */
    BlockRanges build(int clusterBits, long from, long to) {
        compact();
        long[] s = new long[size];
        long[] e = new long[size];
        int n = 0;
        long clusterMask = (1L << clusterBits) - 1;
        for (int i = 0; i < size; i++) {
            long start = Math.max(starts[i] & ~clusterMask, from);
            long end = Math.min((ends[i] + clusterMask) & ~clusterMask, to);
            if (start >= end) {
                continue;
            }
            if (n > 0 && start <= e[n - 1]) {
                e[n - 1] = Math.max(e[n - 1], end);
            } else {
                s[n] = start;
                e[n] = end;
                n++;
            }
        }
        return n == 0 ? BlockRanges.empty() : new BlockRanges(s, e, n);
    }

    /**
     * Sorts and merges the runs in place. Sorting starts and ends separately is enough for a union: sweeping both
     * in order and counting open runs gives the merged runs (a start at the same place as an end is taken first, so
     * touching runs merge).
     */
    private void compact() {
        if (size < 2) {
            return;
        }
        long[] s = Arrays.copyOf(starts, size);
        long[] e = Arrays.copyOf(ends, size);
        Arrays.sort(s);
        Arrays.sort(e);
        int out = 0;
        int open = 0;
        long runStart = 0;
        int i = 0;
        int j = 0;
        while (j < size) {
            if (i < size && s[i] <= e[j]) {
                if (open++ == 0) {
                    runStart = s[i];
                }
                i++;
            } else {
                if (--open == 0) {
                    starts[out] = runStart;
                    ends[out] = e[j];
                    out++;
                }
                j++;
            }
        }
        size = out;
    }
}
