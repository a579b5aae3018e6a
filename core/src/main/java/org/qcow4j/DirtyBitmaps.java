package org.qcow4j;

import java.io.IOException;
import java.util.List;
import org.qcow4j.format.Bitmap;

/**
 * The persistent dirty bitmaps of an open qcow2 image (version 3), as QEMU 7.2 keeps them: get them from
 * {@link DiskImage#dirtyBitmaps()}. Opened for writing, the image has loaded every bitmap and marked each in use on
 * disk before anything else was written (so a crash leaves them flagged inconsistent, as QEMU leaves them); enabled
 * bitmaps record every granule a write, zero write or discard touches, and closing the image stores them in QEMU's
 * order (new data clusters, then the directory, then the header; the old clusters freed after) with the in-use flag
 * cleared; {@link WritableImage#flush()} does not store them, as in QEMU (so the file stays byte for byte QEMU's). A bitmap found in use when the image was opened is inconsistent: it is kept as it is on disk, and only
 * {@link #remove} applies to it. Changes are made in memory and stored at close, except {@link #remove}, which
 * rewrites the directory at once, as QEMU does. Opened read-only, the bitmaps can be listed and merged from only.
 * Thread-safe.
 */
public interface DirtyBitmaps {
    /**
     * The bitmaps, in directory order (new ones last), with the flags they will be stored with: {@link
     * Bitmap#FLAG_AUTO} for an enabled bitmap, {@link Bitmap#FLAG_IN_USE} for an inconsistent one.
     */
    List<Bitmap> list() throws IOException;

    /**
     * QEMU's {@code block-dirty-bitmap-add} with persistent=on: a new empty bitmap recording writes (unless
     * {@code disabled}).
     *
     * @param granularity bytes per bit, a power of 2 from 512 to 2 GiB; 0 for QEMU's default (the cluster size
     *                    between 4 KiB and 64 KiB)
     * @throws BitmapException (nothing added) for an empty or existing name, a bad granularity, a version 2 image, a
     *         bitmap too large for QEMU or for memory
     */
    void add(String name, long granularity, boolean disabled) throws IOException;

    /** QEMU's {@code block-dirty-bitmap-remove}: the directory without it is written at once, then its clusters freed. */
    void remove(String name) throws IOException;

    /** QEMU's {@code block-dirty-bitmap-clear}: every bit cleared. */
    void clear(String name) throws IOException;

    /** QEMU's {@code block-dirty-bitmap-enable}: it records writes from now on. */
    void enable(String name) throws IOException;

    /** QEMU's {@code block-dirty-bitmap-disable}: it stops recording writes. */
    void disable(String name) throws IOException;

    /**
     * QEMU's {@code block-dirty-bitmap-merge}: every bit set in {@code source}'s bitmap {@code sourceName} is set in
     * bitmap {@code target} of this image. {@code source} may be this image's bitmaps or another image's (read-only
     * is enough); both disks must have the same size.
     */
    void merge(String target, DirtyBitmaps source, String sourceName) throws IOException;

    /**
     * The dirty runs of bitmap {@code name} as {offset, length} pairs in guest bytes (whole granules, the last one
     * clipped to the disk), what {@code qemu-nbd -B NAME} serves as {@code qemu:dirty-bitmap:NAME}.
     */
    List<long[]> dirtyRanges(String name) throws IOException;

    /** {@link #dirtyRanges(String)} within {@code [offset, offset + length)}, the runs clipped to it. */
    default List<long[]> dirtyRanges(String name, long offset, long length) throws IOException {
        List<long[]> out = new java.util.ArrayList<>();
        for (long[] r : dirtyRanges(name)) {
            long from = Math.max(offset, r[0]);
            long to = Math.min(offset + length, r[0] + r[1]);
            if (from < to) {
                out.add(new long[] {from, to - from});
            }
        }
        return out;
    }
}
