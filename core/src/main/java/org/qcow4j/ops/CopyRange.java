package org.qcow4j.ops;

import org.qcow4j.Extent;

/**
 * {@code qemu-img convert -C}, copy offloading ({@code convert_co_copy_range}): a range the inputs hold as data (not
 * zero) is handed to {@code blk_co_copy_range}, which copies it as it is, zeros included, where a plain copy would
 * leave its zero runs out ({@link SparseRuns}); zero ranges go as without it. The first range QEMU cannot offload
 * (a compressed cluster, which has no host offset to copy from) turns offloading off for the rest of the conversion,
 * as qemu-img's {@code s->copy_range = false} does. (QEMU turns it off in the middle of its 2 MiB request and has
 * copied the clusters before the compressed one whole; here that request is copied as without {@code -C}.)
 */
final class CopyRange {
    private boolean on;

    CopyRange(boolean on) {
        this.on = on;
    }

    /** Whether extent {@code e}, met in guest order, is copied whole. */
    synchronized boolean whole(Extent e) {
        if (!on || e.zero() || !e.data()) {
            return false;
        }
        if (!e.hasHostOffset()) {
            on = false;
            return false;
        }
        return true;
    }
}
