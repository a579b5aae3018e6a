package org.qcow4j.ops;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.MeasureResult;
import org.qcow4j.Qcow2Metadata;
import org.qcow4j.format.Bitmap;

/**
 * {@code qemu-img measure}: QEMU 7.2's {@code qcow2_measure} (with {@code qcow2_calc_prealloc_size} and
 * {@code qcow2_refcount_metadata_size}) and {@code raw_measure}. The source's data is counted by block status, whole
 * target clusters at a time, so a sparse source measures at once.
 */
public final class Measurement {
    private static final long MAX_L1_BYTES = 32L << 20; // QCOW_MAX_L1_SIZE
    private static final int BITMAP_DIR_ENTRY = 24; // sizeof(Qcow2BitmapDirEntry)
    private static final int BITMAP_TABLE_ENTRY = 8;

    private Measurement() {
    }

    /**
     * Measures a new image made from {@code source} (or, if null, an empty one of {@code size} bytes): qcow2 with
     * {@code qcow2}'s options (its size ignored), or raw when {@code qcow2} is null.
     *
     * @throws IllegalArgumentException with QEMU's words when the size needs an L1 table past QEMU's limit
     */
    public static MeasureResult measure(DiskImage source, long size, CreateOptions qcow2) throws IOException {
        if (qcow2 == null) {
            long required = source != null ? source.size() : (size + 511) & ~511L;
            return new MeasureResult(required, required, -1);
        }
        long clusterSize = 1L << qcow2.clusterBits();
        int l2EntrySize = qcow2.extendedL2() ? 16 : 8;
        long virtualSize = roundUp(size, clusterSize);
        long l2Tables = ceilDiv(virtualSize / clusterSize, clusterSize / l2EntrySize);
        if (l2Tables > MAX_L1_BYTES / 8) {
            throw new IllegalArgumentException("The image size is too large (try using a larger cluster size)");
        }
        long required = 0;
        if (source != null) {
            long sourceSize = source.size();
            virtualSize = roundUp(sourceSize, clusterSize);
            if (qcow2.backingFile() != null) {
                // "In the worst case the new image's backing file has nothing in common with the input image"
                required = virtualSize;
            } else {
                long pnum;
                for (long offset = 0; offset < sourceSize; offset += pnum) {
                    Extent e = source.blockStatus(offset, sourceSize - offset);
                    pnum = e.length();
                    if (e.zero()) {
                        continue; // safe with no backing file
                    }
                    if (e.data() && e.present()) {
                        pnum = roundUp(offset + pnum, clusterSize) - offset; // to the end of the cluster
                        required += offset % clusterSize + pnum;
                    }
                }
            }
        }
        if (qcow2.preallocation() == CreateOptions.Preallocation.FULL
                || qcow2.preallocation() == CreateOptions.Preallocation.FALLOC) {
            required = virtualSize;
        }
        long fullyAllocated = preallocSize(virtualSize, clusterSize, qcow2.refcountOrder(), l2EntrySize);
        if (qcow2.encryption() != null) { // the LUKS header region, in whole clusters
            fullyAllocated += roundUp(org.qcow4j.qcow2.Qcow2Writer.luksRegionLength(qcow2.encryption()), clusterSize);
        }
        long bitmaps = -1;
        Qcow2Metadata meta = source == null ? null : source.qcow2().orElse(null);
        if (qcow2.version() >= 3 && meta != null && meta.header().version() >= 3) {
            bitmaps = bitmapsSize(meta, source.size(), clusterSize);
        }
        return new MeasureResult(fullyAllocated - virtualSize + required, fullyAllocated, bitmaps);
    }

    /** QEMU's {@code qcow2_calc_prealloc_size}: the header, every L2 and L1 entry, refcounts, and the data. */
    private static long preallocSize(long totalSize, long clusterSize, int refcountOrder, int l2EntrySize) {
        long aligned = roundUp(totalSize, clusterSize);
        long meta = clusterSize;
        long l2Entries = roundUp(aligned / clusterSize, clusterSize / l2EntrySize);
        meta += l2Entries * l2EntrySize;
        long l1Entries = roundUp(l2Entries * l2EntrySize / clusterSize, clusterSize / 8);
        meta += l1Entries * 8;
        meta += refcountMetadataSize((meta + aligned) / clusterSize, clusterSize, refcountOrder);
        return meta + aligned;
    }

    /**
     * QEMU's {@code qcow2_refcount_metadata_size} (not generous): the refcount blocks and table clusters that count
     * {@code clusters} clusters and themselves, found as a fixed point.
     */
    private static long refcountMetadataSize(long clusters, long clusterSize, int refcountOrder) {
        long blocksPerTableCluster = clusterSize / 8;
        long refcountsPerBlock = clusterSize * 8 / (1L << refcountOrder);
        long table = 0;
        long blocks = 0;
        long last;
        long n = 0;
        do {
            last = n;
            blocks = ceilDiv(clusters + table + blocks, refcountsPerBlock);
            table = ceilDiv(blocks, blocksPerTableCluster);
            n = clusters + blocks + table;
        } while (n != last);
        return (blocks + table) * clusterSize;
    }

    /**
     * QEMU's {@code qcow2_get_persistent_dirty_bitmap_size}: each bitmap whole (as clusters of the target), its
     * table, and the directory's entries.
     */
    private static long bitmapsSize(Qcow2Metadata meta, long diskSize, long clusterSize) {
        long total = 0;
        long directory = 0;
        for (Bitmap b : meta.bitmaps()) {
            long granularity = 1L << b.granularityBits();
            long bytes = ceilDiv(ceilDiv(diskSize, granularity), 8);
            long clusters = ceilDiv(bytes, clusterSize);
            total += clusters * clusterSize;
            total += roundUp(clusters * BITMAP_TABLE_ENTRY, clusterSize);
            directory += roundUp(BITMAP_DIR_ENTRY + b.name().getBytes(StandardCharsets.UTF_8).length, 8);
        }
        return total + roundUp(directory, clusterSize);
    }

    private static long roundUp(long n, long to) {
        return ceilDiv(n, to) * to;
    }

    private static long ceilDiv(long n, long d) {
        return n / d + (n % d == 0 ? 0 : 1);
    }
}
