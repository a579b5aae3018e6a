package org.qcow4j;

/**
 * A persistent dirty bitmap operation refused as QEMU refuses it (no bitmap of that name, one already there, a
 * granularity or size QEMU does not take, an inconsistent or read-only bitmap, bitmaps of different sizes): nothing
 * was changed. {@link #qemuWords()} is QEMU's own sentence ({@code qemu-img bitmap} prints it after "Operation OP on
 * bitmap NAME failed: ").
 */
public class BitmapException extends QcowException {
    private static final long serialVersionUID = 1L;
    private final String hint;

    public BitmapException(String file, String qemuWords) {
        this(file, qemuWords, null);
    }

    /** @param hint the line QEMU prints after its message (its {@code error_append_hint}), or null */
    public BitmapException(String file, String qemuWords, String hint) {
        super(file, qemuWords, null, qemuWords);
        this.hint = hint;
    }

    /** The advice QEMU prints on the line after its message, or null. */
    public String hint() {
        return hint;
    }
}
