package org.qcow4j.ops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.function.LongConsumer;
import org.qcow4j.ConvertOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.IoBuffers;
import org.qcow4j.QcowException;
import org.qcow4j.WritableImage;
import org.qcow4j.io.Zeros;

/**
 * Copies images (concatenated) into an image that exists already, as {@code qemu-img convert -n} does: nothing is
 * assumed of the target's old content, so its bytes where the inputs read as zeros are zeroed with
 * {@link WritableImage#writeZeroes} (unmapping allowed), unless {@code --target-is-zero} says they read as zeros
 * already. Data is read in qemu-img's 2 MiB pieces and split by {@link SparseRuns}; {@code -S 0} writes every byte as
 * data. With a backing file named ({@code -B}), what the inputs' own top layer leaves to its backing chain is left
 * unwritten, for the target's backing file to show.
 */
public final class ImageCopier {
    /** qemu-img's copy buffer: 4096 sectors. */
    static final int BUFFER = 2 << 20;

    private ImageCopier() {
    }

    public static void copy(List<DiskImage> inputs, WritableImage target, ConvertOptions options) throws IOException {
        Salvage salvage = Salvage.of(options.salvage());
        try {
            copyAll(salvage.wrap(inputs), target, options);
        } finally {
            salvage.report();
        }
    }

    private static void copyAll(List<DiskImage> inputs, WritableImage target, ConvertOptions options)
            throws IOException {
        DiskImage in = ConcatenatedImage.of(inputs);
        CopyRange offload = new CopyRange(options.copyRange());
        RateLimit rate = RateLimit.of(options.rateLimit());
        long total = in.size();
        if (target.size() < total) {
            throw new QcowException(target.filename(), "output file is smaller than input file"); // qemu-img's words
        }
        LongConsumer progress = options.progress() == null ? n -> { } : options.progress();
        ByteBuffer buf = IoBuffers.allocate(BUFFER);
        for (long pos = 0; pos < total; ) {
            Extent e = in.extentAt(pos, total - pos);
            boolean zero = e.zero() && !e.data();
            if (options.backing() != null && !(e.present() && e.depth() == 0)) {
                progress.accept(e.length()); // left to the backing file
            } else if (zero && options.minSparse() > 0) {
                if (!options.targetIsZero()) {
                    rate.account(e.length());
                    target.writeZeroes(e.start(), e.length(), true);
                }
                progress.accept(e.length());
            } else {
                int minSparse = offload.whole(e) ? 0 : options.minSparse();
                for (long at = e.start(); at < e.end(); at += BUFFER) {
                    int len = (int) Math.min(BUFFER, e.end() - at);
                    copyPiece(in, target, buf, at, len, zero, minSparse, options.targetIsZero(), rate);
                    progress.accept(len);
                }
            }
            pos = e.end();
        }
        if (options.durable()) {
            target.flush();
        }
    }

    private static void copyPiece(DiskImage in, WritableImage target, ByteBuffer buf, long at, int len, boolean zero,
                                  int minSparse, boolean targetIsZero, RateLimit rate) throws IOException {
        buf.clear().limit(len);
        if (zero) {
            Zeros.fill(buf);
        } else {
            in.read(buf, at);
        }
        if (minSparse == 0) {
            rate.account(len);
            target.write(buf.flip(), at);
            return;
        }
        int padded = (len + SparseRuns.SECTOR - 1) & -SparseRuns.SECTOR;
        Zeros.fill(buf.limit(padded).position(len));
        int min = minSparse / SparseRuns.SECTOR;
        SparseRuns.forEach(buf, padded / SparseRuns.SECTOR, at / SparseRuns.SECTOR, min, SparseRuns.alignment(min),
                (from, length, data) -> {
                    int n = Math.min(length, len - from);
                    if (data) {
                        rate.account(n);
                        target.write(buf.slice(from, n), at + from);
                    } else if (!targetIsZero) {
                        rate.account(n);
                        target.writeZeroes(at + from, n, true);
                    }
                });
    }
}
