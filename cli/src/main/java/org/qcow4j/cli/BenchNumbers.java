package org.qcow4j.cli;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.function.Consumer;

/**
 * The two ways QEMU 7.2's {@code qemu-img bench} reads numbers, so that {@code bench} accepts and refuses the same
 * arguments: {@code qemu_strtoul(arg, NULL, 0, ...)} (a C {@code strtoul} in base 0: decimal, {@code 0x} hex,
 * leading-{@code 0} octal, leading blanks and a sign allowed, negatives wrapping around) for {@code -c}, {@code -d},
 * {@code --pattern} and {@code --flush-interval}, and {@code cvtnum_full} over {@code qemu_strtosz} (decimal with an
 * optional fraction and a {@code b k M G T P E} suffix, or hex) for {@code -o}, {@code -s} and {@code -S}.
 */
final class BenchNumbers {
    private static final BigInteger TWO_64 = BigInteger.ONE.shiftLeft(64);
    private static final BigInteger U64_MASK = TWO_64.subtract(BigInteger.ONE);

    private BenchNumbers() {
    }

    /** A value qemu refuses; {@link #lines} are its error lines (without the "qemu-img: " prefix). */
    static final class Invalid extends Exception {
        private static final long serialVersionUID = 1L;
        private final transient java.util.List<String> lines;

        Invalid(String... lines) {
            super(String.join("\n", lines));
            this.lines = java.util.List.of(lines);
        }

        java.util.List<String> lines() {
            return lines;
        }
    }

    // ================================================================ qemu_strtoul

    /**
     * {@code qemu_strtoul(s, NULL, 0, &res)} followed by {@code res > max} as {@code img_bench} does: the value, or
     * {@link Invalid} with {@code message} (e.g. "Invalid request count specified").
     */
    static int strtoul(String s, long max, String message) throws Invalid {
        BigInteger v = parseStrtoul(s);
        if (v == null || v.compareTo(BigInteger.valueOf(max)) > 0) {
            throw new Invalid(message);
        }
        return v.intValueExact();
    }

    /** C's strtoul in base 0 with qemu's checks: the unsigned 64-bit result, or null if qemu_strtoul fails. */
    private static BigInteger parseStrtoul(String s) {
        int i = skipBlanks(s, 0);
        boolean negative = false;
        if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
            negative = s.charAt(i) == '-';
            i++;
        }
        int base = 10;
        if (i < s.length() && s.charAt(i) == '0') {
            if (i + 2 < s.length() && (s.charAt(i + 1) == 'x' || s.charAt(i + 1) == 'X') && digit(s.charAt(i + 2), 16) >= 0) {
                base = 16;
                i += 2;
            } else {
                base = 8;
            }
        }
        int start = i;
        BigInteger v = BigInteger.ZERO;
        while (i < s.length() && digit(s.charAt(i), base) >= 0) {
            v = v.multiply(BigInteger.valueOf(base)).add(BigInteger.valueOf(digit(s.charAt(i), base)));
            i++;
        }
        if (i == start || i != s.length() || v.compareTo(U64_MASK) > 0) {
            return null; // no digits, trailing characters (the caller gives no end pointer), ERANGE
        }
        return negative ? v.negate().and(U64_MASK) : v;
    }

    // ================================================================ cvtnum_full / qemu_strtosz

    /**
     * {@code cvtnum_full(name, s, 0, max)}: a size with qemu's suffixes, or {@link Invalid} with qemu's two-line
     * message (not a number) or one-line message (out of range). {@code warn} gets qemu's deprecation warning for a
     * suffix after a hex number, which QEMU 7.2 still accepts.
     */
    static long cvtnum(String name, String s, long max, Consumer<String> warn) throws Invalid {
        BigInteger v;
        try {
            v = strtosz(s, name, warn);
        } catch (ArithmeticException range) {
            v = null;
        }
        if (v == null || v.compareTo(BigInteger.valueOf(max)) > 0) {
            throw new Invalid("Invalid " + name + " specified. Must be between 0 and " + max + ".");
        }
        return v.longValueExact();
    }

    /**
     * {@code qemu_strtosz(s, NULL, &res)}: the value; throws {@link ArithmeticException} for ERANGE and
     * {@link Invalid} (with cvtnum's message about suffixes, naming {@code name}) for EINVAL.
     */
    private static BigInteger strtosz(String s, String name, Consumer<String> warn) throws Invalid {
        Invalid invalid = new Invalid("Invalid " + name + " specified. You may use k, M, G, T, P or E suffixes for",
                "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        // The integral part, as decimal (qemu_strtou64 base 10: blanks and a sign allowed).
        Strtou64 p = strtou64(s, 0, 10);
        if (p.error == Strtou64.NO_DIGITS) {
            throw invalid;
        }
        if (p.error == Strtou64.RANGE) {
            // ERANGE: qemu goes straight to its end check, which turns trailing characters into EINVAL.
            if (p.end != s.length()) {
                throw invalid;
            }
            throw new ArithmeticException("ERANGE");
        }
        if (s.substring(0, p.end).indexOf('-') >= 0) {
            throw invalid;
        }
        BigInteger val = p.value;
        int end = p.end;
        BigInteger valf = BigInteger.ZERO; // 64-bit fixed-point fraction
        boolean hex = false;
        if (val.signum() == 0 && end < s.length() && (s.charAt(end) == 'x' || s.charAt(end) == 'X')) {
            // Looks like hex: reparse, and insist on no fraction.
            Strtou64 h = strtou64(s, 0, 16);
            if (h.error == Strtou64.RANGE) {
                if (h.end != s.length()) {
                    throw invalid;
                }
                throw new ArithmeticException("ERANGE");
            }
            val = h.value;
            end = h.end;
            if (end < s.length() && s.charAt(end) == '.') {
                throw invalid;
            }
            hex = true;
        } else if (end < s.length() && s.charAt(end) == '.') {
            // A fraction, parsed by strtod from the '.': "1.k" works without fractional digits; an exponent is
            // refused; what strtod cannot parse just skips the '.'.
            int f = end;
            int j = f + 1;
            while (j < s.length() && s.charAt(j) >= '0' && s.charAt(j) <= '9') {
                j++;
            }
            boolean digits = j > f + 1;
            if (!digits) {
                end = f + 1;
            } else {
                int k = j;
                if (k < s.length() && (s.charAt(k) == 'e' || s.charAt(k) == 'E')) {
                    int e = k + 1;
                    if (e < s.length() && (s.charAt(e) == '+' || s.charAt(e) == '-')) {
                        e++;
                    }
                    int eDigits = e;
                    while (e < s.length() && s.charAt(e) >= '0' && s.charAt(e) <= '9') {
                        e++;
                    }
                    if (e > eDigits) {
                        throw invalid; // strtod took an exponent
                    }
                }
                double fraction = Double.parseDouble("0" + s.substring(f, j));
                boolean nonZeroDigit = s.substring(f + 1, j).chars().anyMatch(c -> c != '0');
                if (nonZeroDigit && fraction < Double.MIN_NORMAL) {
                    // strtod's ERANGE (underflow): qemu skips the '.' and then fails on the digits after it.
                    throw invalid;
                }
                end = j;
                // (uint64_t)(fraction * 0x1p64): 1.0 (a fraction rounded up) converts to 0 on x86-64.
                BigInteger fixed = new BigDecimal(fraction).multiply(new BigDecimal(TWO_64)).toBigInteger();
                valf = fixed.compareTo(U64_MASK) > 0 ? BigInteger.ZERO : fixed;
            }
        }
        long mul = end < s.length() ? suffix(s.charAt(end)) : -1;
        if (mul > 0) {
            if (hex) {
                warn.accept("warning: Using a multiplier suffix on hex numbers is deprecated: " + s);
            }
            end++;
        } else {
            mul = 1;
        }
        BigInteger result;
        if (mul == 1) {
            if (valf.signum() != 0) {
                throw invalid; // a fraction needs a scale
            }
            result = val;
        } else {
            // 64.64 fixed point times the multiplier, rounding 0.5 up.
            BigInteger m = BigInteger.valueOf(mul);
            BigInteger frac = valf.multiply(m);
            BigInteger total = val.multiply(m).add(frac.shiftRight(64)).add(frac.testBit(63) ? BigInteger.ONE : BigInteger.ZERO);
            if (total.compareTo(U64_MASK) > 0) {
                if (end != s.length()) {
                    throw invalid;
                }
                throw new ArithmeticException("ERANGE");
            }
            result = total;
        }
        if (end != s.length()) {
            throw invalid;
        }
        return result;
    }

    /** A C strtoull result as qemu_strtou64 reports it. */
    private record Strtou64(BigInteger value, int end, int error) {
        static final int OK = 0;
        static final int NO_DIGITS = 1;
        static final int RANGE = 2;
    }

    /** C's strtoull(s + from, &end, base) for base 10 or 16, with qemu_strtou64's error checks (but no end check). */
    private static Strtou64 strtou64(String s, int from, int base) {
        int i = skipBlanks(s, from);
        boolean negative = false;
        if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
            negative = s.charAt(i) == '-';
            i++;
        }
        if (base == 16 && i + 2 < s.length() && s.charAt(i) == '0' && (s.charAt(i + 1) == 'x' || s.charAt(i + 1) == 'X')
                && digit(s.charAt(i + 2), 16) >= 0) {
            i += 2;
        }
        int start = i;
        BigInteger v = BigInteger.ZERO;
        while (i < s.length() && digit(s.charAt(i), base) >= 0) {
            v = v.multiply(BigInteger.valueOf(base)).add(BigInteger.valueOf(digit(s.charAt(i), base)));
            i++;
        }
        if (i == start) {
            return new Strtou64(BigInteger.ZERO, from, Strtou64.NO_DIGITS);
        }
        if (v.compareTo(U64_MASK) > 0) {
            return new Strtou64(U64_MASK, i, Strtou64.RANGE);
        }
        return new Strtou64(negative ? v.negate().and(U64_MASK) : v, i, Strtou64.OK);
    }

    /** qemu's suffix_mul with unit 1024: the multiplier of a suffix letter, or -1. */
    private static long suffix(char c) {
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

    /** C isspace in the "C" locale. */
    private static int skipBlanks(String s, int i) {
        while (i < s.length() && " \t\n\u000b\f\r".indexOf(s.charAt(i)) >= 0) {
            i++;
        }
        return i;
    }

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
