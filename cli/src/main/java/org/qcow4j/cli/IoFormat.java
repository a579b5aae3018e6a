package org.qcow4j.cli;

import java.io.PrintWriter;

/**
 * qemu-io's (QEMU 7.2) output, byte for byte: the report lines ({@code cvtstr}, {@code timestr},
 * {@code print_report}) and {@code dump_buffer}. Floating point is printed as glibc's printf prints it
 * ({@link CPrintf}). (Numbers are read by {@link QemuNumbers}.)
 */
final class IoFormat {
    /** QEMU's BDRV_REQUEST_MAX_BYTES: the largest single request. */
    static final long REQUEST_MAX_BYTES = 2147483136L;

    /** cvtstr's units: KiB is 2^10, each next one 2^10 times more. */
    private static final String[] CVTSTR_UNITS = {" KiB", " MiB", " GiB", " TiB", " PiB", " EiB"};

    private IoFormat() {
    }

    /** cvtstr: a byte count (or rate) as qemu-io prints it: "4 KiB", "1.500 MiB", "512 bytes". */
    static String cvtstr(double value) {
        // qemu-io tries EiB, PiB, ... KiB in turn: the largest unit not above the value, with 3 decimals.
        for (int i = CVTSTR_UNITS.length - 1; i >= 0; i--) {
            double unit = Math.scalb(1.0, 10 * (i + 1));
            if (value >= unit) {
                return trimmed(CPrintf.fixed(value / unit, 3)) + CVTSTR_UNITS[i];
            }
        }
        return trimmed(CPrintf.fixed(value, 6)) + " bytes";
    }

    /** The number up to ".000" if it has that (cvtstr's "4.000 KiB" is "4 KiB"). */
    private static String trimmed(String s) {
        int trim = s.indexOf(".000");
        return trim >= 0 ? s.substring(0, trim) : s;
    }

    /** timestr: "00.00 sec" under a second, "H:MM:SS.ss" beyond (and always with -C). */
    static String timestr(long nanos, boolean verbose) {
        long sec = nanos / 1_000_000_000L;
        double frac = (nanos % 1_000_000_000L) / 1e9;
        if (verbose || sec != 0) {
            return (sec / 3600) + ":" + two(sec % 3600 / 60) + ":" + padded(CPrintf.fixed(sec % 60 + frac, 2), 5);
        }
        return padded(CPrintf.fixed(frac, 2), 5) + " sec";
    }

    /** print_report: the "read 4096/4096 bytes at offset 0" line and its statistics (or the -C line). */
    static void report(PrintWriter out, String op, long nanos, long offset, long count, long total, int ops, boolean csv) {
        long t = Math.max(nanos, 1);
        double seconds = (t / 1_000_000_000L) + (t % 1_000_000_000L) / 1e9;
        String ts = timestr(t, csv);
        if (!csv) {
            out.println(op + " " + total + "/" + count + " bytes at offset " + offset);
            out.println(cvtstr(total) + ", " + ops + " ops; " + ts + " (" + cvtstr(total / seconds) + "/sec and "
                    + CPrintf.fixed(ops / seconds, 4) + " ops/sec)");
        } else {
            out.println(total + "," + ops + "," + ts + "," + CPrintf.fixed(total / seconds, 3) + ","
                    + CPrintf.fixed(ops / seconds, 3));
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
}
