package org.qcow4j;

/**
 * A request the image refuses for what it asks, as QEMU refuses it, not because of damage or a failing file: a
 * compressed write that is not made of whole clusters, one over a cluster already allocated, one to a format
 * without compression, or a VM state write past the largest L1 table. Nothing was written.
 */
public class RefusedRequestException extends QcowException {
    private static final long serialVersionUID = 1L;

    /** Why, in the terms of the errno QEMU returns for it. */
    public enum Reason {
        /** The request's offset or length does not fit the format's rules (QEMU's EINVAL). */
        INVALID,
        /** The request would overwrite what it may not (QEMU's EIO for a compressed write over allocated data). */
        CONFLICT,
        /** The format has no such request (QEMU's ENOTSUP). */
        NOT_SUPPORTED,
        /** The request reaches further than the format's tables can grow (QEMU's EFBIG). */
        TOO_LARGE
    }

    private final Reason reason;

    public RefusedRequestException(String file, Reason reason, String message) {
        super(file, message);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}
