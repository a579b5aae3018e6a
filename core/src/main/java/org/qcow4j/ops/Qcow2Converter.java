package org.qcow4j.ops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.function.LongConsumer;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.IoBuffers;
import org.qcow4j.QcowException;
import org.qcow4j.io.Workers;
import org.qcow4j.io.Zeros;
import org.qcow4j.qcow2.ClusterCompressor;
import org.qcow4j.qcow2.Qcow2Writer;

/**
 * Copies images (concatenated) into a new qcow2 image through a {@link Qcow2Writer}, like
 * {@code qemu-img convert -O qcow2}: only ranges some layer allocates are read; all-zero clusters stay
 * unallocated; with {@code compress}, every cluster whose stream is shorter than a cluster is stored compressed.
 * With a backing image, clusters equal to the backing file's are left to it and zero clusters hiding backing data
 * become zero clusters. Reading, comparing and compressing run on {@code threads} workers in chunks; the calling
 * thread writes the results in guest order, with a bounded number of chunks in flight.
 */
public final class Qcow2Converter {
    private static final int CHUNK = 1 << 20;

    private final int threads;
    private final boolean compress;
    private final DiskImage backing;
    private final LongConsumer progress;
    private final int minSparse;
    private final boolean copyRange;
    private final RateLimit rate;

    /**
     * @param backing   the new image's backing file, opened, to write only what differs from it; or null
     * @param progress  told how many guest bytes were finished; may be null
     * @param minSparse qemu-img's {@code -S} in bytes ({@link SparseRuns}; compressed outputs only tell 0 from the
     *                  rest, as qemu-img); 0 allocates every cluster, zeros included
     */
    public Qcow2Converter(int threads, boolean compress, DiskImage backing, LongConsumer progress, int minSparse) {
        this(threads, compress, backing, progress, minSparse, false, 0);
    }

    /**
     * @param copyRange {@code -C}: the clusters of data ranges written as they are, zeros included ({@link CopyRange})
     * @param rate      {@code -r}: bytes per second written at most ({@link RateLimit}); 0: no limit
     */
    Qcow2Converter(int threads, boolean compress, DiskImage backing, LongConsumer progress, int minSparse,
                   boolean copyRange, long rate) {
        this.copyRange = copyRange;
        this.rate = RateLimit.of(rate);
        this.threads = Math.max(1, threads);
        this.compress = compress;
        this.backing = backing;
        this.progress = progress == null ? n -> { } : progress;
        this.minSparse = minSparse;
    }

    /** What one cluster of a chunk becomes. */
    private enum Op { SKIP, DATA, ZERO, COMPRESSED }

    /** A worker's verdict on a chunk of clusters starting at guest cluster {@code first}. */
    private record Chunk(long first, Op[] ops, ByteBuffer[] buffers, ByteBuffer[] streams, long bytes) {
        ByteBuffer data() {
            return buffers[0];
        }
    }

    /** An upper bound of the data clusters the inputs can produce: clusters touched by ranges that may hold data. */
    public static long dataClustersHint(List<DiskImage> inputs, int clusterBits) throws IOException {
        DiskImage in = ConcatenatedImage.of(inputs);
        long clusters = 0;
        long lastCluster = -1;
        for (long pos = 0; pos < in.size(); ) {
            Extent e = in.extentAt(pos, in.size() - pos);
            if (e.data() || !e.zero()) {
                long first = Math.max(e.start() >>> clusterBits, lastCluster + 1);
                long last = (e.end() - 1) >>> clusterBits;
                if (last >= first) {
                    clusters += last - first + 1;
                    lastCluster = last;
                }
            }
            pos = e.end();
        }
        return clusters;
    }

    /** Converts {@code inputs}, one after the other, into {@code out} (whose size must be their total size). */
    public void convert(List<DiskImage> inputs, Qcow2Writer out) throws IOException {
        DiskImage in = ConcatenatedImage.of(inputs);
        CreateOptions o = out.options();
        if (compress && o.dataFile() != null) {
            throw new QcowException(o.dataFile(), "compression is not possible with an external data file");
        }
        int clusterBits = o.clusterBits();
        int clusterSize = 1 << clusterBits;
        int chunk = Math.max(CHUNK, clusterSize);
        long size = in.size();

        ConcurrentLinkedQueue<ClusterCompressor> compressors = new ConcurrentLinkedQueue<>();
        ConcurrentLinkedQueue<ByteBuffer[]> buffers = new ConcurrentLinkedQueue<>();
        List<ClusterCompressor> allCompressors = new ArrayList<>();
        CopyRange offload = new CopyRange(copyRange);
        try (Workers<Chunk> workers = new Workers<>(threads)) {
            long scheduledEnd = 0; // guest byte up to which chunks are scheduled (cluster aligned)
            for (long pos = 0; pos < size; ) {
                Extent e = needsCopy(in, pos, size - pos);
                long end = e.end();
                if (e.data() || !e.zero() || minSparse == 0) {
                    boolean whole = offload.whole(e);
                    long a = Math.max(scheduledEnd, e.start() & -clusterSize);
                    long rangeEnd = Math.min(roundUp(end, clusterSize), roundUp(size, clusterSize));
                    while (a < rangeEnd) {
                        long b = Math.min(a + chunk, rangeEnd);
                        long start = a;
                        if (workers.full()) {
                            apply(workers.next(), out, buffers, clusterBits);
                        }
                        workers.submit(() -> work(in, start, b, o, clusterBits, whole, compressors, allCompressors,
                                buffers));
                        a = b;
                        scheduledEnd = b;
                    }
                } else {
                    progress.accept(e.length());
                }
                pos = end;
            }
            while (!workers.isEmpty()) {
                apply(workers.next(), out, buffers, clusterBits);
            }
        } finally {
            synchronized (allCompressors) {
                allCompressors.forEach(ClusterCompressor::close);
            }
        }
    }

    private static long roundUp(long v, long align) {
        return (v + align - 1) & -align;
    }

    /** The extent at {@code pos}, of the input or, where it may differ from the backing file, of both. */
    private Extent needsCopy(DiskImage in, long pos, long max) throws IOException {
        Extent e = in.extentAt(pos, max);
        if (backing == null || (e.data() || !e.zero())) {
            return e;
        }
        if (pos >= backing.size()) {
            return e;
        }
        Extent b = backing.extentAt(pos, Math.min(e.length(), backing.size() - pos));
        // Zero in the input but maybe data in the backing file: look at it (a zero cluster may be needed).
        return new Extent(pos, b.length(), 0, true, b.zero() && !b.data(), b.data(), -1);
    }

    private Chunk work(DiskImage in, long start, long end, CreateOptions o, int clusterBits, boolean whole,
                       ConcurrentLinkedQueue<ClusterCompressor> compressors, List<ClusterCompressor> allCompressors,
                       ConcurrentLinkedQueue<ByteBuffer[]> buffers) throws IOException {
        int clusterSize = 1 << clusterBits;
        int len = (int) (end - start);
        ByteBuffer[] bufs = buffers.poll();
        if (bufs == null || bufs[0].capacity() < len) {
            bufs = new ByteBuffer[] {IoBuffers.allocate(Math.max(len, CHUNK)), backing == null ? null
                    : IoBuffers.allocate(Math.max(len, CHUNK))};
        }
        ByteBuffer data = bufs[0].clear().limit(len);
        readPadded(in, data, start);
        ByteBuffer base = null;
        if (backing != null) {
            base = bufs[1].clear().limit(len);
            readPadded(backing, base, start);
        }
        int n = len >> clusterBits;
        Op[] ops = new Op[n];
        ByteBuffer[] streams = compress ? new ByteBuffer[n] : null;
        ClusterCompressor compressor = null;
        try {
            boolean[] written = minSparse > clusterSize && !compress ? writtenClusters(data, start, clusterBits) : null;
            for (int i = 0; i < n; i++) {
                int at = i << clusterBits;
                boolean zero = !whole && minSparse > 0 && (written == null ? Zeros.isZero(data, at, at + clusterSize) : !written[i]);
                if (base != null && data.slice(at, clusterSize).equals(base.slice(at, clusterSize))) {
                    ops[i] = Op.SKIP;
                } else if (zero) {
                    ops[i] = base == null ? Op.SKIP : o.version() >= 3 ? Op.ZERO : Op.DATA;
                } else if (compress) {
                    if (compressor == null) {
                        compressor = compressors.poll();
                        if (compressor == null) {
                            compressor = new ClusterCompressor(o.compressionType(), clusterSize);
                            synchronized (allCompressors) {
                                allCompressors.add(compressor);
                            }
                        }
                    }
                    ByteBuffer s = compressor.compress(data.slice(at, clusterSize));
                    if (s != null) {
                        ByteBuffer copy = ByteBuffer.allocate(s.remaining());
                        copy.put(s).flip();
                        streams[i] = copy;
                        ops[i] = Op.COMPRESSED;
                    } else {
                        ops[i] = Op.DATA;
                    }
                } else {
                    ops[i] = Op.DATA;
                }
            }
        } finally {
            if (compressor != null) {
                compressors.add(compressor);
            }
        }
        return new Chunk(start >> clusterBits, ops, bufs, streams, Math.min(end, in.size()) - start);
    }

    /**
     * The clusters of a chunk that qemu-img writes with an {@code -S} larger than a cluster: those holding part of a
     * data run of {@link SparseRuns} (zero clusters between data clusters among them). With an {@code -S} up to the
     * cluster size, that is exactly the clusters that are not all zeros, and this is not needed.
     */
    private boolean[] writtenClusters(ByteBuffer data, long start, int clusterBits) throws IOException {
        boolean[] written = new boolean[data.limit() >> clusterBits];
        int min = minSparse / SparseRuns.SECTOR;
        SparseRuns.forEach(data, data.limit() / SparseRuns.SECTOR, start / SparseRuns.SECTOR, min,
                SparseRuns.alignment(min), (from, length, isData) -> {
                    if (isData) {
                        for (int c = from >> clusterBits; c <= (from + length - 1) >> clusterBits; c++) {
                            written[c] = true;
                        }
                    }
                });
        return written;
    }

    /**
     * Reads guest bytes into {@code dst}, zeros past the end of the image: the last cluster's padding, and all of a
     * chunk past the end of a backing file shorter than the input (there the new image reads zeros, as QEMU's
     * overlays do beyond their backing file).
     */
    private static void readPadded(DiskImage d, ByteBuffer dst, long start) throws IOException {
        long avail = Math.max(0, Math.min(dst.remaining(), d.size() - start));
        if (avail > 0) {
            d.read(dst.slice(0, (int) avail), start);
        }
        Zeros.fill(dst.position((int) avail));
        dst.position(0);
    }

    private void apply(Chunk c, Qcow2Writer out, ConcurrentLinkedQueue<ByteBuffer[]> buffers, int clusterBits)
            throws IOException {
        Op[] ops = c.ops();
        for (int i = 0; i < ops.length; ) {
            long gc = c.first() + i;
            switch (ops[i]) {
                case SKIP -> i++;
                case ZERO -> {
                    rate.account(1L << clusterBits);
                    out.writeZero(gc);
                    i++;
                }
                case COMPRESSED -> {
                    rate.account(1L << clusterBits);
                    out.writeCompressed(gc, c.streams()[i]);
                    i++;
                }
                case DATA -> {
                    int j = i;
                    while (j < ops.length && ops[j] == Op.DATA) {
                        j++;
                    }
                    rate.account((long) (j - i) << clusterBits);
                    out.writeData(gc, c.data().slice(i << clusterBits, (j - i) << clusterBits));
                    i = j;
                }
            }
        }
        progress.accept(c.bytes());
        buffers.add(c.buffers());
    }
}
