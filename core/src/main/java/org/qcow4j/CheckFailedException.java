package org.qcow4j;

import java.util.List;

/**
 * A check (or repair) that could not complete: qemu-img prints {@code Check failed: REASON} and exits 1 with no
 * report. Some failures are explained first by lines QEMU prints through its {@code error_report} (with the program's
 * name before them) and hints after them (without): {@link #errors()}.
 */
public final class CheckFailedException extends QcowException {
    private static final long serialVersionUID = 1L;
    private final String reason;
    private final List<String> errors;

    /**
     * @param reason QEMU's {@code strerror} of the failure ("Input/output error", "File too large")
     * @param errors the explanation printed before the failure, in QEMU's words: each element one {@code error_report}
     *               message (its first line gets the program's name) and any hint lines after it
     */
    public CheckFailedException(String file, String reason, List<String> errors) {
        this(file, reason, null, errors);
    }

    /** @param detail qcow4j's own words on the failure, after QEMU's reason in the message (null: none) */
    public CheckFailedException(String file, String reason, String detail, List<String> errors) {
        super(file, "Check failed: " + reason + (detail == null ? "" : " (" + detail + ")"));
        this.reason = reason;
        this.errors = List.copyOf(errors);
    }

    /** QEMU's {@code strerror} of the failure, what follows its "Check failed: ". */
    public String reason() {
        return reason;
    }

    /** What QEMU reports before "Check failed" (see the constructor); often empty. */
    public List<String> errors() {
        return errors;
    }
}
