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
 * @param writethrough        every write (data, zeroes, compressed) is made durable before it returns, as QEMU's
 *                            {@code cache=writethrough} (and {@code directsync}) does with a flush after each write;
 *                            otherwise writes become durable at {@link WritableImage#flush} ({@code cache=writeback})
 * @param discard             QEMU's {@code discard=unmap} (true, the default here) or {@code discard=ignore}: with
 *                            ignore, {@link WritableImage#discard} does nothing and zero writes never give host space
 *                            back
 * @param detectZeroes        QEMU's {@code detect-zeroes}: writes of all-zero data become zero writes
 * @param copyOnRead          QEMU's {@code copy-on-read}: a read first copies the clusters it touches that the image
 *                            itself does not allocate (data from the backing chain, or zeros) into the image, as
 *                            QEMU's copy-on-read does (writable opens only)
 */
public record OpenOptions(String format, long l2CacheBytes, long refcountCacheBytes, int maxChainDepth,
                          boolean forceShare, boolean writethrough, boolean discard, DetectZeroes detectZeroes,
                          boolean copyOnRead) {
    /** The default size of the L2 table cache. */
    public static final long DEFAULT_L2_CACHE_BYTES = 4L * 1024 * 1024;
    /** The default size of the refcount block cache. */
    public static final long DEFAULT_REFCOUNT_CACHE_BYTES = 1024L * 1024;
    /** The default limit on backing chain depth. */
    public static final int DEFAULT_MAX_CHAIN_DEPTH = 64;

    /** QEMU's {@code detect-zeroes} modes. */
    public enum DetectZeroes {
        /** Data is written as given. */
        OFF,
        /** All-zero data is written as a zero write (host space kept). */
        ON,
        /** All-zero data is written as a zero write that may give host space back (if {@code discard} allows). */
        UNMAP
    }

    public OpenOptions {
        if (detectZeroes == null) {
            throw new IllegalArgumentException("detectZeroes must not be null");
        }
    }

    /** Format probed, default caches and chain depth, QEMU's locking, writeback caching, discards honoured. */
    public static OpenOptions defaults() {
        return new OpenOptions(null, DEFAULT_L2_CACHE_BYTES, DEFAULT_REFCOUNT_CACHE_BYTES, DEFAULT_MAX_CHAIN_DEPTH, false,
                false, true, DetectZeroes.OFF, false);
    }

    public OpenOptions withFormat(String f) {
        return new OpenOptions(f, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, writethrough, discard,
                detectZeroes, copyOnRead);
    }

    public OpenOptions withL2CacheBytes(long bytes) {
        return new OpenOptions(format, bytes, refcountCacheBytes, maxChainDepth, forceShare, writethrough, discard,
                detectZeroes, copyOnRead);
    }

    public OpenOptions withRefcountCacheBytes(long bytes) {
        return new OpenOptions(format, l2CacheBytes, bytes, maxChainDepth, forceShare, writethrough, discard, detectZeroes,
                copyOnRead);
    }

    public OpenOptions withForceShare(boolean share) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, share, writethrough, discard,
                detectZeroes, copyOnRead);
    }

    public OpenOptions withWritethrough(boolean on) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, on, discard,
                detectZeroes, copyOnRead);
    }

    public OpenOptions withDiscard(boolean unmap) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, writethrough, unmap,
                detectZeroes, copyOnRead);
    }

    public OpenOptions withCopyOnRead(boolean on) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, writethrough, discard,
                detectZeroes, on);
    }

    public OpenOptions withDetectZeroes(DetectZeroes mode) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, writethrough, discard,
                mode, copyOnRead);
    }
}
