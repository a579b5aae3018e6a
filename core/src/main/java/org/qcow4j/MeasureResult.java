package org.qcow4j;

/**
 * What {@link Images#measure} computed, as {@code qemu-img measure} prints it (QEMU's {@code BlockMeasureInfo}).
 *
 * @param required       bytes the new image needs for the source's data (or an empty image) and its metadata
 * @param fullyAllocated bytes it needs with every cluster allocated
 * @param bitmaps        bytes for the source's persistent bitmaps, or -1 when not reported (a raw target or
 *                       source, a version 2 target or source, or no source)
 */
public record MeasureResult(long required, long fullyAllocated, long bitmaps) {
    /** Whether the bitmaps' size is reported ("bitmaps size: N"). */
    public boolean hasBitmaps() {
        return bitmaps >= 0;
    }
}
