package org.qcow4j.raw;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.qcow4j.AbstractDiskImage;
import org.qcow4j.Extent;
import org.qcow4j.io.FileExtents;
import org.qcow4j.io.FileStorage;

/**
 * A raw disk image: guest offset = file offset. Like QEMU, the size is the file length rounded up to whole
 * 512-byte sectors, the tail past the end of the file reading as zeros. Holes of a sparse file are reported as
 * zero extents (found through {@link FileExtents} on first use), so copies skip them as qemu-img's do.
 */
public final class RawImage extends AbstractDiskImage {
    private final FileStorage storage;
    /** Sorted {start, end} data ranges; null until asked for; {0, length} when the file system cannot tell. */
    private volatile long[] dataRanges;

    public RawImage(String filename, FileStorage storage) {
        super(filename, "raw", (storage.length() + 511) & ~511L);
        this.storage = storage;
    }





    @Override
    public void read(ByteBuffer dst, long offset) throws IOException {
        checkRange(offset, dst.remaining());
        storage.readFully(dst, offset);
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        long max = Math.min(maxLength, size() - offset);
        long[] r = ranges();
        // The first range ending after offset: offset is in it (data) or in the hole before it.
        int lo = 0;
        int hi = r.length / 2;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (r[2 * mid + 1] <= offset) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (lo < r.length / 2 && r[2 * lo] <= offset) {
            return new Extent(offset, Math.min(max, r[2 * lo + 1] - offset), 0, true, false, true, offset);
        }
        long holeEnd = lo < r.length / 2 ? r[2 * lo] : size();
        return new Extent(offset, Math.min(max, holeEnd - offset), 0, true, true, false, offset);
    }

    private long[] ranges() {
        long[] r = dataRanges;
        if (r == null) {
            long length = storage.length();
            r = storage.path() == null ? null : FileExtents.dataRanges(storage.path(), length);
            if (r == null) {
                r = length == 0 ? new long[0] : new long[] {0, length};
            }
            dataRanges = r;
        }
        return r;
    }

    @Override
    public void close() throws IOException {
        storage.close();
    }
}
