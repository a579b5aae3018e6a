package org.qcow4j.ops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.function.LongConsumer;
import org.qcow4j.CompareResult;
import org.qcow4j.CompareResult.Verdict;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.ImageOperationException;
import org.qcow4j.IoBuffers;
import org.qcow4j.format.ClusterGeometry;

/**
 * qemu-img 7.2's {@code img_compare}: walks both images by block status (so unallocated and zero ranges cost nothing,
 * a 4 TiB sparse pair compares at once), reads only where one of them holds data, in qemu-img's 2 MiB chunks, and
 * reports the first differing 512-byte sector as qemu-img does ({@code compare_buffers} and {@code find_nonzero} are
 * both sector-granular, from the start of a chunk). Strict mode ({@code -s}) also compares the block status flags.
 */
public final class ImageComparison {
    /** qemu-img's message when the block status of an image cannot be read, before the image's name. */
    private static final String SECTOR_ALLOCATION_FAILED = "Sector allocation test failed for ";

    /** qemu-img's IO_BUF_SIZE: the most it reads at once. */
    static final int CHUNK = 2 << 20;
    private static final int SECTOR = 512;

    // QEMU's BDRV_BLOCK_* flags, for strict mode's comparison of whole statuses.
    private static final int DATA = 0x01;
    private static final int ZERO = 0x02;
    private static final int OFFSET_VALID = 0x04;
    private static final int ALLOCATED = 0x10;
    private static final int EOF = 0x20;

    private final DiskImage first;
    private final DiskImage second;
    private final ByteBuffer buf1 = IoBuffers.allocate(CHUNK);
    private final ByteBuffer buf2 = IoBuffers.allocate(CHUNK);

    /** Reads the second image beside the first; made when first needed, ended with the comparison. */
    private java.util.concurrent.ExecutorService helper;

    private ImageComparison(DiskImage first, DiskImage second) {
        this.first = first;
        this.second = second;
    }

    private java.util.concurrent.ExecutorService helper() {
        if (helper == null) {
            helper = java.util.concurrent.Executors.newSingleThreadExecutor(r -> {
                Thread t = new Thread(r, "compare-reader");
                t.setDaemon(true);
                return t;
            });
        }
        return helper;
    }

    /**
     * Compares {@code first} with {@code second}; {@code progress} is told the length of each chunk done (their sum
     * reaches the larger size when the images compare identical).
     */
    public static CompareResult compare(DiskImage first, DiskImage second, boolean strict, LongConsumer progress)
            throws IOException {
        ImageComparison c = new ImageComparison(first, second);
        try {
            return c.run(strict, progress == null ? n -> { } : progress);
        } finally {
            if (c.helper != null) {
                c.helper.shutdownNow();
            }
        }
    }

    private CompareResult run(boolean strict, LongConsumer progress) throws IOException {
        long size1 = first.size();
        long size2 = second.size();
        long common = Math.min(size1, size2);
        if (strict && size1 != size2) {
            return new CompareResult(Verdict.SIZE_MISMATCH, 0, true);
        }
        long offset = 0;
        while (offset < common) {
            Status s1 = status(first, offset, size1 - offset);
            Status s2 = status(second, offset, size2 - offset);
            long chunk = Math.min(s1.length, s2.length);
            if (strict && s1.flags != s2.flags) {
                return new CompareResult(Verdict.STATUS_MISMATCH, offset, false);
            }
            boolean allocated1 = (s1.flags & ALLOCATED) != 0;
            boolean allocated2 = (s2.flags & ALLOCATED) != 0;
            if ((s1.flags & ZERO) != 0 && (s2.flags & ZERO) != 0) {
                // both read as zeros: nothing to do
            } else if (allocated1 == allocated2) {
                if (allocated1) {
                    chunk = Math.min(chunk, CHUNK);
                    long at = firstDifference(offset, (int) chunk);
                    if (at >= 0) {
                        return new CompareResult(Verdict.CONTENT_MISMATCH, at, false);
                    }
                }
            } else {
                chunk = Math.min(chunk, CHUNK);
                long at = firstNonZero(allocated1 ? first : second, offset, (int) chunk);
                if (at >= 0) {
                    return new CompareResult(Verdict.CONTENT_MISMATCH, at, false);
                }
            }
            offset += chunk;
            progress.accept(chunk);
        }
        if (size1 == size2) {
            return new CompareResult(Verdict.IDENTICAL, 0, false);
        }
        DiskImage over = size1 > size2 ? first : second;
        long end = over.size();
        while (offset < end) {
            Status s = status(over, offset, end - offset);
            long chunk = s.length;
            if ((s.flags & ALLOCATED) != 0 && (s.flags & ZERO) == 0) {
                chunk = Math.min(chunk, CHUNK);
                long at = firstNonZero(over, offset, (int) chunk);
                if (at >= 0) {
                    return new CompareResult(Verdict.CONTENT_MISMATCH, at, true);
                }
            }
            offset += chunk;
            progress.accept(chunk);
        }
        return new CompareResult(Verdict.IDENTICAL, 0, true);
    }

    /** A run of bytes with one block status ({@code bdrv_block_status_above} over the whole chain). */
    private record Status(long length, int flags) {
    }

    /**
     * The block status QEMU gives at {@code offset}, from the extent the image reports. A range unallocated in a
     * layer that has a backing file, yet not left to it, lies past a shorter backing file's end: QEMU counts it as
     * allocated zeros there ({@code bdrv_co_common_block_status_above}).
     */
    private static Status status(DiskImage image, long offset, long max) throws IOException {
        Extent e;
        try {
            e = image.blockStatus(offset, max);
        } catch (java.io.InterruptedIOException | java.nio.channels.ClosedByInterruptException stop) {
            throw stop;
        } catch (IOException fault) { // qemu-img's words for it, and its exit code 3
            throw new ImageOperationException(image.filename(), "block status at offset " + offset + ": "
                    + fault.getMessage(), SECTOR_ALLOCATION_FAILED + image.filename(), fault);
        }
        // QEMU's qcow2 reports at most one L2 table's range per call, in each layer it asks: the same chunks
        // make the same progress values (qemu-img adds them up as floats)
        long end = e.end();
        DiskImage layer = image;
        for (int d = 0; d <= e.depth() && layer != null; d++, layer = layer.backing()) {
            DiskImage l = layer;
            long coverage = layer.qcow2().map(q -> sliceCoverage(q.header().geometry(), l.size())).orElse(0L);
            if (coverage > 0) {
                end = Math.min(end, (offset / coverage + 1) * coverage);
            }
        }
        if (end < e.end()) {
            e = new Extent(e.start(), end - e.start(), e.depth(), e.present(), e.zero(), e.data(), e.hostOffset());
        }
        int flags = (e.data() ? DATA : 0) | (e.zero() ? ZERO : 0) | (e.hasHostOffset() ? OFFSET_VALID : 0)
                | (e.present() ? ALLOCATED : 0);
        if (!e.present() && layer(image, e.depth()).backing() != null) {
            flags |= ALLOCATED | ZERO;
        }
        if (e.end() == image.size()) {
            flags |= EOF;
        }
        return new Status(e.length(), flags);
    }

    /**
     * The guest range one of QEMU's L2 cache slices maps (qcow2's read_cache_sizes on Linux): a whole table when the
     * default 32 MiB L2 cache covers the disk, else 4 KiB of entries.
     */
    private static long sliceCoverage(ClusterGeometry geo, long virtualSize) {
        long clusterSize = geo.clusterSize();
        long tables = (virtualSize + clusterSize - 1) / clusterSize * geo.l2EntrySize();
        long maxL2Cache = (tables + clusterSize - 1) / clusterSize * clusterSize;
        long sliceBytes = maxL2Cache > 32L << 20 ? Math.min(clusterSize, 4096) : clusterSize;
        return sliceBytes / geo.l2EntrySize() * clusterSize;
    }

    private static DiskImage layer(DiskImage image, int depth) {
        DiskImage layer = image;
        for (int i = 0; i < depth && layer.backing() != null; i++) {
            layer = layer.backing();
        }
        return layer;
    }

    /**
     * QEMU's {@code compare_buffers}: the start of the first differing sector, or -1. The two images are read at
     * once, the second on a helper thread (reads are thread-safe), as they are usually separate files.
     */
    private long firstDifference(long offset, int length) throws IOException {
        java.util.concurrent.Future<?> other = helper().submit(() -> {
            read(second, buf2, offset, length);
            return null;
        });
        read(first, buf1, offset, length);
        try {
            other.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("compare interrupted");
        } catch (java.util.concurrent.ExecutionException e) {
            if (e.getCause() instanceof IOException io) {
                throw io;
            }
            throw new IllegalStateException(e.getCause());
        }
        int at = buf1.mismatch(buf2);
        return at < 0 ? -1 : offset + (long) at / SECTOR * SECTOR;
    }

    /** QEMU's {@code check_empty_sectors}: the start of the first sector holding a non-zero byte, or -1. */
    private long firstNonZero(DiskImage image, long offset, int length) throws IOException {
        read(image, buf1, offset, length);
        int i = org.qcow4j.io.Zeros.firstNonZero(buf1, 0, length);
        return i < 0 ? -1 : offset + (long) i / SECTOR * SECTOR;
    }

    private static void read(DiskImage image, ByteBuffer buf, long offset, int length) throws IOException {
        buf.clear().limit(length);
        try {
            image.read(buf, offset);
        } catch (java.io.InterruptedIOException | java.nio.channels.ClosedByInterruptException stop) {
            throw stop;
        } catch (IOException fault) { // qemu-img's words for it (the errno QEMU's drivers give), and its exit code 4
            throw new ImageOperationException(image.filename(), "reading offset " + offset + ": " + fault.getMessage(),
                    "Error while reading offset " + offset + " of " + image.filename() + ": Input/output error", fault);
        }
        buf.flip();
    }
}
