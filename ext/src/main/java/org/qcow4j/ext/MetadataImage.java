package org.qcow4j.ext;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import org.qcow4j.AbstractDiskImage;
import org.qcow4j.BlockWriter;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.Images;
import org.qcow4j.IoBuffers;
import org.qcow4j.QcowException;

/**
 * A filesystem seen as a disk that holds only its metadata blocks (what e2image images): those blocks read as
 * on the device, directory blocks scrambled with {@code -s}, every other block as an unallocated zero. As a
 * {@link DiskImage} it feeds the converters unchanged: {@code -Q} is a qcow2 conversion of it, {@code -r} a raw one.
 * Open one with {@link ExtMetadata#image}; it owns the device and closes it.
 */
public final class MetadataImage extends AbstractDiskImage implements BlockWriter.Source {
    private static final byte[] ZEROS = new byte[64 * 1024];
    /** Bytes {@link #writeTo} reads at a time. */
    private static final int BATCH = 256 * 1024;
    private final FileChannel device;
    private final long deviceOffset;
    private final int blockSize;
    private final BlockRanges blocks;
    private final BlockRanges scrambled;
    private final DirectoryScrambler scrambler;

    /**
     * @param scrambled directory blocks whose names to scramble, or null. Scrambling numbers names in block order
     *                  (e2image's counters run from block to block), so such an image must be read once, in
     *                  ascending order, by one thread.
     */
    MetadataImage(String name, FileChannel device, long deviceOffset, int blockSize, long blocksCount, BlockRanges blocks,
                  BlockRanges scrambled) {
        super(name, "raw", blocksCount * blockSize);
        this.device = device;
        this.deviceOffset = deviceOffset;
        this.blockSize = blockSize;
        this.blocks = blocks;
        this.scrambled = scrambled;
        this.scrambler = scrambled == null ? null : new DirectoryScrambler(name, blockSize);
    }

    /** Index of the first run that ends after {@code block}, or blocks.size(). */
    private int runAfter(long block) {
        int lo = 0;
        int hi = blocks.size();
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (blocks.end(mid) <= block) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        long max = Math.min(maxLength, size() - offset);
        long block = offset / blockSize;
        int run = runAfter(block);
        if (run < blocks.size() && blocks.start(run) <= block) {
            return new Extent(offset, Math.min(max, blocks.end(run) * blockSize - offset), 0, true, false, true, -1);
        }
        long next = run < blocks.size() ? blocks.start(run) * blockSize : size();
        return new Extent(offset, Math.min(max, next - offset), 0, false, true, false, -1);
    }

    @Override
    public void read(ByteBuffer dst, long offset) throws IOException {
        while (dst.hasRemaining()) {
            Extent e = extentAt(offset, dst.remaining());
            int n = (int) e.length();
            ByteBuffer part = dst.slice(dst.position(), n);
            if (e.data()) {
                readDevice(part, offset);
                scramble(dst.slice(dst.position(), n), offset);
            } else {
                while (part.hasRemaining()) {
                    part.put(ZEROS, 0, Math.min(ZEROS.length, part.remaining()));
                }
            }
            dst.position(dst.position() + n);
            offset += n;
        }
    }

    private void readDevice(ByteBuffer part, long offset) throws IOException {
        long pos = deviceOffset + offset;
        while (part.hasRemaining()) {
            int k = device.read(part, pos);
            if (k < 0) {
                throw new QcowException(filename(), "device ends before block " + (pos / blockSize));
            }
            pos += k;
        }
    }

    /** Scrambles the directory blocks inside {@code part}, which starts at guest {@code offset} (block aligned). */
    private void scramble(ByteBuffer part, long offset) throws IOException {
        if (scrambler == null) {
            return;
        }
        for (long at = 0; at + blockSize <= part.remaining(); at += blockSize) {
            if (scrambled.contains((offset + at) / blockSize)) {
                scrambler.scramble(part.slice((int) at, blockSize));
            }
        }
    }

    /**
     * e2image's output loop ({@code output_meta_data_blocks}): the image's blocks in ascending order, read in batches
     * of up to 256 KiB, scrambled with {@code -s}, and the all-zero ones left out (its check comes after scrambling
     * too); the rest go to {@code out} in runs of consecutive blocks. One pass on the calling thread, nothing but the
     * batch buffer allocated: a short command then runs little code, where a conversion's pipeline would spend more
     * on interpreting and compiling itself than on copying.
     */
    @Override
    public void writeTo(BlockWriter out) throws IOException {
        int perBatch = Math.max(1, BATCH / blockSize);
        ByteBuffer buf = IoBuffers.allocate(perBatch * blockSize);
        for (int r = 0; r < blocks.size(); r++) {
            long end = blocks.end(r);
            for (long b = blocks.start(r); b < end; ) {
                int n = (int) Math.min(perBatch, end - b);
                int len = n * blockSize;
                readDevice(buf.clear().limit(len), b * blockSize);
                buf.position(0);
                scramble(buf, b * blockSize);
                // One scan finds the next block holding data (a journal's zeros go by in a few calls); a run then
                // lasts while blocks are not zero, which their first bytes tell at once.
                int k = 0;
                while (k < n) {
                    int at = buf.getLong(k * blockSize) != 0 ? k * blockSize : Images.firstNonZero(buf, k * blockSize, len);
                    if (at < 0) {
                        break;
                    }
                    k = at / blockSize;
                    int j = k + 1;
                    while (j < n && !isZero(buf, j * blockSize, (j + 1) * blockSize)) {
                        j++;
                    }
                    out.write((b + k) * blockSize, buf.slice(k * blockSize, (j - k) * blockSize));
                    k = j;
                }
                b += n;
            }
        }
    }

    /** Whether the block {@code buf[from, to)} is all zeros: metadata blocks that are not mostly differ at once. */
    private static boolean isZero(ByteBuffer buf, int from, int to) {
        return buf.getLong(from) == 0 && Images.firstNonZero(buf, from, to) < 0;
    }

    /** The number of blocks in the image (zero or not). */
    long blockCount() {
        return blocks.count();
    }

    /** The filesystem's block size: the cluster size of the qcow2 image e2image writes. */
    public int blockSize() {
        return blockSize;
    }

    /**
     * Whether the image must be read once, in ascending order, by one thread: scrambled names are numbered in block
     * order (e2image's counters run from block to block).
     */
    public boolean readsInOrderOnly() {
        return scrambler != null;
    }

    /** Closes the device. */
    @Override
    public void close() throws IOException {
        device.close();
    }
}
