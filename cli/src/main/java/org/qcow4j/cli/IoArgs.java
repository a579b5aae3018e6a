package org.qcow4j.cli;

import java.io.PrintWriter;
import java.math.BigInteger;
import java.util.List;

/**
 * The arguments of read, write, discard and truncate, parsed and checked as qemu-io does before it touches the
 * image: the options ({@link IoGetopt}), the numbers (cvtnum), the pattern byte, the operands, and the checks
 * between them, with qemu-io's messages in qemu-io's order. A command given bad arguments is {@link Refused}.
 */
final class IoArgs {
    /** A command given bad arguments: the (negative) errno it returns, its message already printed. */
    static final class Refused extends Exception {
        private static final long serialVersionUID = 1L;
        final int errno;

        Refused(int errno) {
            super(null, null, false, false);
            this.errno = errno;
        }
    }

    /** read's arguments; {@code verify} is -P, the {@code pattern} then expected over the verification range. */
    record Read(long offset, long count, boolean csv, boolean quiet, boolean dump, boolean vmstate, boolean verify,
                int pattern, long patternOffset, long patternCount) {
    }

    /** write's arguments: zeroes (-z), the bytes of {@code sourceFile} (-s) or else the {@code pattern}. */
    record Write(long offset, long count, boolean csv, boolean quiet, boolean vmstate, boolean compressed,
                 boolean fua, boolean zero, boolean unmap, int pattern, String sourceFile) {
    }

    record Discard(long offset, long count, boolean csv, boolean quiet) {
    }

    /** truncate's arguments: the new size and the preallocation mode (-m), one of qemu's four. */
    record Truncate(long size, String mode) {
    }

    /** The offset and length operands ("off len") of read, write and discard. */
    private record Request(long offset, long count) {
    }

    private final PrintWriter out;
    private final Stderr err;
    /** {@code -q}: every command as if given {@code -q}. */
    private final boolean quiet;

    /**
     * The options read, write and discard share, as the commands' getopt loops set them: -C, -q, and for read and
     * write -b, -P and -p.
     */
    private final class Shared {
        boolean csv;
        boolean quiet = IoArgs.this.quiet;
        boolean vmstate;
        boolean patternFlag;
        int pattern;

        Shared(int pattern) {
            this.pattern = pattern;
        }

        void take(IoGetopt.Opt o) throws Refused {
            switch (o.letter()) {
                case 'b' -> vmstate = true;
                case 'C' -> csv = true;
                case 'P' -> {
                    patternFlag = true;
                    pattern = pattern(o.value());
                }
                case 'q' -> quiet = true;
                default -> { } // 'p': ignored for backwards compatibility
            }
        }
    }

    IoArgs(PrintWriter out, Stderr err, boolean quiet) {
        this.out = out;
        this.err = err;
        this.quiet = quiet;
    }

    Read read(List<String> argv) throws Refused {
        boolean dump = false;
        boolean startFlag = false;
        boolean lengthFlag = false;
        long patternOffset = 0;
        long patternCount = 0;
        Shared s = new Shared(0);
        IoGetopt g = IoGetopt.parse(argv, "bCl:pP:qs:v");
        for (IoGetopt.Opt o : g.options()) {
            switch (o.letter()) {
                case 'l' -> {
                    lengthFlag = true;
                    patternCount = number(o.value());
                }
                case 's' -> {
                    startFlag = true;
                    patternOffset = number(o.value());
                }
                case 'v' -> dump = true;
                default -> s.take(o);
            }
        }
        checkOperands(g, IoCommands.READ, 2);
        Request r = request(g, "");
        long offset = r.offset();
        long count = r.count();
        if (!s.patternFlag && (lengthFlag || startFlag)) {
            throw new Refused(IoCommands.READ.usage(out));
        }
        if (!lengthFlag) {
            patternCount = count - patternOffset;
        }
        if (patternCount < 0 || patternCount + patternOffset > count) {
            out.println("pattern verification range exceeds end of read data");
            throw new Refused(IoErrno.EINVAL);
        }
        if (s.vmstate) {
            sectorAligned(offset, count);
        }
        return new Read(offset, count, s.csv, s.quiet, dump, s.vmstate, s.patternFlag, s.pattern, patternOffset,
                patternCount);
    }

    Write write(List<String> argv) throws Refused {
        boolean zero = false;
        boolean compressed = false;
        boolean fua = false;
        boolean noFallback = false;
        boolean unmap = false;
        String fileName = null;
        Shared s = new Shared(0xcd);
        IoGetopt g = IoGetopt.parse(argv, "bcCfnpP:qs:uz");
        for (IoGetopt.Opt o : g.options()) {
            switch (o.letter()) {
                case 'c' -> compressed = true;
                case 'f' -> fua = true;
                case 'n' -> noFallback = true;
                case 's' -> fileName = o.value();
                case 'u' -> unmap = true;
                case 'z' -> zero = true;
                default -> s.take(o);
            }
        }
        checkOperands(g, IoCommands.WRITE, 2);
        boolean fileFlag = fileName != null;
        if (s.vmstate && zero) {
            refuse("-b and -z cannot be specified at the same time");
        }
        if (fua && (s.vmstate || compressed)) {
            refuse("-f and -b or -c cannot be specified at the same time");
        }
        if (noFallback && !zero) {
            refuse("-n requires -z to be specified");
        }
        if (unmap && !zero) {
            refuse("-u requires -z to be specified");
        }
        if ((zero ? 1 : 0) + (s.patternFlag ? 1 : 0) + (fileFlag ? 1 : 0) > 1) {
            refuse("Only one of -z, -P, and -s can be specified at the same time");
        }
        Request r = request(g, noFallback ? null : " without -n");
        long offset = r.offset();
        long count = r.count();
        if (s.vmstate || compressed) {
            sectorAligned(offset, count);
        }
        return new Write(offset, count, s.csv, s.quiet, s.vmstate, compressed, fua, zero, unmap, s.pattern, fileName);
    }

    Discard discard(List<String> argv) throws Refused {
        Shared s = new Shared(0);
        IoGetopt g = IoGetopt.parse(argv, "Cq");
        for (IoGetopt.Opt o : g.options()) {
            s.take(o);
        }
        checkOperands(g, IoCommands.DISCARD, 2);
        Request r = request(g, "");
        return new Discard(r.offset(), r.count(), s.csv, s.quiet);
    }

    Truncate truncate(List<String> argv) throws Refused {
        String mode = "off";
        IoGetopt g = IoGetopt.parse(argv, "m:");
        for (IoGetopt.Opt o : g.options()) {
            if (!List.of("off", "metadata", "falloc", "full").contains(o.value())) {
                err.error("Invalid preallocation mode '" + o.value() + "'");
                throw new Refused(IoErrno.EINVAL);
            }
            mode = o.value();
        }
        checkOperands(g, IoCommands.TRUNCATE, -1);
        // qemu-io takes the first operand and names argv[1] in its parse error (even when that is "-m").
        long size = number(g.operands().isEmpty() ? null : g.operands().get(0), argv.get(1));
        return new Truncate(size, mode);
    }

    /** A check between the options failed: its line on stdout, EINVAL. */
    private void refuse(String message) throws Refused {
        out.println(message);
        throw new Refused(IoErrno.EINVAL);
    }

    /**
     * After getopt: its error, or (when {@code operands} is not -1) another number of operands, prints the usage
     * line and refuses the command, as every command with options does.
     */
    private void checkOperands(IoGetopt g, IoCommands command, int operands) throws Refused {
        if (g.error() != null) {
            err.println(g.error());
        }
        if (g.error() != null || (operands != -1 && g.operands().size() != operands)) {
            throw new Refused(command.usage(out));
        }
    }

    /**
     * The "off len" operands, checked in qemu-io's order: the offset, the length, then the length against
     * BDRV_REQUEST_MAX_BYTES, unless {@code limit} is null; else {@code limit} ends the message's first part (write's
     * " without -n").
     */
    private Request request(IoGetopt g, String limit) throws Refused {
        long offset = number(g.operands().get(0));
        String countArg = g.operands().get(1);
        long count = number(countArg);
        if (limit != null && count > IoFormat.REQUEST_MAX_BYTES) {
            out.println("length cannot exceed " + IoFormat.REQUEST_MAX_BYTES + limit + ", given " + countArg);
            throw new Refused(IoErrno.EINVAL);
        }
        return new Request(offset, count);
    }

    /** With -b (and write's -c) qemu-io wants whole sectors before it says that is not supported. */
    private void sectorAligned(long offset, long count) throws Refused {
        if (offset % 512 != 0) {
            refuse(offset + " is not a sector-aligned value for 'offset'");
        }
        if (count % 512 != 0) {
            refuse(count + " is not a sector-aligned value for 'count'");
        }
    }

    private long number(String arg) throws Refused {
        return number(arg, arg);
    }

    /**
     * qemu-io's cvtnum (qemu_strtosz, its warning on stderr) of {@code arg}, null being EINVAL; on failure
     * print_cvtnum_err's line on stdout, naming {@code named}.
     */
    private long number(String arg, String named) throws Refused {
        long v = arg == null ? QemuNumbers.EINVAL : QemuNumbers.strtosz(arg, warning -> err.error(warning));
        if (v == QemuNumbers.EINVAL) {
            out.println("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- " + named);
        } else if (v == QemuNumbers.ERANGE) {
            out.println("Parsing error: argument too large -- " + named);
        }
        if (v < 0) {
            throw new Refused((int) v);
        }
        return v;
    }

    /** parse_pattern: {@code strtol(arg, &end, 0)} must be 0..255 with nothing left over (an empty arg is 0, as in C). */
    private int pattern(String arg) throws Refused {
        QemuNumbers.Strtoull p = QemuNumbers.strtoull(arg, 0);
        if (p.end() != arg.length() || (p.negative() && p.magnitude().signum() != 0)
                || p.magnitude().compareTo(BigInteger.valueOf(255)) > 0) {
            out.println(arg + " is not a valid pattern byte");
            throw new Refused(IoErrno.EINVAL);
        }
        return p.magnitude().intValue();
    }
}
