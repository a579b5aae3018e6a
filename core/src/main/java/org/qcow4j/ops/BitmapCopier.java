package org.qcow4j.ops;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.qcow4j.BitmapException;
import org.qcow4j.DirtyBitmaps;
import org.qcow4j.DiskImage;
import org.qcow4j.WritableImage;
import org.qcow4j.format.Bitmap;

/**
 * {@code qemu-img convert --bitmaps}: the persistent bitmaps of the source copied into the target, as qemu-img 7.2's
 * {@code convert_check_bitmaps} (before anything is written) and {@code convert_copy_bitmaps} (after the data) do:
 * each bitmap added with its granularity and enabled state, then merged from the source.
 */
public final class BitmapCopier {
    private BitmapCopier() {
    }

    /**
     * Refuses a source whose bitmaps cannot be copied, in qemu-img's words: one that cannot have bitmaps (raw, qcow2
     * version 2), or one with an inconsistent bitmap unless {@code skipBroken}.
     */
    public static void check(DiskImage source, boolean skipBroken) throws IOException {
        DirtyBitmaps bitmaps = supported(source).orElseThrow(() -> new BitmapException(source.filename(),
                "Source lacks bitmap support"));
        for (Bitmap b : newestFirst(bitmaps)) {
            if (!skipBroken && (b.flags() & Bitmap.FLAG_IN_USE) != 0) {
                throw new BitmapException(source.filename(), "Cannot copy inconsistent bitmap '" + b.name() + "'",
                        "Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it");
            }
        }
    }

    /**
     * Copies the bitmaps (newest first, as QEMU walks them; they are stored in the source's order), skipping
     * inconsistent ones with a warning when {@code skipBroken}. A target that cannot hold bitmaps is refused as
     * qemu-img refuses it ("Format driver 'raw' does not support bitmaps"); a failure names the bitmap ("Failed to
     * create bitmap NAME: ...", "Failed to populate bitmap NAME: ..."), what was copied before it stays.
     */
    public static void copy(DiskImage source, WritableImage target, boolean skipBroken, Consumer<String> warnings)
            throws IOException {
        DirtyBitmaps to = supported(target).orElseThrow(() -> new BitmapException(target.filename(),
                "Format driver '" + target.format() + "' does not support bitmaps"));
        DirtyBitmaps from = supported(source).orElseThrow(() -> new BitmapException(source.filename(),
                "Source lacks bitmap support"));
        for (Bitmap b : newestFirst(from)) {
            if (skipBroken && (b.flags() & Bitmap.FLAG_IN_USE) != 0) {
                warnings.accept("Skipping inconsistent bitmap '" + b.name() + "'");
                continue;
            }
            try {
                to.add(b.name(), 1L << b.granularityBits(), (b.flags() & Bitmap.FLAG_AUTO) == 0);
            } catch (BitmapException e) {
                throw new BitmapException(target.filename(), "Failed to create bitmap " + b.name() + ": " + e.qemuWords(),
                        e.hint());
            }
            try {
                to.merge(b.name(), from, b.name());
            } catch (BitmapException e) {
                to.remove(b.name());
                throw new BitmapException(target.filename(), "Failed to populate bitmap " + b.name() + ": " + e.qemuWords(),
                        e.hint());
            }
        }
    }

    /** QEMU's {@code FOR_EACH_DIRTY_BITMAP} order: each bitmap loaded or added goes first. */
    private static List<Bitmap> newestFirst(DirtyBitmaps bitmaps) throws IOException {
        List<Bitmap> list = new ArrayList<>(bitmaps.list());
        java.util.Collections.reverse(list);
        return list;
    }

    /** QEMU's {@code bdrv_supports_persistent_dirty_bitmap}: qcow2 version 3. */
    private static java.util.Optional<DirtyBitmaps> supported(DiskImage image) {
        boolean v3 = image.qcow2().map(q -> q.header().version() >= 3).orElse(false);
        return v3 ? image.dirtyBitmaps() : java.util.Optional.empty();
    }
}
