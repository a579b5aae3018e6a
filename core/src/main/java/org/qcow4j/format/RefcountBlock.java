package org.qcow4j.format;

import java.nio.ByteBuffer;

/**
 * Entries of a refcount block (qcow2.txt "Host cluster management"): {@code cluster_size * 8 / refcount_bits}
 * unsigned entries of {@code refcount_bits = 1 << refcount_order} bits. Widths below 8 bits are packed with
 * entry 0 in the least significant bits of byte 0; widths of 8 bits and more are big-endian.
 * The refcount table above it holds u64 offsets (bits 9-63; 0 = no block, all refcounts 0).
 */
public final class RefcountBlock {
    public static final long TABLE_OFFSET_MASK = 0xffff_ffff_ffff_fe00L;

    private RefcountBlock() {
    }

    /** Entries in one block. */
    public static long entries(int clusterBits, int refcountOrder) {
        return (1L << (clusterBits + 3)) >>> refcountOrder;
    }

    /** The largest refcount an entry can hold. */
    public static long max(int refcountOrder) {
        int bits = 1 << refcountOrder;
        return bits == 64 ? -1L : (1L << bits) - 1; // -1 is 2^64-1 as unsigned
    }

    public static long get(ByteBuffer block, int index, int refcountOrder) {
        return switch (refcountOrder) {
            case 0, 1, 2 -> {
                int bits = 1 << refcountOrder;
                int bit = index * bits;
                yield (block.get(bit >>> 3) >>> (bit & 7)) & ((1 << bits) - 1);
            }
            case 3 -> block.get(index) & 0xffL;
            case 4 -> block.getShort(index * 2) & 0xffffL;
            case 5 -> block.getInt(index * 4) & 0xffff_ffffL;
            case 6 -> block.getLong(index * 8);
            default -> throw new IllegalArgumentException("refcount_order " + refcountOrder);
        };
    }

    public static void set(ByteBuffer block, int index, int refcountOrder, long value) {
        switch (refcountOrder) {
            case 0, 1, 2 -> {
                int bits = 1 << refcountOrder;
                int bit = index * bits;
                int mask = ((1 << bits) - 1) << (bit & 7);
                int b = block.get(bit >>> 3);
                block.put(bit >>> 3, (byte) ((b & ~mask) | (((int) value << (bit & 7)) & mask)));
            }
            case 3 -> block.put(index, (byte) value);
            case 4 -> block.putShort(index * 2, (short) value);
            case 5 -> block.putInt(index * 4, (int) value);
            case 6 -> block.putLong(index * 8, value);
            default -> throw new IllegalArgumentException("refcount_order " + refcountOrder);
        }
    }
}
