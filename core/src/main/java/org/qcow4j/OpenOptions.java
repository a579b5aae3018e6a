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
 * @param lazyRefcounts       QEMU's {@code lazy-refcounts} open option, for writable qcow2 opens: null follows the
 *                            image header's {@code lazy_refcounts} bit; true writes refcounts only at close, the dirty
 *                            bit set meanwhile (version 3 images only: a version 2 image is refused with it); false
 *                            writes them at every flush, whatever the header says. The header is not changed.
 * @param passphrase          unlocks an encrypted qcow2 image (LUKS or legacy AES; QEMU's {@code encrypt.key-secret});
 *                            null for none. Without it an encrypted image opens only without its backing chain
 *                            ({@link #withoutBacking}, as {@code qemu-img info} opens images): its metadata reads, its
 *                            encrypted data does not; any other open is refused as QEMU refuses it
 * @param backingPassphrase   unlocks the backing file if it is encrypted (QEMU's {@code backing.encrypt.key-secret});
 *                            null for none
 * @param noIo                QEMU's {@code BDRV_O_NO_IO}: the chain is opened for its metadata only (its size, its
 *                            header): encrypted images in it need no passphrase, and their encrypted data cannot be read;
 *                            external data files are not opened (as qemu-img info since QEMU's fix of CVE-2024-4467,
 *                            in Debian's 7.2), so their data cannot be read either
 * @param backingFormat       the top image's backing file format, over what its header says (QEMU's
 *                            {@code backing.driver} option): "qcow2", "raw", or null for the header's (or a probe)
 * @param dataFile            the top image's external data file, opened instead of the one its header names (QEMU's
 *                            {@code data-file.filename} option; an image whose header names none needs it), or null
 * @param inactiveL2Check     QEMU's {@code overlap-check.inactive-l2} (on in its {@code overlap-check=all}): before
 *                            every write of a qcow2 file, the snapshots' L1 tables are checked and read, and a write
 *                            over an L2 table of a snapshot is refused; off by default, as in QEMU, for what it costs
 */
public record OpenOptions(String format, long l2CacheBytes, long refcountCacheBytes, int maxChainDepth,
                          boolean forceShare, boolean qemuLayout, boolean openBacking, boolean writethrough,
                          boolean discard, DetectZeroes detectZeroes, boolean copyOnRead, Boolean lazyRefcounts,
                          Passphrase passphrase, Passphrase backingPassphrase, boolean noIo, String backingFormat,
                          String dataFile, boolean inactiveL2Check) {
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

    /** The options with lazy refcounts as the image header says. */
    public OpenOptions(String format, long l2CacheBytes, long refcountCacheBytes, int maxChainDepth, boolean forceShare,
                       boolean qemuLayout, boolean openBacking, boolean writethrough, boolean discard,
                       DetectZeroes detectZeroes, boolean copyOnRead) {
        this(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking, writethrough,
                discard, detectZeroes, copyOnRead, null, null, null, false, null, null, false);
    }

    /** Format probed, default caches and chain depth, backing chain opened, QEMU's locking, writeback caching, discards honoured. */
    public static OpenOptions defaults() {
        return new OpenOptions(null, DEFAULT_L2_CACHE_BYTES, DEFAULT_REFCOUNT_CACHE_BYTES, DEFAULT_MAX_CHAIN_DEPTH, false,
                false, true, false, true, DetectZeroes.OFF, false);
    }

    public OpenOptions withFormat(String f) {
        return new OpenOptions(f, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    public OpenOptions withL2CacheBytes(long bytes) {
        return new OpenOptions(format, bytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    public OpenOptions withRefcountCacheBytes(long bytes) {
        return new OpenOptions(format, l2CacheBytes, bytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    /** The image alone, its backing file named but not opened (see {@link #openBacking}). */
    public OpenOptions withoutBacking() {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, false,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    public OpenOptions withForceShare(boolean share) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, share, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    public OpenOptions withQemuLayout(boolean exact) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, exact, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    public OpenOptions withWritethrough(boolean on) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                on, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    public OpenOptions withDiscard(boolean unmap) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, unmap, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    public OpenOptions withCopyOnRead(boolean on) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, on, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    public OpenOptions withDetectZeroes(DetectZeroes mode) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, mode, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    public OpenOptions withLazyRefcounts(Boolean lazy) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazy, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    /** The options with {@code p} to unlock an encrypted image (null: none). */
    public OpenOptions withPassphrase(Passphrase p) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, p, backingPassphrase, noIo,
                backingFormat, dataFile, inactiveL2Check);
    }

    /** The options with {@code p} to unlock an encrypted backing file (null: none). */
    public OpenOptions withBackingPassphrase(Passphrase p) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, p, noIo, backingFormat,
                dataFile, inactiveL2Check);
    }

    /** The options with the backing file opened as {@code f} whatever the header says (null: as it says). */
    public OpenOptions withBackingFormat(String f) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                f, dataFile, inactiveL2Check);
    }

    /** The options of an open for the chain's metadata only (QEMU's BDRV_O_NO_IO): see {@link #noIo}. */
    public OpenOptions withNoIo() {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, true,
                backingFormat, dataFile, inactiveL2Check);
    }

    /** The options with {@code file} as the top image's external data file: see {@link #dataFile}. */
    public OpenOptions withDataFile(String file) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, file, inactiveL2Check);
    }

    /** The options with QEMU's inactive-L2 overlap check on or off: see {@link #inactiveL2Check}. */
    public OpenOptions withInactiveL2Check(boolean on) {
        return new OpenOptions(format, l2CacheBytes, refcountCacheBytes, maxChainDepth, forceShare, qemuLayout, openBacking,
                writethrough, discard, detectZeroes, copyOnRead, lazyRefcounts, passphrase, backingPassphrase, noIo,
                backingFormat, dataFile, on);
    }
}
