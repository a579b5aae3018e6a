package org.qcow4j;

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
 */
public record ConvertOptions(CreateOptions qcow2, int threads, boolean compress, DiskImage backing,
                             LongConsumer progress, boolean durable) {

    /** A raw output, on as many threads as there are cores, forced to disk. */
    public static ConvertOptions raw() {
        return new ConvertOptions(null, Runtime.getRuntime().availableProcessors(), false, null, null, true);
    }

    /** A qcow2 output with {@code options}, on as many threads as there are cores, forced to disk. */
    public static ConvertOptions qcow2(CreateOptions options) {
        return new ConvertOptions(options, Runtime.getRuntime().availableProcessors(), false, null, null, true);
    }

    public ConvertOptions withQcow2(CreateOptions o) {
        return new ConvertOptions(o, threads, compress, backing, progress, durable);
    }

    public ConvertOptions withThreads(int n) {
        return new ConvertOptions(qcow2, n, compress, backing, progress, durable);
    }

    public ConvertOptions withCompression(boolean c) {
        return new ConvertOptions(qcow2, threads, c, backing, progress, durable);
    }

    public ConvertOptions withBacking(DiskImage b) {
        return new ConvertOptions(qcow2, threads, compress, b, progress, durable);
    }

    public ConvertOptions withProgress(LongConsumer p) {
        return new ConvertOptions(qcow2, threads, compress, backing, p, durable);
    }

    public ConvertOptions withDurable(boolean d) {
        return new ConvertOptions(qcow2, threads, compress, backing, progress, d);
    }
}
