package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.qcow4j.Extent;
import org.qcow4j.format.Header;
import org.qcow4j.format.RefcountBlock;
import org.qcow4j.io.FileExtents;
import org.qcow4j.io.FileStorage;

/**
 * QEMU's {@code qcow2_detect_metadata_preallocation} and the block-status recursion it turns on: an image whose file
 * counts clearly more clusters in use than the file system holds for it (at least 10/9 of them, and two more) was
 * preallocated with metadata only, so its data clusters may be holes in the file. For such an image QEMU asks the
 * data file where its holes are ({@code SEEK_DATA}) and reports the data clusters lying in a hole, or past the end of
 * the file, as reading zeros (still allocated: "zero": true, "data": true in {@code qemu-img map}). Here the file's
 * extents come from {@link FileExtents}; when they cannot be had the image counts as not preallocated (every data
 * cluster then reads as data, which is always correct).
 */
final class MetadataPreallocation {
    private final long[] dataRanges;
    private final long fileLength;

    private MetadataPreallocation(long[] dataRanges, long fileLength) {
        this.dataRanges = dataRanges;
        this.fileLength = fileLength;
    }

    /** The data file's holes if {@code image}'s file looks preallocated with metadata only; else null. */
    static MetadataPreallocation detect(FileStorage image, FileStorage dataFile, Header h) throws IOException {
        if (image.path() == null || dataFile.path() == null) {
            return null;
        }
        long cs = h.clusterSize();
        long realAllocation = FileExtents.allocatedBytes(image.path());
        if (realAllocation < 0) {
            return null;
        }
        long realClusters = realAllocation / cs;
        long threshold = Math.max(realClusters * 10 / 9, realClusters + 2);
        long endCluster = (image.length() + cs - 1) / cs;
        if (endCluster < threshold || countInUse(image, h, endCluster, threshold) < threshold) {
            return null;
        }
        long length = dataFile.length();
        long[] ranges = FileExtents.dataRanges(dataFile.path(), length);
        return ranges == null ? null : new MetadataPreallocation(ranges, length);
    }

    /** Clusters below {@code endCluster} with a non-zero refcount, counted until {@code threshold}. */
    private static long countInUse(FileStorage image, Header h, long endCluster, long threshold) throws IOException {
        long cs = h.clusterSize();
        int order = h.refcountOrder();
        long perBlock = RefcountBlock.entries(h.clusterBits(), order);
        long tableEntries = (long) h.refcountTableClusters() * cs / 8;
        ByteBuffer table = ByteBuffer.allocate((int) Math.min(tableEntries * 8, Header.MAX_REFTABLE_BYTES));
        image.readFully(table, h.refcountTableOffset());
        ByteBuffer block = ByteBuffer.allocate((int) cs);
        long count = 0;
        for (int i = 0; i < table.capacity() / 8 && (long) i * perBlock < endCluster && count < threshold; i++) {
            long offset = table.getLong(i * 8) & RefcountBlock.TABLE_OFFSET_MASK;
            if (offset == 0 || offset % cs != 0 || offset + cs > image.length()) {
                continue; // counts nothing (a damaged table is check's business, not this guess's)
            }
            image.readFully(block.clear(), offset);
            long n = Math.min(perBlock, endCluster - (long) i * perBlock);
            for (int j = 0; j < n && count < threshold; j++) {
                count += RefcountBlock.get(block, j, order) != 0 ? 1 : 0;
            }
        }
        return count;
    }

    /**
     * The data extent {@code [offset, offset + length)} at {@code host} as QEMU's recursion into the file reports it:
     * cut where the file's data or hole ends, and reading zeros in a hole or past the end of the file.
     */
    Extent dataExtent(long offset, long length, long host) {
        if (host >= fileLength) {
            return new Extent(offset, length, 0, true, true, true, host);
        }
        int i = firstEndingAfter(host);
        if (i < 0) { // a trailing hole: SEEK_DATA finds nothing more
            return new Extent(offset, length, 0, true, true, true, host);
        }
        long start = dataRanges[2 * i];
        long end = dataRanges[2 * i + 1];
        return start <= host
                ? new Extent(offset, Math.min(length, end - host), 0, true, false, true, host)
                : new Extent(offset, Math.min(length, start - host), 0, true, true, true, host);
    }

    /** The index of the first data range ending after {@code host}, or -1. */
    private int firstEndingAfter(long host) {
        int lo = 0;
        int hi = dataRanges.length / 2;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (dataRanges[2 * mid + 1] <= host) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo < dataRanges.length / 2 ? lo : -1;
    }
}
