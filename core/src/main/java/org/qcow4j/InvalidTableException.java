package org.qcow4j;

/**
 * A table the image names (a snapshot's L1 table) fails QEMU 7.2's {@code qcow2_validate_table}, checked before the
 * table is read: more entries than QEMU's limit, or an offset that is not a cluster's or reaches past the largest
 * file offset. {@link #qemuWords()} is QEMU's sentence ({@code "Snapshot L1 table too large"}).
 */
public class InvalidTableException extends FormatException {
    private static final long serialVersionUID = 1L;

    /** Which check failed, in the terms of the errno QEMU returns for it. */
    public enum Reason {
        /** More entries than QEMU allows (its EFBIG). */
        TOO_LARGE("File too large"),
        /** An offset not aligned to a cluster, or the table reaching past the largest offset (its EINVAL). */
        OFFSET_INVALID("Invalid argument");

        private final String strerror;

        Reason(String strerror) {
            this.strerror = strerror;
        }

        /** glibc's strerror of QEMU's errno, which QEMU's callers print after their own words. */
        public String strerror() {
            return strerror;
        }
    }

    private final Reason reason;

    public InvalidTableException(String file, String field, Object value, Reason reason, String why, String qemuWords) {
        super(file, field, value, why, qemuWords);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}
