package org.qcow4j.ext;

import java.util.Arrays;

/**
 * The block-mapping blocks (indirect blocks, extent tree nodes) already walked, as an open-addressing hash set of
 * block numbers. In a sound filesystem no two references lead to the same mapping block, so a repeat means a loop
 * or a cross-link, and refusing it bounds the whole walk by the number of blocks in the filesystem.
 */
final class VisitedBlocks {
    private static final long FREE = -1;
    private long[] slots = new long[1024];
    private int size;

    VisitedBlocks() {
        Arrays.fill(slots, FREE);
    }

    /** Adds {@code block} (not negative); false if it was there already. */
    boolean add(long block) {
        if (size >= slots.length / 2) {
            grow();
        }
        int mask = slots.length - 1;
        for (int i = hash(block) & mask;; i = (i + 1) & mask) {
            if (slots[i] == block) {
                return false;
            }
            if (slots[i] == FREE) {
                slots[i] = block;
                size++;
                return true;
            }
        }
    }

    int size() {
        return size;
    }

    private void grow() {
        long[] old = slots;
        slots = new long[old.length * 2];
        Arrays.fill(slots, FREE);
        size = 0;
        for (long block : old) {
            if (block != FREE) {
                add(block);
            }
        }
    }

    private static int hash(long block) {
        long h = block * 0x9E3779B97F4A7C15L;
        return (int) (h ^ (h >>> 32));
    }
}
