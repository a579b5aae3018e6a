package org.qcow4j.cli;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.function.Consumer;

/**
 * QEMU 7.2's number parsing (util/cutils.c), which qemu-io's {@code cvtnum} and qemu-img's option parsing both call:
 * the one parser of io's and bench's numbers, so that they accept and refuse the same strings as qemu. It has C's
 * {@code strtoull}/{@code strtol} scan ("C" locale), {@code qemu_strtoul} and {@code qemu_strtosz} (with the suffix
 * table). Like qemu's, those two return a negative errno on failure: {@link #EINVAL} (not a number, or something
 * left over) or {@link #ERANGE} (too large).
 */
final class QemuNumbers {
    static final int EINVAL = -22;
    static final int ERANGE = -34;

    private static final BigInteger TWO_64 = BigInteger.ONE.shiftLeft(64);
    private static final BigInteger U64_MAX = TWO_64.subtract(BigInteger.ONE);
    private static final BigInteger INT64_MAX = BigInteger.valueOf(Long.MAX_VALUE);

    private QemuNumbers() {
    }

    /**
     * What C's {@code strtoull(s, &end, base)} (base 0, 10 or 16) reads: the digits' value without the sign applied
     * (it may exceed 64 bits: strtoull's ERANGE), whether a '-' came first, and where it stopped ({@code end} is 0
     * when nothing was converted, as C's end pointer is then the start).
     */
    record Strtoull(BigInteger magnitude, boolean negative, int end) {
        boolean overflow() {
            return magnitude.compareTo(U64_MAX) > 0;
        }

        /** The unsigned result: a negative number wraps around, as strtoull's does. */
        BigInteger value() {
            return negative ? magnitude.negate().and(U64_MAX) : magnitude;
        }
    }

    /**
     * C's digit scan: leading blanks, a sign, then for base 0 a "0x" prefix (hex), a leading 0 (octal) or decimal;
     * for base 16 an optional "0x" prefix. A prefix counts only with a hex digit after it: "0x" alone reads as 0.
     */
    static Strtoull strtoull(String s, int base) {
        int n = s.length();
        int i = 0;
        while (i < n && " \t\n\u000b\f\r".indexOf(s.charAt(i)) >= 0) {
            i++;
        }
        boolean negative = false;
        if (i < n && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
            negative = s.charAt(i) == '-';
            i++;
        }
        boolean hexPrefix = i + 2 < n && s.charAt(i) == '0' && (s.charAt(i + 1) == 'x' || s.charAt(i + 1) == 'X')
                && digit(s.charAt(i + 2), 16) >= 0;
        if (base == 0) {
            base = hexPrefix ? 16 : (i < n && s.charAt(i) == '0') ? 8 : 10;
        }
        if (base == 16 && hexPrefix) {
            i += 2;
        }
        int start = i;
        BigInteger v = BigInteger.ZERO;
        BigInteger b = BigInteger.valueOf(base);
        for (; i < n && digit(s.charAt(i), base) >= 0; i++) {
            v = v.multiply(b).add(BigInteger.valueOf(digit(s.charAt(i), base)));
        }
        return new Strtoull(v, negative, i == start ? 0 : i);
    }

    /**
     * {@code qemu_strtoul(s, NULL, 0, &res)}: the whole string as one C integer (decimal, 0x hex or 0 octal; a
     * negative one wraps around). A result above INT64_MAX (which only a wrapped negative or the top of the
     * unsigned range gives) is reported as {@link #ERANGE}: every caller here refuses those anyway.
     */
    static long strtoul(String s) {
        Strtoull p = strtoull(s, 0);
        if (p.end() == 0) {
            return EINVAL;
        }
        if (p.overflow()) {
            return at(s, p.end(), ERANGE);
        }
        return at(s, p.end(), int64(p.value()));
    }

    /**
     * {@code qemu_strtosz(s, NULL, &res)}: bytes as decimal, with an optional fraction and a {@link #suffixMul
     * suffix} (a fraction needs one other than B), or as hex. A suffix after hex is accepted with qemu's deprecation
     * warning, handed to {@code warn} as soon as it is seen (before the rest of the string is checked, as qemu does).
     * A result above INT64_MAX is {@link #ERANGE}, as in qemu-io's {@code cvtnum}; qemu-img's callers have lower
     * limits.
     */
    /**
     * qemu-img's {@code cvtnum_full(name, value, 0, max)}: a size by {@link #strtosz}, refused in its words (two
     * lines about suffixes when it is not one, one about the range when it is too large).
     */
    static long cvtnum(String name, String value, long max, Consumer<String> warn) throws CommandLine.UsageException {
        long v = strtosz(value, warn);
        if (v == EINVAL) {
            throw CommandLine.UsageException.reports("Invalid " + name + " specified. You may use k, M, G, T, P or E "
                    + "suffixes for", "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        }
        if (v < 0 || v > max) {
            throw CommandLine.UsageException.withoutHint("Invalid " + name + " specified. Must be between 0 and " + max
                    + ".");
        }
        return v;
    }

    static long strtosz(String s, Consumer<String> warn) {
        // The integral part, as decimal (qemu_strtou64, base 10).
        Strtoull p = strtoull(s, 10);
        if (p.end() == 0) {
            return EINVAL;
        }
        if (p.overflow()) {
            return at(s, p.end(), ERANGE);
        }
        if (p.negative()) {
            return EINVAL; // the memchr(nptr, '-', ...) check: strtoull would have wrapped it around
        }
        BigInteger val = p.magnitude();
        int end = p.end();
        BigInteger valf = BigInteger.ZERO; // the fraction, as 64-bit fixed point
        boolean hex = false;
        if (val.signum() == 0 && end < s.length() && (s.charAt(end) == 'x' || s.charAt(end) == 'X')) {
            // Looks like hex: parsed again as such, and then no fraction may follow.
            Strtoull h = strtoull(s, 16);
            if (h.overflow()) {
                return at(s, h.end(), ERANGE);
            }
            val = h.magnitude();
            end = h.end();
            if (end < s.length() && s.charAt(end) == '.') {
                return EINVAL;
            }
            hex = true;
        } else if (end < s.length() && s.charAt(end) == '.') {
            // A fraction, read by strtod from the '.'.
            int f = end;
            int digitsEnd = digits(s, f + 1);
            end = digitsEnd == f + 1 ? f : exponentEnd(s, digitsEnd);
            double fraction = end == f ? 0 : Double.parseDouble("0" + s.substring(f, end));
            boolean nonZero = s.substring(f, digitsEnd).chars().anyMatch(c -> c >= '1' && c <= '9');
            if (end == f || Double.isInfinite(fraction) || (fraction < Double.MIN_NORMAL && nonZero)) {
                // qemu_strtod_finite failed (nothing to read, as in "1.k", or strtod's ERANGE): qemu steps one
                // character past where strtod stopped and drops the fraction. Past the end of the string, it reads
                // a byte that in practice is not a NUL: refused.
                end++;
            } else if (end > digitsEnd) {
                return EINVAL; // strtod read an exponent: that makes the whole input invalid
            } else {
                // (uint64_t)(fraction * 0x1p64): a fraction that rounds up to 1.0 converts to 0 on x86-64.
                BigInteger fixed = new BigDecimal(fraction).multiply(new BigDecimal(TWO_64)).toBigInteger();
                valf = fixed.compareTo(U64_MAX) > 0 ? BigInteger.ZERO : fixed;
            }
        }
        long mul = end < s.length() ? suffixMul(s.charAt(end)) : -1;
        if (mul > 0) {
            if (hex) {
                warn.accept("warning: Using a multiplier suffix on hex numbers is deprecated: " + s);
            }
            end++;
        } else {
            mul = 1;
        }
        if (mul == 1) {
            if (valf.signum() != 0) {
                return EINVAL; // a fraction needs a scale
            }
        } else {
            // 64.64 fixed point times the multiplier, rounding 0.5 up.
            BigInteger m = BigInteger.valueOf(mul);
            BigInteger frac = valf.multiply(m);
            val = val.multiply(m).add(frac.shiftRight(64)).add(frac.testBit(63) ? BigInteger.ONE : BigInteger.ZERO);
            if (val.compareTo(U64_MAX) > 0) {
                return at(s, end, ERANGE);
            }
        }
        return at(s, end, int64(val));
    }

    /**
     * qemu's {@code suffix_mul} with unit 1024: the multiplier of a size suffix letter (either case), or -1. This is
     * the one table of size suffixes; {@link ImageOptions#size} uses it too.
     */
    static long suffixMul(char c) {
        return switch (Character.toUpperCase(c)) {
            case 'B' -> 1;
            case 'K' -> 1L << 10;
            case 'M' -> 1L << 20;
            case 'G' -> 1L << 30;
            case 'T' -> 1L << 40;
            case 'P' -> 1L << 50;
            case 'E' -> 1L << 60;
            default -> -1;
        };
    }

    /** Where the decimal digits from {@code i} on end. */
    private static int digits(String s, int i) {
        while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
            i++;
        }
        return i;
    }

    /** Where strtod stops after the digits ending at {@code i}: after an exponent, if one with digits follows. */
    private static int exponentEnd(String s, int i) {
        if (i == s.length() || (s.charAt(i) != 'e' && s.charAt(i) != 'E')) {
            return i;
        }
        int e = i + 1 < s.length() && (s.charAt(i + 1) == '+' || s.charAt(i + 1) == '-') ? i + 2 : i + 1;
        int end = digits(s, e);
        return end > e ? end : i;
    }

    /**
     * The end check of qemu's functions called without an end pointer: whatever {@code result} was, it is
     * {@link #EINVAL} unless the parse ended exactly at the end of {@code s}.
     */
    private static long at(String s, int end, long result) {
        return end == s.length() ? result : EINVAL;
    }

    private static long int64(BigInteger v) {
        return v.compareTo(INT64_MAX) > 0 ? ERANGE : v.longValueExact();
    }

    /** An ASCII digit or letter as a digit in {@code base}, or -1 (C's strto* know no other digits). */
    private static int digit(char c, int base) {
        int d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'z') {
            d = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'Z') {
            d = c - 'A' + 10;
        } else {
            return -1;
        }
        return d < base ? d : -1;
    }
}
