package org.qcow4j.cli;

/** Human sizes as qemu-img prints them ({@code size_to_str}: "%0.3g" of the value in the best binary unit). */
final class Sizes {
    private static final String[] SUFFIXES = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};

    private Sizes() {
    }

    /** {@code bytes} as QEMU's uint64_t: a snapshot's VM state size of 2^63 or more is too (16 EiB, not -4 KiB). */
    static String human(long bytes) {
        double value = bytes >= 0 ? bytes : (bytes >>> 1) * 2.0 + (bytes & 1);
        // Like QEMU: the exponent of val*1024/1000 picks the unit, so 1000..1023 of a unit rolls up.
        double scaled = value / (1000.0 / 1024.0);
        int exp = scaled == 0 ? 0 : Math.getExponent(scaled) + 1;
        int i = Math.max(0, Math.min(SUFFIXES.length - 1, (exp - 1) / 10));
        double v = value / (1L << (i * 10));
        return CPrintf.g3(v) + " " + SUFFIXES[i] + "B";
    }
}
