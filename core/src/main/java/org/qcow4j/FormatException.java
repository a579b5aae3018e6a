package org.qcow4j;

/**
 * An on-disk field holds a value that is malformed, out of QEMU's limits or inconsistent with the file
 * (a hostile or damaged image). The message names the file, the field and the value.
 */
public class FormatException extends QcowException {
    private static final long serialVersionUID = 1L;
    private final String field;
    private final String value;

    public FormatException(String file, String field, Object value, String reason) {
        this(file, field, value, reason, null);
    }

    /** @param qemuWords QEMU 7.2's sentence for the same fault ({@link #qemuWords()}) */
    public FormatException(String file, String field, Object value, String reason, String qemuWords) {
        super(file, field + " = " + value + ": " + reason, null, qemuWords);
        this.field = field;
        this.value = String.valueOf(value);
    }

    /** Formats a number the way the qcow2 spec talks about offsets and bit fields. */
    public static String hex(long v) {
        return "0x" + Long.toHexString(v);
    }

    /** The on-disk field at fault, e.g. {@code "l1_size"} or {@code "L2 entry 5 of table at 0x30000"}. */
    public String field() {
        return field;
    }

    /** The value the field holds, as text. */
    public String value() {
        return value;
    }
}
