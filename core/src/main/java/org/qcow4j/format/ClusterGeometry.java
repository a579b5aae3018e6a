package org.qcow4j.format;

/**
 * The address arithmetic of one image: cluster size, L2 table shape and subclusters
 * (qcow2.txt "Cluster mapping"). All shifts and masks that turn a guest offset into table indexes live here.
 *
 * @param clusterBits log2 of the cluster size, 9..21
 * @param extendedL2  whether L2 entries are 128-bit with a 32-subcluster bitmap (incompatible bit 4)
 */
public record ClusterGeometry(int clusterBits, boolean extendedL2) {
    /** Subclusters per cluster with extended L2 entries (qcow2.txt "Extended L2 Entries"). */
    public static final int SUBCLUSTERS_PER_CLUSTER = 32;
    public static final int MIN_CLUSTER_BITS = 9;
    public static final int MAX_CLUSTER_BITS = 21;

    public long clusterSize() {
        return 1L << clusterBits;
    }

    /** Bytes per L2 entry: 8, or 16 with extended L2. */
    public int l2EntrySize() {
        return extendedL2 ? 16 : 8;
    }

    /** log2 of the number of entries in one L2 table (a table fills one cluster). */
    public int l2Bits() {
        return clusterBits - (extendedL2 ? 4 : 3);
    }

    public int l2Entries() {
        return 1 << l2Bits();
    }

    /** Guest bytes covered by one L2 table. */
    public long l2Coverage() {
        return 1L << (clusterBits + l2Bits());
    }

    public long l1Index(long guestOffset) {
        return guestOffset >>> (clusterBits + l2Bits());
    }

    public int l2Index(long guestOffset) {
        return (int) ((guestOffset >>> clusterBits) & (l2Entries() - 1));
    }

    public long offsetInCluster(long offset) {
        return offset & (clusterSize() - 1);
    }

    public long startOfCluster(long offset) {
        return offset & ~(clusterSize() - 1);
    }

    public boolean isClusterAligned(long offset) {
        return offsetInCluster(offset) == 0;
    }

    /** Bytes per subcluster: the cluster size over 32 with extended L2, else the whole cluster. */
    public long subclusterSize() {
        return extendedL2 ? clusterSize() / SUBCLUSTERS_PER_CLUSTER : clusterSize();
    }

    public int subclusterIndex(long guestOffset) {
        return extendedL2 ? (int) (offsetInCluster(guestOffset) / subclusterSize()) : 0;
    }

    /** Number of L1 entries needed to map {@code virtualSize} bytes (QEMU {@code size_to_l1}). */
    public long l1EntriesFor(long virtualSize) {
        long coverage = l2Coverage();
        return virtualSize / coverage + (virtualSize % coverage != 0 ? 1 : 0); // no overflow near Long.MAX_VALUE
    }

    public long sizeToClusters(long bytes) {
        return (bytes + clusterSize() - 1) >>> clusterBits;
    }
}
