package org.qcow4j.format;

/**
 * An L1 table entry (qcow2.txt "Cluster mapping"), 64 bits big-endian:
 * <pre>
 *  bit  0 -  8: reserved (0)
 *  bit  9 - 55: offset of the L2 table in the image file, cluster aligned; 0 = the whole range is unallocated
 *  bit 56 - 62: reserved (0)
 *  bit      63: COPIED, the L2 table's refcount is exactly 1
 * </pre>
 */
public final class L1Entry {
    public static final long OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    public static final long RESERVED_MASK = 0x7f00_0000_0000_01ffL;
    public static final long COPIED = 1L << 63;
    /** QEMU's QCOW_MAX_L1_SIZE: 32 MiB of L1 table. */
    public static final long MAX_ENTRIES = 32L * 1024 * 1024 / 8;

    private L1Entry() {
    }

    public static long l2Offset(long entry) {
        return entry & OFFSET_MASK;
    }

    public static boolean hasReservedBits(long entry) {
        return (entry & RESERVED_MASK) != 0;
    }
}
