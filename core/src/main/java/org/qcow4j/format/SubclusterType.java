package org.qcow4j.format;

import org.qcow4j.FormatException;

/**
 * What one (sub)cluster of guest data is, as QEMU's {@code QCow2SubclusterType}, classified in one place:
 * {@link L2Entry#classify}. The image layer turns {@link #INVALID} into a {@code CorruptionException} naming the entry.
 */
public enum SubclusterType {
    /** No host cluster; reads come from the backing file, or zeros without one. */
    UNALLOCATED_PLAIN,
    /** Extended L2: the cluster has a host cluster but this subcluster is not allocated (reads as backing). */
    UNALLOCATED_ALLOC,
    /** Reads as zeros, backing not consulted, no host cluster. */
    ZERO_PLAIN,
    /** Reads as zeros, backing not consulted; a (preallocated) host cluster is kept for it. */
    ZERO_ALLOC,
    /** Guest data at the host offset. */
    NORMAL,
    /** A compressed cluster (always whole clusters). */
    COMPRESSED,
    /** A combination the spec forbids (e.g. a subcluster both allocated and zero). */
    INVALID;

    /** Whether the guest bytes are defined by this layer (not passed through to the backing file). */
    public boolean isAllocatedHere() {
        return this != UNALLOCATED_PLAIN && this != UNALLOCATED_ALLOC;
    }

    /** Whether the entry carries a valid, aligned host offset (NORMAL, ZERO_ALLOC, UNALLOCATED_ALLOC). */
    public boolean hasHostOffset() {
        return this == NORMAL || this == ZERO_ALLOC || this == UNALLOCATED_ALLOC;
    }
}
