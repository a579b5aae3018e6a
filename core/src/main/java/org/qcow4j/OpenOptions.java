package org.qcow4j;

/**
 * How to open an image.
 *
 * @param format              "qcow2", "raw", or null to probe the file's magic like qemu-img
 * @param l2CacheBytes        memory for cached L2 tables per qcow2 image in the chain
 * @param refcountCacheBytes  memory for cached refcount blocks of an image opened for writing
 * @param maxChainDepth       how many backing files deep a chain may go before it is refused
 */
public record OpenOptions(String format, long l2CacheBytes, long refcountCacheBytes, int maxChainDepth) {
    public static final long DEFAULT_L2_CACHE_BYTES = 4L * 1024 * 1024;
    public static final long DEFAULT_REFCOUNT_CACHE_BYTES = 1024L * 1024;
    public static final int DEFAULT_MAX_CHAIN_DEPTH = 64;

    public static OpenOptions defaults() {
        return new OpenOptions(null, DEFAULT_L2_CACHE_BYTES, DEFAULT_REFCOUNT_CACHE_BYTES, DEFAULT_MAX_CHAIN_DEPTH);
    }

    public OpenOptions withFormat(String f) {
        return new OpenOptions(f, l2CacheBytes, refcountCacheBytes, maxChainDepth);
    }

    public OpenOptions withL2CacheBytes(long bytes) {
        return new OpenOptions(format, bytes, refcountCacheBytes, maxChainDepth);
    }

    public OpenOptions withRefcountCacheBytes(long bytes) {
        return new OpenOptions(format, l2CacheBytes, bytes, maxChainDepth);
    }
}
