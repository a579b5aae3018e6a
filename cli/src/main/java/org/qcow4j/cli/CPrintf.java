package org.qcow4j.cli;

import java.math.BigDecimal;
import java.math.RoundingMode;

/**
 * glibc's {@code %.Nf} and {@code %.3g}, as QEMU's tools print their numbers: the double's exact binary value rounded
 * half to even (12.125 is "12.12"; Java's formatter rounds half up). Long arithmetic, not {@code BigDecimal}, for
 * every value the tools print: {@code info} and {@code check} are short commands, and initialising {@code BigDecimal}
 * and {@code BigInteger} cost each milliseconds of start-up.
 */
final class CPrintf {
    private static final long[] POW10 = {1, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000};

    private CPrintf() {
    }

    /** {@code printf("%.Nf", v)}, {@code decimals} 0..8; "inf" and "nan" spelled as glibc. */
    static String fixed(double v, int decimals) {
        if (Double.isNaN(v)) {
            return "nan";
        }
        if (Double.isInfinite(v)) {
            return v > 0 ? "inf" : "-inf";
        }
        long digits = scaledRounded(Math.abs(v), decimals);
        if (digits < 0) { // beyond a long once scaled: far above any count the tools print
            return new BigDecimal(v).setScale(decimals, RoundingMode.HALF_EVEN).toPlainString();
        }
        String d = Long.toString(digits);
        if (decimals > 0) {
            d = "0".repeat(Math.max(0, decimals + 1 - d.length())) + d;
            d = d.substring(0, d.length() - decimals) + "." + d.substring(d.length() - decimals);
        }
        return Double.doubleToRawLongBits(v) < 0 ? "-" + d : d; // C keeps the sign of a negative that rounds to 0
    }

    /**
     * {@code printf("%0.3g", v)} for v = 0 or 0.1 <= v < 1000 (QEMU's {@code size_to_str} gives those): three
     * significant digits, trailing zeros dropped, and a value that rounds up to 1000 in exponent form ("1e+03").
     */
    static String g3(double v) {
        if (v == 0) {
            return "0";
        }
        if (!(v >= 0.1 && v < 1000)) {
            throw new IllegalArgumentException("value out of range for %0.3g: " + v);
        }
        int e = v >= 100 ? 2 : v >= 10 ? 1 : v >= 1 ? 0 : -1; // the decimal exponent of v's first digit
        long digits = scaledRounded(v, 2 - e); // 100..1000
        if (digits == 1000) {
            digits = 100;
            e++;
        }
        if (e == 3) {
            return "1e+03";
        }
        String d = Long.toString(digits);
        String text = e == 2 ? d : e == 1 ? d.substring(0, 2) + "." + d.charAt(2)
                : e == 0 ? d.charAt(0) + "." + d.substring(1) : "0." + d;
        int end = text.length();
        while (e < 2 && text.charAt(end - 1) == '0') {
            end--;
        }
        return text.substring(0, text.charAt(end - 1) == '.' ? end - 1 : end);
    }

    /**
     * {@code v * 10^decimals} rounded half to even from v's exact binary value, for finite v >= 0; -1 where that
     * needs more than a long.
     */
    static long scaledRounded(double v, int decimals) {
        if (v == 0) {
            return 0;
        }
        long bits = Double.doubleToRawLongBits(v);
        long mantissa = bits & ((1L << 52) - 1);
        int shift; // v = mantissa / 2^shift exactly
        if (Math.getExponent(v) < Double.MIN_EXPONENT) {
            shift = 1074; // subnormal
        } else {
            mantissa |= 1L << 52;
            shift = 52 - Math.getExponent(v);
        }
        int zeros = Long.numberOfTrailingZeros(mantissa); // fewer bits: more values fit
        mantissa >>>= zeros;
        shift -= zeros;
        long pow = POW10[decimals];
        if (mantissa > Long.MAX_VALUE / pow) {
            return -1;
        }
        long scaled = mantissa * pow;
        if (shift <= 0) {
            return -shift >= 63 || scaled > Long.MAX_VALUE >> -shift ? -1 : scaled << -shift;
        }
        if (shift >= 64) {
            return 0; // scaled < 2^63 <= half of 2^shift
        }
        long q = scaled >>> shift;
        long r = scaled - (q << shift);
        long half = 1L << (shift - 1);
        return r > half || r == half && (q & 1) != 0 ? q + 1 : q;
    }
}
