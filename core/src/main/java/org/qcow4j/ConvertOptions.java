package org.qcow4j;

import java.util.function.Consumer;
import java.util.function.LongConsumer;

/**
 * How {@link Images#convert} writes its output, as {@code qemu-img convert}'s options say it.
 *
 * @param qcow2      the new qcow2 image's options ({@code -O qcow2 -o ...}; its size is replaced by the inputs' total),
 *                   or null for a raw output ({@code -O raw})
 * @param threads    workers reading, decompressing and compressing ({@code -m}), at least 1
 * @param compress   store clusters compressed where that makes them smaller ({@code -c}); qcow2 only
 * @param backing    with a qcow2 output that has a backing file: that file opened, so only clusters whose content
 *                   differs from it are written ({@code -B}); else null
 * @param progress   told how many guest bytes were finished, as they finish ({@code -p}); may be null
 * @param durable    force the output to the disk before it appears under its name (every cache mode but
 *                   {@code unsafe})
 * @param minSparse  {@code -S}: zero runs of at least this many bytes (a multiple of 512) are left out of the
 *                   output, smaller ones inside data are written ({@link org.qcow4j.ops.SparseRuns}); 0 writes
 *                   everything, zeros included, so the output is fully allocated. Default 4096, as qemu-img's
 * @param targetIsZero {@code --target-is-zero}: {@link Images#convertInto(List, WritableImage, ConvertOptions)} may
 *                   leave the target's zero ranges alone because it reads as zeros already
 * @param copyRange  {@code -C}, qemu-img's copy offloading: what the inputs hold as data (not zero) is copied as it
 *                   is, zeros included, without {@code minSparse}'s detection (which must then be the default); not
 *                   with {@code compress}
 * @param rateLimit  {@code -r}: the writes to the output held to this many bytes per second, as QEMU's throttling of
 *                   the target (its leaky bucket: a request waits while more than a tenth of a second's worth is
 *                   pending); 0: no limit
 * @param salvage    {@code --salvage}: told of every 512-byte sector whose block status or data could not be read,
 *                   which is then copied as zeros, in qemu-img's words after its program name ("warning: error while
 *                   reading offset 512: Input/output error"), and of the corruption QEMU's qcow2 driver signals first
 *                   in an input, in the line it prints alone ("qcow2: Image is corrupt: ..."); null: such an error
 *                   fails the conversion
 */
public record ConvertOptions(CreateOptions qcow2, int threads, boolean compress, DiskImage backing,
                             LongConsumer progress, boolean durable, int minSparse, boolean targetIsZero,
                             boolean copyRange, long rateLimit, Consumer<String> salvage) {
    /** qemu-img's default {@code -S}. */
    public static final int DEFAULT_MIN_SPARSE = 4096;
    /** The largest {@code -S} qemu-img takes (its largest buffer, 32768 sectors). */
    public static final int MAX_MIN_SPARSE = 16 << 20;

    public ConvertOptions {
        if (minSparse < 0 || minSparse % 512 != 0 || minSparse > MAX_MIN_SPARSE) {
            throw new IllegalArgumentException("minSparse must be a multiple of 512 up to " + MAX_MIN_SPARSE + ": "
                    + minSparse);
        }
        if (copyRange && compress) {
            throw new IllegalArgumentException("Cannot enable copy offloading when -c is used"); // qemu-img's words
        }
        if (copyRange && salvage != null) {
            throw new IllegalArgumentException("Cannot use copy offloading in salvaging mode");
        }
        if (rateLimit < 0) {
            throw new IllegalArgumentException("rateLimit must not be negative: " + rateLimit);
        }
    }

    /** A raw output, on as many threads as there are cores, forced to disk. */
    public static ConvertOptions raw() {
        return new ConvertOptions(null, Runtime.getRuntime().availableProcessors(), false, null, null, true,
                DEFAULT_MIN_SPARSE, false, false, 0, null);
    }

    /** A qcow2 output with {@code options}, on as many threads as there are cores, forced to disk. */
    public static ConvertOptions qcow2(CreateOptions options) {
        return new ConvertOptions(options, Runtime.getRuntime().availableProcessors(), false, null, null, true,
                DEFAULT_MIN_SPARSE, false, false, 0, null);
    }

    public ConvertOptions withQcow2(CreateOptions o) {
        return new ConvertOptions(o, threads, compress, backing, progress, durable, minSparse, targetIsZero, copyRange, rateLimit, salvage);
    }

    public ConvertOptions withThreads(int n) {
        return new ConvertOptions(qcow2, n, compress, backing, progress, durable, minSparse, targetIsZero, copyRange, rateLimit, salvage);
    }

    public ConvertOptions withCompression(boolean c) {
        return new ConvertOptions(qcow2, threads, c, backing, progress, durable, minSparse, targetIsZero, copyRange, rateLimit, salvage);
    }

    public ConvertOptions withBacking(DiskImage b) {
        return new ConvertOptions(qcow2, threads, compress, b, progress, durable, minSparse, targetIsZero, copyRange, rateLimit, salvage);
    }

    public ConvertOptions withProgress(LongConsumer p) {
        return new ConvertOptions(qcow2, threads, compress, backing, p, durable, minSparse, targetIsZero, copyRange, rateLimit, salvage);
    }

    public ConvertOptions withDurable(boolean d) {
        return new ConvertOptions(qcow2, threads, compress, backing, progress, d, minSparse, targetIsZero, copyRange, rateLimit, salvage);
    }

    public ConvertOptions withMinSparse(int bytes) {
        return new ConvertOptions(qcow2, threads, compress, backing, progress, durable, bytes, targetIsZero, copyRange, rateLimit, salvage);
    }

    public ConvertOptions withTargetIsZero(boolean z) {
        return new ConvertOptions(qcow2, threads, compress, backing, progress, durable, minSparse, z, copyRange, rateLimit, salvage);
    }

    public ConvertOptions withCopyRange(boolean c) {
        return new ConvertOptions(qcow2, threads, compress, backing, progress, durable, minSparse, targetIsZero, c,
                rateLimit, salvage);
    }

    public ConvertOptions withRateLimit(long bytesPerSecond) {
        return new ConvertOptions(qcow2, threads, compress, backing, progress, durable, minSparse, targetIsZero,
                copyRange, bytesPerSecond, salvage);
    }

    public ConvertOptions withSalvage(Consumer<String> warnings) {
        return new ConvertOptions(qcow2, threads, compress, backing, progress, durable, minSparse, targetIsZero,
                copyRange, rateLimit, warnings);
    }
}
