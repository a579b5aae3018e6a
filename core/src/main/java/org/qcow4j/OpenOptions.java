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
 */
public record OpenOptions(String format, long l2CacheBytes, long refcountCacheBytes, int maxChainDepth,
                          boolean forceShare) {
    /** The default size of the L2 table cache. */
    public static final long DEFAULT_L2_CACHE_BYTES = 4L * 1024 * 1024;
    /** The default size of the refcount block cache. */
    public static final long DEFAULT_REFCOUNT_CACHE_BYTES = 1024L * 1024;
    /** The default limit on backing chain depth. */
    public static final int DEFAULT_MAX_CHAIN_DEPTH = 64;

    /** Format probed, default caches and chain depth, QEMU's locking. */
    public static OpenOptions defaults() {
        return new OpenOptions(null, DEFAULT_L2_CACHE_BYTES, DEFAULT_REFCOUNT_CACHE_BYTES, DEFAULT_MAX_CHAIN_DEPTH, false);
    }

    public OpenOptions withFormat(String f) {
        return new OpenOptions(f, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare);
    }

    public OpenOptions withL2CacheBytes(long bytes) {
        return new OpenOptions(format, bytes, refcountCacheBytes, maxChainDepth, forceShare);
    }

    public OpenOptions withRefcountCacheBytes(long bytes) {
        return new OpenOptions(format, l2CacheBytes, bytes, maxChainDepth, forceShare);
    }

    public OpenOptions withForceShare(boolean share) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, share);
    }
}
