package org.qcow4j.cli;

import java.io.PrintWriter;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.RoundingMode;

/**
 * qemu-io's number handling, byte for byte: {@code cvtnum} (QEMU 7.2's {@code qemu_strtosz}: decimal, hex,
 * fractions, k/M/G/T/P/E suffixes), the pattern byte ({@code strtol} base 0), and the report lines ({@code cvtstr},
 * {@code timestr}, {@code print_report}, {@code dump_buffer}). Floating point is printed from the exact binary
 * value rounded half to even, as glibc's printf does.
 */
final class IoFormat {
    /** QEMU's BDRV_REQUEST_MAX_BYTES: the largest single request. */
    static final long REQUEST_MAX_BYTES = 2147483136L;

    /** What {@link #cvtnum} returns for a number with garbage or a bad suffix (qemu's -EINVAL). */
    static final long EINVAL = -22;
    /** What {@link #cvtnum} returns for a number too large (qemu's -ERANGE). */
    static final long ERANGE = -34;

    private static final BigInteger TWO_64 = BigInteger.ONE.shiftLeft(64);
    private static final BigInteger INT64_MAX = BigInteger.valueOf(Long.MAX_VALUE);

    private IoFormat() {
    }

    /** A parsed size, and whether it was hex with a suffix (which qemu warns about). */
    record Number(long value, boolean hexWithSuffix) {
    }

    /**
     * qemu-io's {@code cvtnum}: the value (at most INT64_MAX), or {@link #EINVAL} / {@link #ERANGE}. Warnings (hex
     * with a suffix) go to {@code err}.
     */
    static long cvtnum(String s, PrintWriter err) {
        Number n = strtosz(s);
        if (n.hexWithSuffix() && err != null) {
            err.println("qcow4j: warning: Using a multiplier suffix on hex numbers is deprecated: " + s);
        }
        return n.value();
    }

    /** qemu_strtosz with the default unit B, then cvtnum's INT64_MAX limit. */
    static Number strtosz(String s) {
        int n = s.length();
        int i = skipSpace(s, 0);
        int start = i;
        if (i < n && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
            i++;
        }
        int digits = i;
        while (i < n && isDigit(s.charAt(i))) {
            i++;
        }
        if (i == digits) {
            return new Number(EINVAL, false); // no conversion
        }
        BigInteger val = new BigInteger(s.substring(digits, i));
        int end = i;
        if (val.compareTo(TWO_64) >= 0) {
            // strtoull's ERANGE (negative numbers too): reported as such only when nothing follows the digits.
            return new Number(end == n ? ERANGE : EINVAL, false);
        }
        if (s.charAt(start) == '-') {
            return new Number(EINVAL, false);
        }
        boolean hex = false;
        double fraction = 0;
        if (val.signum() == 0 && end < n && (s.charAt(end) == 'x' || s.charAt(end) == 'X')) {
            // Hex: strtoull base 16 from the start ("0x" prefix only right after the sign).
            int h = digits;
            if (h + 2 <= n && s.charAt(h) == '0' && (s.charAt(h + 1) == 'x' || s.charAt(h + 1) == 'X')
                    && h + 2 < n && Character.digit(s.charAt(h + 2), 16) >= 0) {
                h += 2;
                int hexStart = h;
                while (h < n && Character.digit(s.charAt(h), 16) >= 0) {
                    h++;
                }
                val = new BigInteger(s.substring(hexStart, h), 16);
                if (val.compareTo(TWO_64) >= 0) {
                    return new Number(h == n ? ERANGE : EINVAL, false);
                }
                end = h;
            } else {
                // Only the zeros parse ("0x" without digits, "00x10"): the 'x' is left over.
                end = i;
            }
            if (end < n && s.charAt(end) == '.') {
                return new Number(EINVAL, false);
            }
            hex = true;
        } else if (end < n && s.charAt(end) == '.') {
            // A fraction, as strtod reads it from the '.'; an exponent makes the whole input invalid.
            int f = end + 1;
            while (f < n && isDigit(s.charAt(f))) {
                f++;
            }
            if (f == end + 1) {
                end++; // strtod found nothing: qemu steps over the '.' ("1.k" is 1 KiB)
            } else {
                if (f < n && (s.charAt(f) == 'e' || s.charAt(f) == 'E')) {
                    int e = f + 1;
                    if (e < n && (s.charAt(e) == '+' || s.charAt(e) == '-')) {
                        e++;
                    }
                    if (e < n && isDigit(s.charAt(e))) {
                        return new Number(EINVAL, false);
                    }
                }
                fraction = Double.parseDouble("0" + s.substring(end, f));
                end = f;
            }
        }
        long mul = end < n ? suffixMul(s.charAt(end)) : -1;
        boolean suffixed = mul > 0;
        if (suffixed) {
            end++;
        } else {
            mul = 1;
        }
        if (end != n) {
            return new Number(EINVAL, false);
        }
        // The fraction as 64-bit fixed point, as (uint64_t)(fraction * 0x1p64) on x86-64.
        BigInteger valf = fraction == 0 ? BigInteger.ZERO : new BigDecimal(fraction).multiply(new BigDecimal(TWO_64)).toBigInteger();
        if (valf.compareTo(TWO_64) >= 0) {
            valf = BigInteger.ZERO;
        }
        BigInteger result;
        if (mul == 1) {
            if (valf.signum() != 0) {
                return new Number(EINVAL, false);
            }
            result = val;
        } else {
            BigInteger m = BigInteger.valueOf(mul);
            BigInteger frac = valf.multiply(m);
            result = val.multiply(m).add(frac.shiftRight(64)).add(frac.testBit(63) ? BigInteger.ONE : BigInteger.ZERO);
            if (result.compareTo(TWO_64) >= 0) {
                return new Number(ERANGE, hex && suffixed);
            }
        }
        if (result.compareTo(INT64_MAX) > 0) {
            return new Number(ERANGE, hex && suffixed);
        }
        return new Number(result.longValue(), hex && suffixed);
    }

    private static long suffixMul(char c) {
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

    /** print_cvtnum_err: the message for a failed {@link #cvtnum} (printed on stdout by qemu-io). */
    static String cvtnumError(long rc, String arg) {
        if (rc == EINVAL) {
            return "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- " + arg;
        }
        if (rc == ERANGE) {
            return "Parsing error: argument too large -- " + arg;
        }
        return "Parsing error: " + arg;
    }

    /**
     * parse_pattern: {@code strtol(arg, &end, 0)} in 0..255 with nothing left over, else -1 (the caller prints
     * "%s is not a valid pattern byte"). An empty string is 0, as in C.
     */
    static int parsePattern(String arg) {
        int n = arg.length();
        int i = skipSpace(arg, 0);
        boolean negative = false;
        if (i < n && (arg.charAt(i) == '+' || arg.charAt(i) == '-')) {
            negative = arg.charAt(i) == '-';
            i++;
        }
        int base = 10;
        if (i + 1 < n && arg.charAt(i) == '0' && (arg.charAt(i + 1) == 'x' || arg.charAt(i + 1) == 'X')
                && i + 2 < n && Character.digit(arg.charAt(i + 2), 16) >= 0) {
            base = 16;
            i += 2;
        } else if (i < n && arg.charAt(i) == '0') {
            base = 8;
        }
        int digitsStart = i;
        BigInteger v = BigInteger.ZERO;
        while (i < n && Character.digit(arg.charAt(i), base) >= 0) {
            v = v.multiply(BigInteger.valueOf(base)).add(BigInteger.valueOf(Character.digit(arg.charAt(i), base)));
            i++;
        }
        if (i == digitsStart) {
            // No conversion: strtol leaves end at the start of the string (which is fine only if it is empty).
            return n == 0 ? 0 : -1;
        }
        if (i != n) {
            return -1;
        }
        if (negative && v.signum() != 0) {
            return -1;
        }
        return v.compareTo(BigInteger.valueOf(255)) > 0 ? -1 : v.intValue();
    }

    /** cvtstr: a byte count (or rate) as qemu-io prints it: "4 KiB", "1.500 MiB", "512 bytes". */
    static String cvtstr(double value) {
        String suffix;
        String s;
        if (value >= 0x1p60) {
            suffix = " EiB";
            s = fixed(value / 0x1p60, 3);
        } else if (value >= 0x1p50) {
            suffix = " PiB";
            s = fixed(value / 0x1p50, 3);
        } else if (value >= 0x1p40) {
            suffix = " TiB";
            s = fixed(value / 0x1p40, 3);
        } else if (value >= 0x1p30) {
            suffix = " GiB";
            s = fixed(value / 0x1p30, 3);
        } else if (value >= 0x1p20) {
            suffix = " MiB";
            s = fixed(value / 0x1p20, 3);
        } else if (value >= 0x1p10) {
            suffix = " KiB";
            s = fixed(value / 0x1p10, 3);
        } else {
            suffix = " bytes";
            s = fixed(value, 6);
        }
        int trim = s.indexOf(".000");
        return (trim >= 0 ? s.substring(0, trim) : s) + suffix;
    }

    /** timestr: "00.00 sec" under a second, "H:MM:SS.ss" beyond (and always with -C). */
    static String timestr(long nanos, boolean verbose) {
        long sec = nanos / 1_000_000_000L;
        double frac = (nanos % 1_000_000_000L) / 1e9;
        if (verbose || sec != 0) {
            return (sec / 3600) + ":" + two(sec % 3600 / 60) + ":" + padded(fixed(sec % 60 + frac, 2), 5);
        }
        return padded(fixed(frac, 2), 5) + " sec";
    }

    /** print_report: the "read 4096/4096 bytes at offset 0" line and its statistics (or the -C line). */
    static void report(PrintWriter out, String op, long nanos, long offset, long count, long total, int ops, boolean csv) {
        long t = Math.max(nanos, 1);
        double seconds = (t / 1_000_000_000L) + (t % 1_000_000_000L) / 1e9;
        String ts = timestr(t, csv);
        if (!csv) {
            out.println(op + " " + total + "/" + count + " bytes at offset " + offset);
            out.println(cvtstr(total) + ", " + ops + " ops; " + ts + " (" + cvtstr(total / seconds) + "/sec and "
                    + fixed(ops / seconds, 4) + " ops/sec)");
        } else {
            out.println(total + "," + ops + "," + ts + "," + fixed(total / seconds, 3) + "," + fixed(ops / seconds, 3));
        }
    }

    /** dump_buffer: 16 bytes a line, "%08x:  " offset, hex bytes, then the alphanumeric ones (others as '.'). */
    static void dump(PrintWriter out, byte[] buf, int from, long offset, long len) {
        StringBuilder sb = new StringBuilder(80);
        for (long i = 0; i < len; i += 16) {
            sb.setLength(0);
            String hex = Long.toHexString(offset + i);
            for (int z = hex.length(); z < 8; z++) {
                sb.append('0');
            }
            sb.append(hex).append(":  ");
            int line = (int) Math.min(16, len - i);
            for (int j = 0; j < line; j++) {
                int b = buf[from + (int) i + j] & 0xff;
                sb.append(Character.forDigit(b >> 4, 16)).append(Character.forDigit(b & 15, 16)).append(' ');
            }
            sb.append(' ');
            for (int j = 0; j < line; j++) {
                int b = buf[from + (int) i + j] & 0xff;
                boolean alnum = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z');
                sb.append(alnum ? (char) b : '.');
            }
            out.println(sb);
        }
    }

    /** printf("%.Nf") as glibc: the exact binary value rounded half to even; "inf" and "nan" spelled as glibc. */
    static String fixed(double v, int decimals) {
        if (Double.isNaN(v)) {
            return "nan";
        }
        if (Double.isInfinite(v)) {
            return v > 0 ? "inf" : "-inf";
        }
        return new BigDecimal(v).setScale(decimals, RoundingMode.HALF_EVEN).toPlainString();
    }

    private static String padded(String s, int width) {
        StringBuilder sb = new StringBuilder();
        for (int i = s.length(); i < width; i++) {
            sb.append('0');
        }
        return sb.append(s).toString();
    }

    private static String two(long v) {
        return v < 10 ? "0" + v : Long.toString(v);
    }

    private static boolean isDigit(char c) {
        return c >= '0' && c <= '9';
    }

    private static int skipSpace(String s, int i) {
        while (i < s.length() && " \t\n\u000b\f\r".indexOf(s.charAt(i)) >= 0) {
            i++;
        }
        return i;
    }
}
