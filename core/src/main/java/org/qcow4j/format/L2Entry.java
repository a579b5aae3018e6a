package org.qcow4j.format;

/**
 * An L2 table entry (qcow2.txt "Cluster mapping" and "Extended L2 Entries"); the only place that knows its bits.
 * <pre>
 * 64-bit entry, big-endian:
 *   bit 62: compressed; bit 63: COPIED (standard clusters only, refcount exactly 1)
 *   standard cluster (bit 62 = 0):
 *     bit  0     : ZERO flag (v3, not with extended L2): reads as zeros
 *     bits 1 - 8 : reserved (0)
 *     bits 9 - 55: host cluster offset (aligned); 0 = unallocated, except with an external data file
 *                  where offset 0 with COPIED maps guest cluster 0
 *     bits 56- 61: reserved (0)
 *   compressed cluster (bit 62 = 1), x = 62 - (cluster_bits - 8):
 *     bits 0 .. x-1 : host byte offset of the compressed stream
 *     bits x .. 61  : number of additional 512-byte sectors the stream spans
 * extended L2 adds a second 64-bit word, the subcluster bitmap:
 *   bit i (0..31)  : subcluster i is allocated
 *   bit 32+i       : subcluster i reads as zeros
 * </pre>
 */
public final class L2Entry {
    public static final long OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    public static final long STD_RESERVED_MASK = 0x3f00_0000_0000_01feL;
    public static final long COPIED = 1L << 63;
    public static final long COMPRESSED = 1L << 62;
    public static final long ZERO = 1L;
    public static final long BITMAP_ALL_ALLOC = 0xffff_ffffL;
    /** Every subcluster reads as zeros (the high word of the bitmap). */
    public static final long BITMAP_ALL_ZERO = BITMAP_ALL_ALLOC << 32;
    /** Compressed streams are sized in units of this many bytes. */
    public static final int COMPRESSED_SECTOR_SIZE = 512;

    private L2Entry() {
    }

    /**
     * Classifies subcluster {@code scIndex} of an entry (QEMU {@code qcow2_get_subcluster_type}).
     *
     * @param bitmap      the extended-L2 bitmap word, ignored without extended L2
     * @param hasDataFile whether the image keeps guest data in an external data file
     */
    public static SubclusterType classify(long entry, long bitmap, int scIndex, boolean extendedL2, boolean hasDataFile) {
        boolean compressed = (entry & COMPRESSED) != 0;
        if (compressed) {
            // QEMU ignores a compressed entry's bitmap when it reads and writes (qcow2_get_subcluster_type); only
            // its check calls one that is not 0 a corruption
            return SubclusterType.COMPRESSED;
        }
        long offset = entry & OFFSET_MASK;
        boolean allocated = offset != 0 || (hasDataFile && (entry & COPIED) != 0);
        if (!extendedL2) {
            if ((entry & ZERO) != 0) {
                return offset != 0 ? SubclusterType.ZERO_ALLOC : SubclusterType.ZERO_PLAIN;
            }
            return allocated ? SubclusterType.NORMAL : SubclusterType.UNALLOCATED_PLAIN;
        }
        boolean zero = (bitmap & (1L << (32 + scIndex))) != 0;
        if (allocated) {
            if (((bitmap >>> 32) & bitmap) != 0) {
                return SubclusterType.INVALID;
            }
            if (zero) {
                return SubclusterType.ZERO_ALLOC;
            }
            return (bitmap & (1L << scIndex)) != 0 ? SubclusterType.NORMAL : SubclusterType.UNALLOCATED_ALLOC;
        }
        if ((bitmap & BITMAP_ALL_ALLOC) != 0) {
            return SubclusterType.INVALID;
        }
        return zero ? SubclusterType.ZERO_PLAIN : SubclusterType.UNALLOCATED_PLAIN;
    }

    /**
     * The type of the whole cluster, as QEMU's {@code qcow2_get_cluster_type}: {@link SubclusterType#COMPRESSED},
     * {@link SubclusterType#ZERO_PLAIN} / {@link SubclusterType#ZERO_ALLOC} (the zero flag, never with extended L2),
     * {@link SubclusterType#UNALLOCATED_PLAIN} (no host offset) or {@link SubclusterType#NORMAL}. With extended L2 an
     * allocated cluster is NORMAL whatever its bitmap says.
     */
    public static SubclusterType clusterType(long entry, boolean extendedL2, boolean hasDataFile) {
        if ((entry & COMPRESSED) != 0) {
            return SubclusterType.COMPRESSED;
        }
        long offset = entry & OFFSET_MASK;
        if ((entry & ZERO) != 0 && !extendedL2) {
            return offset != 0 ? SubclusterType.ZERO_ALLOC : SubclusterType.ZERO_PLAIN;
        }
        if (offset == 0 && !(hasDataFile && (entry & COPIED) != 0)) {
            return SubclusterType.UNALLOCATED_PLAIN;
        }
        return SubclusterType.NORMAL;
    }

    /**
     * How many subclusters from {@code from} (of 32) have the type subcluster {@code from} has, {@code type}: QEMU's
     * {@code qcow2_get_subcluster_range_type}. Without extended L2, and for compressed clusters, the rest of the
     * cluster.
     */
    public static int subclusterRun(long bitmap, int from, SubclusterType type, boolean extendedL2) {
        int per = extendedL2 ? 32 : 1;
        if (!extendedL2 || type == SubclusterType.COMPRESSED) {
            return per - from;
        }
        long below = (1L << from) - 1; // QCOW_OFLAG_SUB_ALLOC_RANGE(0, from)
        return switch (type) {
            case NORMAL -> Long.numberOfTrailingZeros(~((bitmap | below) & BITMAP_ALL_ALLOC)) - from;
            case ZERO_PLAIN, ZERO_ALLOC -> Long.numberOfTrailingZeros(~(((bitmap >>> 32) | below) & BITMAP_ALL_ALLOC)) - from;
            case UNALLOCATED_PLAIN, UNALLOCATED_ALLOC -> {
                long val = ((bitmap >>> 32) | bitmap) & BITMAP_ALL_ALLOC & ~below;
                yield (val == 0 ? 32 : Long.numberOfTrailingZeros(val)) - from;
            }
            default -> throw new IllegalArgumentException("no run of " + type);
        };
    }

    /** The allocation bits of subclusters {@code first..last} (inclusive, 0..31) in a bitmap word. */
    public static long subclusterBits(int first, int last) {
        return (BITMAP_ALL_ALLOC >>> (31 - last)) & ~((1L << first) - 1);
    }

    /** The zero bits matching the allocation bits {@code allocBits}. */
    public static long zeroBits(long allocBits) {
        return allocBits << 32;
    }

    /** Host cluster offset of a standard entry. */
    public static long hostOffset(long entry) {
        return entry & OFFSET_MASK;
    }

    /** Bit position where the compressed sector count starts (QEMU {@code csize_shift}). */
    public static int compressedSizeShift(int clusterBits) {
        return 62 - (clusterBits - 8);
    }

    /**
     * The entry of a compressed stream of {@code length} bytes at host byte {@code host}: its offset and the number of
     * 512-byte sectors it touches, less one (QEMU's {@code nb_csectors}).
     */
    public static long compressed(long host, int length, int clusterBits) {
        long sectors = (host + length - 1) / COMPRESSED_SECTOR_SIZE - host / COMPRESSED_SECTOR_SIZE;
        return COMPRESSED | (sectors << compressedSizeShift(clusterBits)) | host;
    }

    /** Host byte offset of a compressed stream. */
    public static long compressedOffset(long entry, int clusterBits) {
        return entry & ((1L << compressedSizeShift(clusterBits)) - 1);
    }

    /**
     * Bytes to read for a compressed stream: whole sectors from its offset; the stream itself may be shorter
     * and the tail may belong to the next stream.
     */
    public static int compressedSize(long entry, int clusterBits) {
        long sectors = ((entry >>> compressedSizeShift(clusterBits)) & ((1L << (clusterBits - 8)) - 1)) + 1;
        return (int) (sectors * COMPRESSED_SECTOR_SIZE - (compressedOffset(entry, clusterBits) & (COMPRESSED_SECTOR_SIZE - 1)));
    }
}
