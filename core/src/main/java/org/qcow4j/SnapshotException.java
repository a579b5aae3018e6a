package org.qcow4j;

/**
 * A snapshot operation refused for what it asks, as QEMU refuses it: no snapshot of that id or name, a snapshot table
 * that would grow past QEMU's limits, or an image that cannot hold internal snapshots (nothing written); or a refcount
 * that would overflow, or a damaged entry naming a cluster no refcount block counts (the image stays consistent, with
 * leaked clusters, as QEMU leaves it).
 */
public class SnapshotException extends QcowException {
    private static final long serialVersionUID = 1L;

    /** Why, in the terms of the errno QEMU returns for it. */
    public enum Reason {
        /** No snapshot has that id or name (QEMU's ENOENT). */
        NOT_FOUND,
        /** Too many snapshots, or too large a table (QEMU's EFBIG). */
        TOO_BIG,
        /** The image format cannot take internal snapshots: raw (QEMU: the driver has no snapshot functions). */
        NOT_SUPPORTED,
        /**
         * A qcow2 image that keeps its data in an external data file, which internal snapshots cannot share (QEMU's
         * qcow2 driver returns ENOTSUP).
         */
        EXTERNAL_DATA_FILE,
        /**
         * A refcount would pass its maximum (QEMU's EINVAL from {@code update_refcount}): as in QEMU the references
         * taken until then stay, as leaked clusters, and the snapshot is not made.
         */
        REFCOUNT_OVERFLOW,
        /**
         * A damaged entry names a cluster no refcount block counts: QEMU's {@code update_refcount} creates the block
         * (or grows the refcount table) and fails with EAGAIN, which its snapshot walk does not retry. As in QEMU the
         * block stays, unused, and so do the references taken until then; the snapshot is not made. Past what the
         * refcount table can grow to, the reason is {@link #TOO_BIG}.
         */
        UNCOUNTED_CLUSTER
    }

    private final Reason reason;

    public SnapshotException(String file, Reason reason, String message) {
        super(file, message);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}
