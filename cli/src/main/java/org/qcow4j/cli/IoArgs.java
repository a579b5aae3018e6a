package org.qcow4j.cli;

import java.io.PrintWriter;
import java.math.BigInteger;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The arguments of qemu-io's commands, parsed and checked as qemu-io does before it touches the image: the options
 * ({@link IoGetopt}), the numbers (cvtnum), the pattern byte, the operands, the buffers' lengths, the option strings
 * ({@link QemuOpts}), and the checks between them, with qemu-io's messages in qemu-io's order. A command given bad
 * arguments is {@link Refused}.
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

    /**
     * The arguments of readv, writev, aio_read and aio_write: the offset and the buffers' lengths (one request of
     * their {@code total}); {@code verify}: -P for reads, the {@code pattern} expected (reads) or written; {@code fua}
     * -f; for aio_write {@code zero} (-z, one length) and {@code unmap} (-u).
     */
    record Vector(long offset, long total, boolean csv, boolean quiet, boolean dump, boolean verify, int pattern,
                  boolean fua, boolean zero, boolean unmap) {
    }

    /** alloc's arguments: the offset and the byte count (512 when not given). */
    record Alloc(long offset, long count, String offsetArg) {
    }

    /**
     * open's arguments: the name operand (null: none, or with --image-opts the options came from it), the block
     * options of -o (and of the operand with --image-opts), and the flags.
     */
    record Open(String name, Map<String, String> options, IoOpen.Flags flags) {
    }

    /**
     * reopen's arguments: -r (false) or -w (true) or neither (null), the cache mode of -c (null: unchanged) and the
     * options of -o.
     */
    record Reopen(Boolean writable, String cache, Map<String, String> options) {
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

    /** readv: "CP:qv", the offset, then the lengths of its buffers. */
    Vector readv(List<String> argv) throws Refused {
        Shared s = new Shared(0);
        boolean dump = false;
        IoGetopt g = IoGetopt.parse(argv, "CP:qv");
        for (IoGetopt.Opt o : g.options()) {
            if (o.letter() == 'v') {
                dump = true;
            } else {
                s.take(o);
            }
        }
        atLeastTwoOperands(g, IoCommands.READV);
        long offset = number(g.operands().get(0));
        long total = lengths(g.operands().subList(1, g.operands().size()));
        return new Vector(offset, total, s.csv, s.quiet, dump, s.patternFlag, s.pattern, false, false, false);
    }

    /** writev: "CfqP:", the offset, then the lengths of its buffers. */
    Vector writev(List<String> argv) throws Refused {
        Shared s = new Shared(0xcd);
        boolean fua = false;
        IoGetopt g = IoGetopt.parse(argv, "CfqP:");
        for (IoGetopt.Opt o : g.options()) {
            if (o.letter() == 'f') {
                fua = true;
            } else {
                s.take(o);
            }
        }
        atLeastTwoOperands(g, IoCommands.WRITEV);
        long offset = number(g.operands().get(0));
        long total = lengths(g.operands().subList(1, g.operands().size()));
        return new Vector(offset, total, s.csv, s.quiet, false, false, s.pattern, fua, false, false);
    }

    /**
     * aio_read: "CP:iqv"; null after -i, which qemu-io handles as it meets it (the line printed, the command a
     * success).
     */
    Vector aioRead(List<String> argv) throws Refused {
        Shared s = new Shared(0);
        boolean dump = false;
        IoGetopt g = IoGetopt.parse(argv, "CP:iqv");
        for (IoGetopt.Opt o : g.options()) {
            switch (o.letter()) {
                case 'i' -> {
                    out.println("injecting invalid read request");
                    return null;
                }
                case 'v' -> dump = true;
                default -> s.take(o);
            }
        }
        atLeastTwoOperands(g, IoCommands.AIO_READ);
        long offset = number(g.operands().get(0));
        long total = lengths(g.operands().subList(1, g.operands().size()));
        return new Vector(offset, total, s.csv, s.quiet, dump, s.patternFlag, s.pattern, false, false, false);
    }

    /** aio_write: "CfiqP:uz", with its checks; null after -i (see {@link #aioRead}). */
    Vector aioWrite(List<String> argv) throws Refused {
        Shared s = new Shared(0xcd);
        boolean fua = false;
        boolean zero = false;
        boolean unmap = false;
        IoGetopt g = IoGetopt.parse(argv, "CfiqP:uz");
        for (IoGetopt.Opt o : g.options()) {
            switch (o.letter()) {
                case 'f' -> fua = true;
                case 'i' -> {
                    out.println("injecting invalid write request");
                    return null;
                }
                case 'u' -> unmap = true;
                case 'z' -> zero = true;
                default -> s.take(o);
            }
        }
        atLeastTwoOperands(g, IoCommands.AIO_WRITE);
        if (zero && g.operands().size() != 2) {
            refuse("-z supports only a single length parameter");
        }
        if (unmap && !zero) {
            refuse("-u requires -z to be specified");
        }
        // (qemu-io's "-z and -P cannot be specified at the same time" never shows: its aio_write forgets to note -P)
        long offset = number(g.operands().get(0));
        long total = zero ? number(g.operands().get(1)) : lengths(g.operands().subList(1, g.operands().size()));
        return new Vector(offset, total, s.csv, s.quiet, false, false, s.pattern, fua, zero, unmap);
    }

    /** After getopt: its error, or fewer than two operands, prints the usage line (readv, writev, aio_*). */
    private void atLeastTwoOperands(IoGetopt g, IoCommands command) throws Refused {
        if (g.error() != null) {
            err.println(g.error());
        }
        if (g.error() != null || g.operands().size() < 2) {
            throw new Refused(command.usage(out));
        }
    }

    /**
     * create_iovec: each length a number no larger than a request, their sum too; any failure is EINVAL (after its
     * message). Returns the sum.
     */
    private long lengths(List<String> args) throws Refused {
        long total = 0;
        for (String arg : args) {
            long len = QemuNumbers.strtosz(arg, warning -> err.error(warning));
            if (len < 0) {
                cvtnumError(len, arg);
                throw new Refused(IoErrno.EINVAL);
            }
            if (len > IoFormat.REQUEST_MAX_BYTES) {
                refuse("Argument '" + arg + "' exceeds maximum size " + IoFormat.REQUEST_MAX_BYTES);
            }
            if (total > IoFormat.REQUEST_MAX_BYTES - len) {
                refuse("The total number of bytes exceed the maximum size " + IoFormat.REQUEST_MAX_BYTES);
            }
            total += len;
        }
        return total;
    }

    /** alloc: "offset [count]", no options. */
    Alloc alloc(List<String> argv) throws Refused {
        long offset = number(argv.get(1));
        long count = argv.size() == 3 ? number(argv.get(2)) : 512;
        return new Alloc(offset, count, argv.get(1));
    }

    /** sleep: strtol(arg, &end, 0) must be a whole, non-negative number of milliseconds. */
    long sleep(List<String> argv) throws Refused {
        String arg = argv.get(1);
        QemuNumbers.Strtoull ms = QemuNumbers.strtoull(arg, 0);
        boolean negative = ms.negative() && ms.magnitude().signum() != 0;
        if (negative || (ms.end() != arg.length() && !arg.isEmpty())) {
            refuse(arg + " is not a valid number");
        }
        // strtol saturates at LONG_MAX: a sleep of that many milliseconds is a sleep for ever either way
        return ms.magnitude().bitLength() > 63 ? Long.MAX_VALUE : ms.magnitude().longValue();
    }

    /** sigraise: a number (cvtnum) no larger than NSIG (65). */
    int sigraise(List<String> argv) throws Refused {
        long sig = number(argv.get(1));
        if (sig > 65) {
            refuse("signal argument '" + argv.get(1) + "' is too large to be a valid signal");
        }
        return (int) sig;
    }

    /**
     * open: "snCro:ki:t:d:U" handled in order as qemu-io's getopt loop does (a bad mode is refused where it stands),
     * then the path operand; with {@code imageOpts} the operand is an option string merged into -o's (which
     * --image-opts forbids).
     */
    Open open(List<String> argv, boolean imageOpts) throws Refused {
        IoOpen.Flags f = new IoOpen.Flags();
        Map<String, String> options = new LinkedHashMap<>();
        IoGetopt g = IoGetopt.parse(argv, "snCro:ki:t:d:U");
        for (IoGetopt.Opt o : g.options()) {
            switch (o.letter()) {
                case 's' -> f.snapshot = true;
                case 'n' -> {
                    f.nocache = true;
                    f.writethrough = false;
                }
                case 'C' -> f.copyOnRead = true;
                case 'r' -> f.readOnly = true;
                case 'k' -> f.nativeAio = true;
                case 't' -> {
                    if (!f.cacheMode(o.value())) {
                        errorRefuse("Invalid cache option: " + o.value());
                    }
                }
                case 'd' -> {
                    if (!f.discardMode(o.value())) {
                        errorRefuse("Invalid discard option: " + o.value());
                    }
                }
                case 'i' -> {
                    if (!f.aioMode(o.value())) {
                        errorRefuse("Invalid aio option: " + o.value());
                    }
                }
                case 'o' -> {
                    if (imageOpts) {
                        refuse("--image-opts and 'open -o' are mutually exclusive");
                    }
                    options.putAll(options(o.value(), QemuOpts.Kind.MERGED));
                }
                default -> f.forceShare = true; // 'U'
            }
        }
        checkOperands(g, IoCommands.OPEN, -1);
        List<String> operands = g.operands();
        if (imageOpts && operands.size() == 1) {
            options.putAll(options(operands.get(0), QemuOpts.Kind.MERGED));
            return new Open(null, options, f);
        }
        if (operands.size() > 1) {
            throw new Refused(IoCommands.OPEN.usage(out));
        }
        return new Open(operands.isEmpty() ? null : operands.get(0), options, f);
    }

    /** reopen: "c:o:rw" in order, no operands. */
    Reopen reopen(List<String> argv) throws Refused {
        Boolean writable = null;
        String cache = null;
        Map<String, String> options = new LinkedHashMap<>();
        IoGetopt g = IoGetopt.parse(argv, "c:o:rw");
        for (IoGetopt.Opt o : g.options()) {
            switch (o.letter()) {
                case 'c' -> {
                    if (!new IoOpen.Flags().cacheMode(o.value())) {
                        errorRefuse("Invalid cache option: " + o.value());
                    }
                    cache = o.value();
                }
                case 'o' -> options.putAll(options(o.value(), QemuOpts.Kind.MERGED));
                default -> {
                    if (writable != null) {
                        errorRefuse("Only one -r/-w option may be given");
                    }
                    writable = o.letter() == 'w';
                }
            }
        }
        checkOperands(g, IoCommands.REOPEN, 0);
        return new Reopen(writable, cache, options);
    }

    /** An option string (-o) parsed as qemu-io's option lists do, its warnings and errors on stderr. */
    Map<String, String> options(String text, QemuOpts.Kind kind) throws Refused {
        try {
            return QemuOpts.parse(text, null, kind, this::warning);
        } catch (QemuOpts.Invalid e) {
            err.error(e.getMessage());
            if (e.hint() != null) {
                err.println(e.hint());
            }
            throw new Refused(IoErrno.EINVAL);
        }
    }

    /** A deprecation warning's lines: "warning: ..." prefixed with the program's name, the next one as it is. */
    private void warning(String line) {
        if (line.startsWith("warning: ")) {
            err.error(line);
        } else {
            err.println(line);
        }
    }

    /** A check failed with an error_report line on stderr: EINVAL. */
    private void errorRefuse(String message) throws Refused {
        err.error(message);
        throw new Refused(IoErrno.EINVAL);
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
        if (v < 0) {
            cvtnumError(v, named);
            throw new Refused((int) v);
        }
        return v;
    }

    /** print_cvtnum_err's line on stdout. */
    private void cvtnumError(long v, String named) {
        if (v == QemuNumbers.EINVAL) {
            out.println("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- " + named);
        } else if (v == QemuNumbers.ERANGE) {
            out.println("Parsing error: argument too large -- " + named);
        } else {
            out.println("Parsing error: " + named);
        }
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
