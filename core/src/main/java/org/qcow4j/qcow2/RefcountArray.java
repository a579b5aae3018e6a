package org.qcow4j.qcow2;

import java.util.Arrays;
import org.qcow4j.QcowException;

/**
 * The refcounts {@link Qcow2Check} computes from the metadata: one counter per host cluster, packed at the image's
 * own refcount width (1 to 64 bits) like QEMU's in-memory refcount table. Using the image's width keeps the array
 * as small as QEMU's (a 1 TiB file of 64 KiB clusters with 16-bit refcounts needs 32 MiB) and makes a counter
 * saturate exactly where the image's own refcounts would overflow, which QEMU reports as a corruption.
 *
 * <p>A refcount structure rebuild allocates clusters in this array ({@link #set}) and grows it past the end of the
 * file ({@link #ensureCapacity}), as QEMU's {@code alloc_clusters_imrt} does with its array.
 */
public final class RefcountArray {
    /** The longest array the JVM allocates (a few words below Integer.MAX_VALUE). */
    private static final long MAX_ARRAY_LENGTH = Integer.MAX_VALUE - 8;

    private final int order;
    private long[] words;
    private long capacity;
    /** The largest count a counter holds; -1 means 2^64-1 (unsigned) for 64-bit refcounts. */
    private final long max;

    private RefcountArray(int order, long capacity, long[] words) {
        this.order = order;
        this.capacity = capacity;
        this.words = words;
        this.max = order == 6 ? -1L : (1L << (1 << order)) - 1;
    }

    /**
     * An array of {@code capacity} zero counters of {@code 1 << order} bits. Refuses, with an error naming
     * {@code file}, an array the Java heap cannot hold, rather than dying of an OutOfMemoryError later on.
     */
    static RefcountArray allocate(long capacity, int order, String file) throws QcowException {
        return new RefcountArray(order, capacity, words(capacity, order, file));
    }

    private static long[] words(long capacity, int order, String file) throws QcowException {
        long wordCount = ((capacity << order) + 63) >>> 6; // capacity <= 2^31 and order <= 6: no overflow
        if (wordCount <= MAX_ARRAY_LENGTH) {
            try {
                return new long[(int) wordCount];
            } catch (OutOfMemoryError e) {
                // One big array: the JVM collected all it could before failing, so this is the heap's real limit.
            }
        }
        throw new QcowException(file, "check needs " + (wordCount >> 17) + " MiB for the refcounts of " + capacity
                + " clusters, more than the Java heap can give (see -Xmx)");
    }

    long capacity() {
        return capacity;
    }

    /**
     * Makes room for at least {@code clusters} counters, the new ones 0. Grows by half again at least, so that a
     * rebuild appending clusters one at a time copies the array only a few times.
     */
    void ensureCapacity(long clusters, String file) throws QcowException {
        if (clusters <= capacity) {
            return;
        }
        long grown = Math.max(clusters, Math.min(capacity + (capacity >> 1), (long) Integer.MAX_VALUE + 1));
        long[] bigger = words(grown, order, file);
        System.arraycopy(words, 0, bigger, 0, words.length);
        words = bigger;
        capacity = grown;
    }

    /** Sets every counter to 0. */
    void clear() {
        Arrays.fill(words, 0);
    }

    /** The counter of {@code cluster}, or 0 past the capacity (as past the end of QEMU's zero-filled array). */
    long getOrZero(long cluster) {
        return cluster < capacity ? get(cluster) : 0;
    }

    /** Sets the counter of {@code cluster} to {@code value}, which must fit the width. */
    void set(long cluster, long value) {
        if (order == 6) {
            words[(int) cluster] = value;
        } else {
            long bit = cluster << order;
            int word = (int) (bit >>> 6);
            int shift = (int) (bit & 63);
            words[word] = (words[word] & ~(max << shift)) | ((value & max) << shift);
        }
    }

    long get(long cluster) {
        if (order == 6) {
            return words[(int) cluster];
        }
        long bit = cluster << order;
        return (words[(int) (bit >>> 6)] >>> (bit & 63)) & max;
    }

    /** Adds one reference to {@code cluster}; returns false, leaving it unchanged, if the counter is at its maximum. */
    boolean increment(long cluster) {
        long value = get(cluster);
        if (value == max) {
            return false;
        }
        if (order == 6) {
            words[(int) cluster] = value + 1;
        } else {
            // The counter is below its maximum, so adding one at its position cannot carry into the next counter.
            long bit = cluster << order;
            words[(int) (bit >>> 6)] += 1L << (bit & 63);
        }
        return true;
    }
}
