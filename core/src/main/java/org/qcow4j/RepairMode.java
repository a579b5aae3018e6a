package org.qcow4j;

/** What {@link Images#repair} may repair: {@code qemu-img check -r leaks} or {@code -r all}. */
public enum RepairMode {
    /** Only lower refcounts that are higher than the references to their clusters. */
    LEAKS,
    /** Leaks, refcounts that are too low, COPIED flags, and a refcount structure that needs rebuilding. */
    ALL
}
