package org.qcow4j;

/**
 * How to open an image.
 *
 * @param format              "qcow2", "raw", or null to probe the file's magic like qemu-img
 * @param l2CacheBytes        memory for cached L2 tables per qcow2 image in the chain
 * @param refcountCacheBytes  memory for cached refcount blocks of an image opened for writing
 * @param maxChainDepth       how many backing files deep a chain may go before it is refused
 * @param forceShare          read the image whatever other processes do with it ({@code -U}, QEMU's
 *                            {@code force-share=on}): no lock refuses it, and it stops no writer; read-only opens only
 * @param qemuLayout          writes leave the file exactly as QEMU 7.2 leaves it, also where that costs more: a zero
 *                            write or discard over a range with no L2 table allocates one (and sets zero flags) as
 *                            QEMU does, and growing does not zero what QEMU leaves showing (the rest of a partial last
 *                            cluster a shrink left behind), nor does it grow a version 2 image over a longer backing
 *                            file (refused after the L1 table grew, as QEMU does). Off by default: such ranges are
 *                            left alone (they read as zeros already) and growing always exposes zeros. Everything else
 *                            is laid out as QEMU lays it out either way. {@code qcow4j io} turns it on.
 * @param openBacking         open the backing chain; without it (QEMU's {@code BDRV_O_NO_BACKING}, as qemu-img info
 *                            opens images) the image still names its backing file but reads as if it had none, and a
 *                            missing or looping backing file does not stop it opening; read-only opens only
 */
public record OpenOptions(String format, long l2CacheBytes, long refcountCacheBytes, int maxChainDepth,
                          boolean forceShare, boolean qemuLayout, boolean openBacking) {
    /** The default size of the L2 table cache. */
    public static final long DEFAULT_L2_CACHE_BYTES = 4L * 1024 * 1024;
    /** The default size of the refcount block cache. */
    public static final long DEFAULT_REFCOUNT_CACHE_BYTES = 1024L * 1024;
    /** The default limit on backing chain depth. */
    public static final int DEFAULT_MAX_CHAIN_DEPTH = 64;

    /** Format probed, default caches and chain depth, QEMU's locking. */
    public static OpenOptions defaults() {
        return new OpenOptions(null, DEFAULT_L2_CACHE_BYTES, DEFAULT_REFCOUNT_CACHE_BYTES, DEFAULT_MAX_CHAIN_DEPTH, false, false, true);
    }

    public OpenOptions withFormat(String f) {
        return new OpenOptions(f, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking);
    }

    public OpenOptions withL2CacheBytes(long bytes) {
        return new OpenOptions(format, bytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking);
    }

    public OpenOptions withRefcountCacheBytes(long bytes) {
        return new OpenOptions(format, l2CacheBytes, bytes, maxChainDepth, forceShare, qemuLayout, openBacking);
    }

    /** The image alone, its backing file named but not opened (see {@link #openBacking}). */
    public OpenOptions withoutBacking() {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, false);
    }

    public OpenOptions withForceShare(boolean share) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, share, qemuLayout, openBacking);
    }

    public OpenOptions withQemuLayout(boolean exact) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, exact, openBacking);
    }
}
