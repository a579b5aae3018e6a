package org.qcow4j.cli;

import java.math.BigInteger;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.qcow4j.OpenOptions;

/**
 * qcow2's open options as QEMU 7.2 takes them (block/qcow2.c's {@code qcow2_runtime_opts}): the cache sizes,
 * {@code lazy-refcounts}, {@code overlap-check} with its template and flags, {@code pass-discard-*} and
 * {@code cache-clean-interval}. Each value is parsed with the other block options ({@link ImageSpec}); the rules
 * between them and against the image are checked once the image's header is known, in the order and words of
 * QEMU's {@code read_cache_sizes} and {@code qcow2_update_options_prepare} ({@link #check}); a reopen joins new and
 * old options as {@code qcow2_join_options} does ({@link #join}). Of all these, qcow4j uses the L2 and refcount
 * cache sizes (as its own cache budgets), {@code lazy-refcounts} and the check of inactive L2 tables; the other
 * overlap checks are QEMU's guard against its own bugs, and qcow4j's own guard against damaged entries is always on.
 */
final class Qcow2RuntimeOptions {
    /** QEMU's DEFAULT_L2_CACHE_MAX_SIZE on Linux. */
    private static final long DEFAULT_L2_CACHE_MAX_SIZE = 32L << 20;
    private static final int MIN_L2_CACHE_SIZE = 2;
    private static final int MIN_REFCOUNT_CACHE_SIZE = 4;
    private static final long INT_MAX = Integer.MAX_VALUE;
    private static final long UINT_MAX = 0xffff_ffffL;
    private static final List<String> OVERLAP_MODES = List.of("none", "constant", "cached", "all");
    /** The overlap-check flags, which a new template (overlap-check or overlap-check.template) overrides. */
    private static final List<String> OVERLAP_FLAGS = List.of("main-header", "active-l1", "active-l2",
            "refcount-table", "refcount-block", "snapshot-table", "inactive-l1", "inactive-l2", "bitmap-directory");

    private Long cacheSize;
    private Long l2CacheSize;
    private Long refcountCacheSize;
    private Long l2CacheEntrySize;
    private BigInteger cacheCleanInterval;
    private Boolean lazyRefcounts;
    private String overlapCheck;
    private String overlapTemplate;
    private Boolean inactiveL2;

    /** Whether {@code k} names one of qcow2's open options. */
    static boolean isOption(String k) {
        return List.of("cache-size", "l2-cache-size", "refcount-cache-size", "l2-cache-entry-size",
                "cache-clean-interval", "lazy-refcounts", "overlap-check", "overlap-check.template",
                "pass-discard-request", "pass-discard-snapshot", "pass-discard-other").contains(k)
                || k.startsWith("overlap-check.") && OVERLAP_FLAGS.contains(k.substring("overlap-check.".length()));
    }

    /** Takes {@code k} if it is one of qcow2's options (its value parsed as QEMU parses it); false if not. */
    boolean take(String k, String v) throws ImageSpec.Refused {
        switch (k) {
            case "cache-size" -> cacheSize = ImageSpec.size(k, v);
            case "l2-cache-size" -> l2CacheSize = ImageSpec.size(k, v);
            case "refcount-cache-size" -> refcountCacheSize = ImageSpec.size(k, v);
            case "l2-cache-entry-size" -> l2CacheEntrySize = ImageSpec.size(k, v);
            case "cache-clean-interval" -> cacheCleanInterval = ImageSpec.number(k, v);
            case "lazy-refcounts" -> lazyRefcounts = ImageSpec.bool(k, v);
            case "overlap-check" -> overlapCheck = v;
            case "overlap-check.template" -> overlapTemplate = v;
            case "pass-discard-request", "pass-discard-snapshot", "pass-discard-other" -> ImageSpec.bool(k, v);
            case "overlap-check.inactive-l2" -> inactiveL2 = ImageSpec.bool(k, v);
            default -> {
                if (!isOption(k)) {
                    return false;
                }
                ImageSpec.bool(k, v); // an overlap-check flag
            }
        }
        return true;
    }

    /**
     * QEMU's checks of these options against the image ({@code read_cache_sizes}, then qcow2_update_options_prepare's),
     * in its order and words: the cache sizes against each other and the image's cluster and virtual size, the
     * cache-clean interval, lazy refcounts against the version, the overlap-check template.
     */
    void check(int clusterSize, long virtualSize, int l2EntryBytes, int version) throws ImageSpec.Refused {
        long maxL2Entries = Long.divideUnsigned(virtualSize + clusterSize - 1, clusterSize);
        long maxL2Cache = roundUp(maxL2Entries * l2EntryBytes, clusterSize);
        long l2Setting = l2CacheSize != null ? l2CacheSize : DEFAULT_L2_CACHE_MAX_SIZE;
        long refcount = refcountCacheSize != null ? refcountCacheSize : 0;
        long entrySize = l2CacheEntrySize != null ? l2CacheEntrySize : clusterSize;
        long l2 = Math.min(maxL2Cache, l2Setting);
        long minRefcountCache = (long) MIN_REFCOUNT_CACHE_SIZE * clusterSize;
        if (cacheSize != null) {
            long combined = cacheSize;
            if (l2CacheSize != null && refcountCacheSize != null) {
                throw new ImageSpec.Refused("cache-size, l2-cache-size and refcount-cache-size may not be set at the same time");
            } else if (l2CacheSize != null && Long.compareUnsigned(l2Setting, combined) > 0) {
                throw new ImageSpec.Refused("l2-cache-size may not exceed cache-size");
            } else if (Long.compareUnsigned(refcount, combined) > 0) {
                throw new ImageSpec.Refused("refcount-cache-size may not exceed cache-size");
            }
            if (l2CacheSize != null) {
                refcount = combined - l2;
            } else if (refcountCacheSize != null) {
                l2 = combined - refcount;
            } else if (Long.compareUnsigned(combined, maxL2Cache + minRefcountCache) >= 0) {
                l2 = maxL2Cache;
                refcount = combined - l2;
            } else {
                refcount = Math.min(combined, minRefcountCache);
                l2 = combined - refcount;
            }
        }
        if (Long.compareUnsigned(l2, maxL2Cache) < 0 && l2CacheEntrySize == null) {
            entrySize = Math.min(clusterSize, 4096); // QEMU's smaller slices when the cache cannot cover the disk
        }
        if (entrySize < 512 || entrySize > clusterSize || Long.bitCount(entrySize) != 1) {
            throw new ImageSpec.Refused("L2 cache entry size must be a power of two between 512 and the cluster size ("
                    + clusterSize + ")");
        }
        if (Long.compareUnsigned(Long.divideUnsigned(l2, entrySize), INT_MAX) > 0) {
            throw new ImageSpec.Refused("L2 cache size too big");
        }
        if (Long.compareUnsigned(Long.divideUnsigned(refcount, clusterSize), INT_MAX) > 0) {
            throw new ImageSpec.Refused("Refcount cache size too big");
        }
        if (cacheCleanInterval != null && cacheCleanInterval.compareTo(BigInteger.valueOf(UINT_MAX)) > 0) {
            throw new ImageSpec.Refused("Cache clean interval too big");
        }
        if (Boolean.TRUE.equals(lazyRefcounts) && version < 3) {
            throw new ImageSpec.Refused("Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level");
        }
        if (overlapCheck != null && overlapTemplate != null && !overlapCheck.equals(overlapTemplate)) {
            throw new ImageSpec.Refused("Conflicting values for qcow2 options 'overlap-check' ('" + overlapCheck
                    + "') and 'overlap-check.template' ('" + overlapTemplate + "')");
        }
        String mode = overlapCheck != null ? overlapCheck : overlapTemplate != null ? overlapTemplate : "cached";
        if (!OVERLAP_MODES.contains(mode)) {
            throw new ImageSpec.Refused("Unsupported value '" + mode + "' for qcow2 option 'overlap-check'. Allowed are "
                    + "any of the following: none, constant, cached, all");
        }
    }

    private static long roundUp(long n, long to) {
        return (n + to - 1) / to * to;
    }

    /** {@code base} with the caches and lazy refcounts these options ask for (qcow4j's budgets at least QEMU's). */
    OpenOptions apply(OpenOptions base) {
        OpenOptions o = base;
        Long l2 = l2CacheSize != null ? l2CacheSize : cacheSize;
        if (l2 != null && l2 > 0) {
            o = o.withL2CacheBytes(l2);
        }
        if (refcountCacheSize != null && refcountCacheSize > 0) {
            o = o.withRefcountCacheBytes(refcountCacheSize);
        }
        // Of the overlap checks only the inactive L2 tables' are asked for: qcow4j keeps the others' guard always
        // (RefcountTable's metadata), and this one, off in QEMU's default ("cached"), reads every snapshot's L1
        // table on every write. The flag overrides the template, as in QEMU.
        String mode = overlapCheck != null ? overlapCheck : overlapTemplate != null ? overlapTemplate : "cached";
        o = o.withInactiveL2Check(inactiveL2 != null ? inactiveL2 : mode.equals("all"));
        return lazyRefcounts != null ? o.withLazyRefcounts(lazyRefcounts) : o;
    }

    /**
     * A reopen's options: the new ones over the old, as QEMU's {@code qcow2_join_options} joins them: a new overlap
     * template drops every old overlap option, a new total cache size the old L2 and refcount cache sizes, and an old
     * total cache size goes whenever any cache size is left (QEMU's condition, an "or" where the comment says "all").
     */
    static Map<String, String> join(Map<String, String> changed, Map<String, String> old) {
        Map<String, String> kept = new LinkedHashMap<>(old);
        if (changed.containsKey("overlap-check") || changed.containsKey("overlap-check.template")) {
            kept.remove("overlap-check");
            kept.remove("overlap-check.template");
            for (String flag : OVERLAP_FLAGS) {
                if (!flag.equals("bitmap-directory")) { // QEMU 7.2 leaves this one out of its list
                    kept.remove("overlap-check." + flag);
                }
            }
        }
        boolean newTotal = changed.containsKey("cache-size");
        if (newTotal) {
            kept.remove("l2-cache-size");
            kept.remove("refcount-cache-size");
        }
        Map<String, String> joined = new LinkedHashMap<>(kept);
        joined.putAll(changed);
        boolean anyCacheSize = joined.containsKey("cache-size") || joined.containsKey("l2-cache-size")
                || joined.containsKey("refcount-cache-size");
        if (anyCacheSize && !newTotal) {
            joined.remove("cache-size");
        }
        return joined;
    }
}
