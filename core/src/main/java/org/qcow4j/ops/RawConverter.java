package org.qcow4j.ops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.List;
import java.util.function.LongConsumer;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.IoBuffers;
import org.qcow4j.QcowException;
import org.qcow4j.io.FileExtents;
import org.qcow4j.io.Workers;
import org.qcow4j.io.Zeros;

/**
 * Copies the guest contents of one or more images (concatenated, like {@code qemu-img convert}) into a raw
 * file. Work follows allocated data: ranges the chain reports as zero are skipped, read data is scanned in
 * 4 KiB blocks and zero blocks are not written, so the output stays sparse. Reads, decompression and writes
 * run on {@code threads} {@link Workers} with at most two chunks in flight per worker (bounded memory).
 */
public final class RawConverter {
    /** Guest bytes one worker handles at a time. */
    static final int CHUNK = 2 * 1024 * 1024;

    private final int threads;
    private final LongConsumer progress;
    private final int minSparse;
    private final boolean copyRange;
    private final RateLimit rate;

    /**
     * @param threads   workers (at least 1)
     * @param progress  told how many guest bytes were finished, as they finish; may be null
     * @param minSparse qemu-img's {@code -S} in bytes: zero runs left as holes by {@link SparseRuns}; 0 writes every
     *                  byte, zeros included (a fully allocated output)
     */
    public RawConverter(int threads, LongConsumer progress, int minSparse) {
        this(threads, progress, minSparse, false, 0);
    }

    /**
     * @param copyRange {@code -C}: data ranges written as they are, zeros included ({@link CopyRange})
     * @param rate      {@code -r}: bytes per second written at most ({@link RateLimit}); 0: no limit
     */
    RawConverter(int threads, LongConsumer progress, int minSparse, boolean copyRange, long rate) {
        this.threads = Math.max(1, threads);
        this.progress = progress == null ? n -> { } : progress;
        this.minSparse = minSparse;
        this.copyRange = copyRange;
        this.rate = RateLimit.of(rate);
    }

    /** Total guest bytes of the inputs, which is the output's size. */
    public static long totalSize(List<DiskImage> inputs) {
        return ConcatenatedImage.of(inputs).size();
    }

    /**
     * Writes the inputs one after the other into {@code out}, which must be empty (holes read as zeros);
     * its size is set to the total input size.
     *
     * @param outName the output's name for error messages
     */
    public void convert(List<DiskImage> inputs, FileChannel out, String outName) throws IOException {
        long total = totalSize(inputs);
        try {
            out.truncate(0);
            if (total > 0) {
                // Extends the file sparsely: one byte at the end, then nothing else needs to grow it.
                out.write(ByteBuffer.allocate(1), total - 1);
            }
        } catch (IOException e) {
            throw new QcowException(outName, "cannot write: " + e.getMessage(), e);
        }
        copyAll(inputs, out, outName, 0);
    }

    /**
     * Writes the inputs into the existing file {@code outPath} at byte {@code outOffset} (e2image's {@code -O}: an
     * image inside a larger disk image), keeping the bytes outside that range. Inside it the result is exactly the
     * inputs: data the file already holds where the inputs read as zeros is overwritten with zeros first.
     */
    public void convertInto(List<DiskImage> inputs, FileChannel out, Path outPath, String outName, long outOffset)
            throws IOException {
        long total = totalSize(inputs);
        long end = Math.addExact(outOffset, total);
        try {
            long existing = out.size();
            long[] data = FileExtents.dataRanges(outPath, existing);
            if (data == null) {
                data = new long[] {0, existing};
            }
            ByteBuffer zeros = IoBuffers.allocate(CHUNK);
            for (int i = 0; i < data.length; i += 2) {
                for (long p = Math.max(data[i], outOffset); p < Math.min(data[i + 1], end); p += CHUNK) {
                    writeAll(out, outName, zeros.clear().limit((int) Math.min(CHUNK, Math.min(data[i + 1], end) - p)), p);
                }
            }
            if (existing < end) {
                out.write(ByteBuffer.allocate(1), end - 1);
            }
        } catch (IOException e) {
            throw e instanceof QcowException ? e : new QcowException(outName, "cannot write: " + e.getMessage(), e);
        }
        copyAll(inputs, out, outName, outOffset);
    }

    /** Copies every range that may hold data, the image's byte {@code g} going to {@code base + g}. */
    private void copyAll(List<DiskImage> inputs, FileChannel out, String outName, long base) throws IOException {
        long total = totalSize(inputs);
        ThreadLocal<ByteBuffer> buffers = ThreadLocal.withInitial(() -> IoBuffers.allocate(CHUNK));
        DiskImage in = ConcatenatedImage.of(inputs);
        CopyRange offload = new CopyRange(copyRange);
        try (Workers<Long> workers = new Workers<>(threads)) {
            for (long pos = 0; pos < total; ) {
                Extent e = in.extentAt(pos, total - pos);
                if (!e.data() && e.zero() && minSparse > 0) {
                    progress.accept(e.length());
                } else {
                    int sparse = offload.whole(e) ? 0 : minSparse;
                    for (long off = e.start(); off < e.end(); off += CHUNK) {
                        long len = Math.min(CHUNK, e.end() - off);
                        long guest = off;
                        if (workers.full()) {
                            progress.accept(workers.next());
                        }
                        workers.submit(() -> {
                            copy(in, guest, (int) len, out, outName, base + guest, buffers.get(), sparse);
                            return len;
                        });
                    }
                }
                pos = e.end();
            }
            while (!workers.isEmpty()) {
                progress.accept(workers.next());
            }
        }
    }

    private void copy(DiskImage in, long guest, int len, FileChannel out, String outName, long outPos,
                             ByteBuffer buf, int minSparse) throws IOException {
        buf.clear().limit(len);
        in.read(buf, guest);
        if (minSparse == 0) {
            writeFully(out, outName, buf.flip(), outPos);
            return;
        }
        // Whole sectors for the rule: a short last sector is padded with zeros.
        int padded = (len + SparseRuns.SECTOR - 1) & -SparseRuns.SECTOR;
        Zeros.fill(buf.limit(padded));
        int min = minSparse / SparseRuns.SECTOR;
        SparseRuns.forEach(buf, padded / SparseRuns.SECTOR, guest / SparseRuns.SECTOR, min, SparseRuns.alignment(min),
                (from, length, data) -> {
                    if (data) {
                        writeFully(out, outName, buf.slice(from, Math.min(length, len - from)), outPos + from);
                    }
                });
    }

    private void writeFully(FileChannel out, String outName, ByteBuffer src, long pos) throws IOException {
        rate.account(src.remaining());
        // One write at a time: the kernel serializes buffered writes to a file on its inode lock anyway, and a
        // worker waiting there spins on the lock's owner (async-profiler: 50 ms of CPU in a 1 GiB copy) where here it
        // parks, leaving the core to the other worker's read and decompression, which still overlap the write.
        synchronized (this) {
            writeAll(out, outName, src, pos);
        }
    }

    /** All of {@code src} at {@code pos}, a failure told as the output's ({@code outName}). */
    static void writeAll(FileChannel out, String outName, ByteBuffer src, long pos) throws IOException {
        try {
            while (src.hasRemaining()) {
                pos += out.write(src, pos);
            }
        } catch (IOException e) {
            throw new QcowException(outName, "cannot write at offset " + pos + ": " + e.getMessage(), e);
        }
    }
}
