package org.qcow4j.format;

/** The few printf conversions QEMU's check messages use that Java's formatter spells differently. */
public final class CFormat {
    private CFormat() {
    }

    /** C's {@code %#x} (and {@code %#PRIx64}): "0x" and lowercase hex, but a bare "0" for zero. */
    public static String altHex(long v) {
        return v == 0 ? "0" : "0x" + Long.toHexString(v);
    }

    /** C's {@code %x} / {@code PRIx64}: lowercase hex, no prefix, unsigned. */
    public static String hex(long v) {
        return Long.toHexString(v);
    }
}
