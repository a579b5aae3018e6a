package org.qcow4j.cli;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.qcow4j.DiskImage;
import org.qcow4j.QcowException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WritableImage;
import org.qcow4j.WriteRefusedException;

/**
 * The command interpreter of {@code io}: qemu-io's (QEMU 7.2) commands read, write, discard, flush, truncate,
 * length, help, quit and abort, with qemu-io's options, checks, messages and their order, on stdout and stderr as
 * qemu-io prints them. A command returns 0 or a negative errno, as in qemu-io; any failure makes the exit code 1.
 */
final class IoShell {
    static final int EPERM = -1;
    static final int EIO = -5;
    static final int ENOMEM = -12;
    static final int EACCES = -13;
    static final int EINVAL = -22;
    static final int ENOSPC = -28;
    static final int EROFS = -30;
    static final int ENOTSUP = -95;

    /** Reads are done in pieces of this size (unless dumped with -v), so a 2 GiB read needs no 2 GiB buffer. */
    private static final int READ_CHUNK = 4 << 20;

    /** One command: qemu-io's cmdinfo_t. */
    private record Cmd(String name, String altname, int argmin, int argmax, boolean global, boolean noFileOk,
                       boolean writes, String args, String oneline, String help, Handler handler) {
    }

    @FunctionalInterface
    private interface Handler {
        int run(List<String> argv) throws IOException, Refused;
    }

    /** A command given bad arguments: the (negative) errno it returns, its message already printed. */
    private static final class Refused extends Exception {
        private static final long serialVersionUID = 1L;
        private final int errno;

        Refused(int errno) {
            super(null, null, false, false);
            this.errno = errno;
        }
    }

    /** The offset and length operands ("off len") of read, write and discard. */
    private record Request(long offset, long count) {
    }

    private final DiskImage image;
    private final WritableImage writable;
    private final PrintWriter out;
    private final PrintWriter err;
    private final boolean quiet;
    private final boolean debug;
    private final Runnable abort;
    private final List<Cmd> commands;
    private boolean quit;
    private boolean failed;

    /**
     * @param image    the open image, or null (commands that need one say so)
     * @param quiet    {@code -q}: every command as if given {@code -q}
     * @param abort    what {@code abort} does after flushing the output (the process ends, image untouched)
     */
    IoShell(DiskImage image, PrintWriter out, PrintWriter err, boolean quiet, boolean debug, Runnable abort) {
        this.image = image;
        this.writable = image instanceof WritableImage w && !w.readOnly() ? w : null;
        this.out = out;
        this.err = err;
        this.quiet = quiet;
        this.debug = debug;
        this.abort = abort;
        // Sorted by name, as qemu-io's table.
        this.commands = List.of(
                new Cmd("abort", null, 0, 0, false, true, false, null, "simulate a program crash using abort(3)", null,
                        this::abortCmd),
                new Cmd("discard", "d", 2, -1, false, false, true, "[-Cq] off len",
                        "discards a number of bytes at a specified offset", DISCARD_HELP, this::discard),
                new Cmd("flush", "f", 0, 0, false, false, false, null, "flush all in-core file state to disk", null,
                        this::flush),
                new Cmd("help", "?", 0, 1, true, false, false, "[command]", "help for one or all commands", null, this::help),
                new Cmd("length", "l", 0, 0, false, false, false, null, "gets the length of the current file", null,
                        this::length),
                new Cmd("quit", "q", -1, -1, true, false, false, null, "exit the program", null, argv -> {
                    quit = true;
                    return 0;
                }),
                new Cmd("read", "r", 2, -1, false, false, false, "[-abCqv] [-P pattern [-s off] [-l len]] off len",
                        "reads a number of bytes at a specified offset", READ_HELP, this::read),
                new Cmd("truncate", "t", 1, 3, false, false, true, "[-m prealloc_mode] off",
                        "truncates the current file at the given offset", null, this::truncate),
                new Cmd("write", "w", 2, -1, false, false, true, "[-bcCfnquz] [-P pattern | -s source_file] off len",
                        "writes a number of bytes at a specified offset", WRITE_HELP, this::write));
    }

    /** Whether {@code quit} was run: no more commands. */
    boolean quit() {
        return quit;
    }

    /** Whether any command failed (qemu-io then exits with 1). */
    boolean failed() {
        return failed;
    }

    /** Runs one command line (qemu-io's qemuio_command); returns 0 or a negative errno. */
    int execute(String line) {
        List<String> argv = breakline(line);
        if (argv.isEmpty()) {
            return 0;
        }
        int ret;
        Cmd ct = find(argv.get(0));
        if (ct == null) {
            err.println("command \"" + argv.get(0) + "\" not found");
            ret = EINVAL;
        } else {
            ret = command(ct, argv);
        }
        if (ret < 0) {
            failed = true;
        }
        return ret;
    }

    /** Words separated by single spaces, empty ones skipped (qemu-io's breakline: tabs are not separators). */
    static List<String> breakline(String line) {
        List<String> words = new ArrayList<>();
        int start = 0;
        while (start <= line.length()) {
            int sp = line.indexOf(' ', start);
            int end = sp < 0 ? line.length() : sp;
            if (end > start) {
                words.add(line.substring(start, end));
            }
            start = end + 1;
        }
        return words;
    }

    private Cmd find(String name) {
        for (Cmd c : commands) {
            if (c.name().equals(name) || name.equals(c.altname())) {
                return c;
            }
        }
        return null;
    }

    private int command(Cmd ct, List<String> argv) {
        String cmd = argv.get(0);
        if (!ct.global() && !ct.noFileOk() && image == null) {
            err.println("no file open");
            return EINVAL;
        }
        int n = argv.size() - 1;
        if (n < ct.argmin() || (ct.argmax() != -1 && n > ct.argmax())) {
            if (ct.argmax() == -1) {
                err.println("bad argument count " + n + " to " + cmd + ", expected at least " + ct.argmin() + " arguments");
            } else if (ct.argmin() == ct.argmax()) {
                err.println("bad argument count " + n + " to " + cmd + ", expected " + ct.argmin() + " arguments");
            } else {
                err.println("bad argument count " + n + " to " + cmd + ", expected between " + ct.argmin() + " and "
                        + ct.argmax() + " arguments");
            }
            return EINVAL;
        }
        if (ct.writes() && writable == null) {
            // qemu-io asks for the write permission before running the command.
            err.println("qcow4j: Block node is read-only");
            return EPERM;
        }
        try {
            return ct.handler().run(argv);
        } catch (Refused r) {
            return r.errno;
        } catch (IOException | RuntimeException | OutOfMemoryError e) {
            // Only the I/O itself is expected to fail (reported by the commands); anything else is reported here.
            return ioError(ct.name(), e, false);
        }
    }

    private int usage(String name) {
        Cmd ct = find(name);
        out.println(ct.name() + " " + ct.args() + " -- " + ct.oneline());
        return EINVAL;
    }

    /**
     * After getopt: its error, or (when {@code operands} is not -1) another number of operands, prints the usage
     * line and refuses the command, as every command with options does.
     */
    private void checkOperands(IoGetopt g, String name, int operands) throws Refused {
        if (g.error() != null) {
            err.println(g.error());
        }
        if (g.error() != null || (operands != -1 && g.operands().size() != operands)) {
            throw new Refused(usage(name));
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
            throw new Refused(EINVAL);
        }
        return new Request(offset, count);
    }

    private long number(String arg) throws Refused {
        return number(arg, arg);
    }

    /**
     * qemu-io's cvtnum (qemu_strtosz, its warning on stderr) of {@code arg}, null being EINVAL; on failure
     * print_cvtnum_err's line on stdout, naming {@code named}.
     */
    private long number(String arg, String named) throws Refused {
        long v = arg == null ? QemuNumbers.EINVAL : QemuNumbers.strtosz(arg, warning -> err.println("qcow4j: " + warning));
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
            throw new Refused(EINVAL);
        }
        return p.magnitude().intValue();
    }

    /** qemu-io's "read failed: Input/output error" line for a request refused before or by the I/O. */
    private int failed(String op, int errno) {
        out.println(op + " failed: " + strerror(errno));
        return errno;
    }

    // ---------------------------------------------------------------- read

    private static final String READ_HELP = """

             reads a range of bytes from the given offset

             Example:
             'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file

             Reads a segment of the currently open file, optionally dumping it to the
             standard output stream (with -v option) for subsequent inspection.
             -b, -- read from the VM state rather than the virtual disk (not supported)
             -C, -- report statistics in a machine parsable format
             -l, -- length for pattern verification (only with -P)
             -p, -- ignored for backwards compatibility
             -P, -- use a pattern to verify read data
             -q, -- quiet mode, do not show I/O statistics
             -s, -- start offset for pattern verification (only with -P)
             -v, -- dump buffer to standard output
            """;

    private int read(List<String> argv) throws IOException, Refused {
        boolean csv = false;
        boolean q = quiet;
        boolean dump = false;
        boolean patternFlag = false;
        boolean startFlag = false;
        boolean lengthFlag = false;
        boolean vmstate = false;
        int pattern = 0;
        long patternOffset = 0;
        long patternCount = 0;
        IoGetopt g = IoGetopt.parse(argv, "bCl:pP:qs:v");
        for (IoGetopt.Opt o : g.options()) {
            switch (o.letter()) {
                case 'b' -> vmstate = true;
                case 'C' -> csv = true;
                case 'l' -> {
                    lengthFlag = true;
                    patternCount = number(o.value());
                }
                case 'P' -> {
                    patternFlag = true;
                    pattern = pattern(o.value());
                }
                case 'q' -> q = true;
                case 's' -> {
                    startFlag = true;
                    patternOffset = number(o.value());
                }
                case 'v' -> dump = true;
                default -> { } // 'p': ignored for backwards compatibility
            }
        }
        checkOperands(g, "read", 2);
        Request r = request(g, "");
        long offset = r.offset();
        long count = r.count();
        if (!patternFlag && (lengthFlag || startFlag)) {
            return usage("read");
        }
        if (!lengthFlag) {
            patternCount = count - patternOffset;
        }
        if (patternCount < 0 || patternCount + patternOffset > count) {
            out.println("pattern verification range exceeds end of read data");
            return EINVAL;
        }
        if (vmstate) {
            if (!sectorAligned(offset, count)) {
                return EINVAL;
            }
            return failed("read", ENOTSUP);
        }
        if (!inRange(offset, count)) {
            return failed("read", EIO);
        }

        boolean whole = dump && !q;
        byte[] buf;
        try {
            buf = new byte[(int) (whole ? count : Math.min(count, READ_CHUNK))];
        } catch (OutOfMemoryError e) {
            return failed("read", ENOMEM);
        }
        byte[] expected = patternFlag ? filled(Math.min(buf.length, patternCount), pattern) : null;
        boolean mismatch = false;
        long nanos = 0;
        for (long done = 0; done < count; ) {
            int n = (int) Math.min(count - done, whole ? count : READ_CHUNK);
            int at = whole ? (int) done : 0;
            long t1 = System.nanoTime();
            try {
                image.read(ByteBuffer.wrap(buf, at, n), offset + done);
            } catch (IOException | RuntimeException e) {
                return ioError("read", e, true);
            }
            nanos += System.nanoTime() - t1;
            if (patternFlag && !mismatch) {
                mismatch = !matches(buf, at, done, n, patternOffset, patternCount, expected);
            }
            done += n;
        }
        int ret = 0;
        if (mismatch) {
            out.println("Pattern verification failed at offset " + (offset + patternOffset) + ", " + patternCount + " bytes");
            ret = EINVAL;
        }
        if (q) {
            return ret;
        }
        if (dump) {
            IoFormat.dump(out, buf, 0, offset, count);
        }
        IoFormat.report(out, "read", nanos, offset, count, count, 1, csv);
        return ret;
    }

    /** Whether the piece {@code buf[at, at+n)} (at {@code done} in the request) holds the pattern where it should. */
    private static boolean matches(byte[] buf, int at, long done, int n, long patternOffset, long patternCount, byte[] expected) {
        long from = Math.max(done, patternOffset);
        long to = Math.min(done + n, patternOffset + patternCount);
        for (long p = from; p < to; ) {
            int len = (int) Math.min(to - p, expected.length);
            int start = at + (int) (p - done);
            if (Arrays.mismatch(buf, start, start + len, expected, 0, len) >= 0) {
                return false;
            }
            p += len;
        }
        return true;
    }

    private static byte[] filled(long length, int value) {
        byte[] b = new byte[(int) Math.max(1, length)];
        Arrays.fill(b, (byte) value);
        return b;
    }

    private boolean sectorAligned(long offset, long count) {
        if (offset % 512 != 0) {
            out.println(offset + " is not a sector-aligned value for 'offset'");
            return false;
        }
        if (count % 512 != 0) {
            out.println(count + " is not a sector-aligned value for 'count'");
            return false;
        }
        return true;
    }

    /** The block layer's request check: past the end of the image is EIO. */
    private boolean inRange(long offset, long count) {
        long size = image.size();
        return offset >= 0 && count >= 0 && offset <= size && size - offset >= count;
    }

    // ---------------------------------------------------------------- write

    private static final String WRITE_HELP = """

             writes a range of bytes from the given offset

             Example:
             'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file

             Writes into a segment of the currently open file, using a buffer
             filled with a set pattern (0xcdcdcdcd).
             -b, -- write to the VM state rather than the virtual disk (not supported)
             -c, -- write compressed data (not supported)
             -f, -- use Force Unit Access semantics (the write is flushed)
             -n, -- with -z, don't allow slow fallback (accepted, no effect)
             -p, -- ignored for backwards compatibility
             -P, -- use different pattern to fill file
             -s, -- use a pattern file to fill the write buffer
             -C, -- report statistics in a machine parsable format
             -q, -- quiet mode, do not show I/O statistics
             -u, -- with -z, allow unmapping
             -z, -- write zeroes
            """;

    private int write(List<String> argv) throws IOException, Refused {
        boolean csv = false;
        boolean q = quiet;
        boolean vmstate = false;
        boolean patternFlag = false;
        boolean zero = false;
        boolean compressed = false;
        boolean fileFlag = false;
        boolean fua = false;
        boolean noFallback = false;
        boolean unmap = false;
        int pattern = 0xcd;
        String fileName = null;
        IoGetopt g = IoGetopt.parse(argv, "bcCfnpP:qs:uz");
        for (IoGetopt.Opt o : g.options()) {
            switch (o.letter()) {
                case 'b' -> vmstate = true;
                case 'c' -> compressed = true;
                case 'C' -> csv = true;
                case 'f' -> fua = true;
                case 'n' -> noFallback = true;
                case 'P' -> {
                    patternFlag = true;
                    pattern = pattern(o.value());
                }
                case 'q' -> q = true;
                case 's' -> {
                    fileFlag = true;
                    fileName = o.value();
                }
                case 'u' -> unmap = true;
                case 'z' -> zero = true;
                default -> { } // 'p': ignored for backwards compatibility
            }
        }
        checkOperands(g, "write", 2);
        if (vmstate && zero) {
            out.println("-b and -z cannot be specified at the same time");
            return EINVAL;
        }
        if (fua && (vmstate || compressed)) {
            out.println("-f and -b or -c cannot be specified at the same time");
            return EINVAL;
        }
        if (noFallback && !zero) {
            out.println("-n requires -z to be specified");
            return EINVAL;
        }
        if (unmap && !zero) {
            out.println("-u requires -z to be specified");
            return EINVAL;
        }
        if ((zero ? 1 : 0) + (patternFlag ? 1 : 0) + (fileFlag ? 1 : 0) > 1) {
            out.println("Only one of -z, -P, and -s can be specified at the same time");
            return EINVAL;
        }
        Request r = request(g, noFallback ? null : " without -n");
        long offset = r.offset();
        long count = r.count();
        if ((vmstate || compressed) && !sectorAligned(offset, count)) {
            return EINVAL;
        }
        byte[] buf = null;
        if (!zero) {
            if (count > Integer.MAX_VALUE) {
                return failed("write", EINVAL); // only with -n, which needs -z
            }
            try {
                buf = fileFlag ? fromFile(fileName, (int) count) : filled(count, pattern);
            } catch (OutOfMemoryError e) {
                return failed("write", ENOMEM);
            }
            if (buf == null) {
                return EINVAL;
            }
        }
        if (vmstate || compressed) {
            return failed("write", ENOTSUP);
        }
        if (!inRange(offset, count)) {
            return failed("write", EIO);
        }
        long t1 = System.nanoTime();
        try {
            if (count > 0) {
                if (zero) {
                    writable.writeZeroes(offset, count, unmap);
                } else {
                    writable.write(ByteBuffer.wrap(buf, 0, (int) count), offset);
                }
            }
            if (fua) {
                writable.flush();
            }
        } catch (IOException | RuntimeException e) {
            return ioError("write", e, true);
        }
        long nanos = System.nanoTime() - t1;
        if (!q) {
            IoFormat.report(out, "wrote", nanos, offset, count, count, 1, csv);
        }
        return 0;
    }

    /** qemu_io_alloc_from_file: the file's first bytes, repeated to fill {@code count}; null after an error. */
    private byte[] fromFile(String name, int count) {
        byte[] buf = new byte[count];
        int n;
        try (InputStream in = Files.newInputStream(Path.of(name))) {
            n = in.readNBytes(buf, 0, count);
        } catch (IOException | RuntimeException e) {
            err.println(name + ": " + strerror(errno(e)));
            return null;
        }
        if (n == 0 && count > 0) {
            err.println(name + ": file is empty");
            return null;
        }
        for (int at = n; at < count; at += n) {
            System.arraycopy(buf, 0, buf, at, Math.min(n, count - at));
        }
        return buf;
    }

    // ---------------------------------------------------------------- discard

    private static final String DISCARD_HELP = """

             discards a range of bytes from the given offset

             Example:
             'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file

             Discards a segment of the currently open file.
             -C, -- report statistics in a machine parsable format
             -q, -- quiet mode, do not show I/O statistics
            """;

    private int discard(List<String> argv) throws IOException, Refused {
        boolean csv = false;
        boolean q = quiet;
        IoGetopt g = IoGetopt.parse(argv, "Cq");
        for (IoGetopt.Opt o : g.options()) {
            if (o.letter() == 'C') {
                csv = true;
            } else {
                q = true;
            }
        }
        checkOperands(g, "discard", 2);
        Request r = request(g, "");
        long offset = r.offset();
        long count = r.count();
        if (!inRange(offset, count)) {
            return failed("discard", EIO);
        }
        long t1 = System.nanoTime();
        try {
            if (count > 0) {
                writable.discard(offset, count);
            }
        } catch (IOException | RuntimeException e) {
            return ioError("discard", e, true);
        }
        long nanos = System.nanoTime() - t1;
        if (!q) {
            IoFormat.report(out, "discard", nanos, offset, count, count, 1, csv);
        }
        return 0;
    }

    // ---------------------------------------------------------------- truncate, length, flush

    private int truncate(List<String> argv) throws IOException, Refused {
        String mode = "off";
        IoGetopt g = IoGetopt.parse(argv, "m:");
        for (IoGetopt.Opt o : g.options()) {
            if (!List.of("off", "metadata", "falloc", "full").contains(o.value())) {
                err.println("qcow4j: Invalid preallocation mode '" + o.value() + "'");
                return EINVAL;
            }
            mode = o.value();
        }
        checkOperands(g, "truncate", -1);
        // qemu-io takes the first operand and names argv[1] in its parse error (even when that is "-m").
        long size = number(g.operands().isEmpty() ? null : g.operands().get(0), argv.get(1));
        boolean qcow2 = image.format().equals("qcow2");
        if (qcow2 && size % 512 != 0) {
            err.println("qcow4j: The new size must be a multiple of 512");
            return EINVAL;
        }
        if (qcow2 && !mode.equals("off") && size < image.size()) {
            err.println("qcow4j: Preallocation can't be used for shrinking an image");
            return EINVAL;
        }
        if (!mode.equals("off")) {
            err.println("qcow4j: Unsupported preallocation mode '" + mode + "'");
            return ENOTSUP;
        }
        long oldSize = image.size();
        if (version2WithBacking() && image.backing().size() > oldSize && size > alignUp(oldSize, clusterSize())) {
            // QEMU must zero the new clusters to hide a longer backing file, and a version 2 image has no zero flag
            // (qcow2_subcluster_zeroize's -ENOTSUP). The library grows it with zeros; io refuses as qemu-io does.
            err.println("qcow4j: Failed to zero out new clusters: " + strerror(ENOTSUP));
            return ENOTSUP;
        }
        try {
            writable.resize(size);
        } catch (IOException | RuntimeException e) {
            err.println("qcow4j: " + describe(e));
            debugTrace(e);
            return errno(e);
        }
        return 0;
    }

    private boolean version2WithBacking() {
        return image.backing() != null && image.qcow2().map(q -> q.header().version() == 2).orElse(false);
    }

    private long clusterSize() {
        return image.qcow2().orElseThrow().header().clusterSize();
    }

    private static long alignUp(long value, long alignment) {
        return (value + alignment - 1) / alignment * alignment;
    }

    private int length(List<String> argv) {
        out.println(IoFormat.cvtstr(image.size()));
        return 0;
    }

    private int flush(List<String> argv) throws IOException {
        if (writable != null) {
            try {
                writable.flush();
            } catch (IOException | RuntimeException e) {
                // qemu-io prints nothing for a failed flush; the exit code says it.
                err.println("qcow4j: " + describe(e));
                debugTrace(e);
                return errno(e);
            }
        }
        return 0;
    }

    private int abortCmd(List<String> argv) {
        out.flush();
        err.flush();
        abort.run();
        return 0;
    }

    // ---------------------------------------------------------------- help

    private int help(List<String> argv) {
        if (argv.size() < 2) {
            for (Cmd c : commands) {
                helpOneline(c.name(), c);
            }
            out.println();
            out.println("Use 'help commandname' for extended help.");
            return 0;
        }
        Cmd ct = find(argv.get(1));
        if (ct == null) {
            out.println("command " + argv.get(1) + " not found");
            return EINVAL;
        }
        helpOneline(argv.get(1), ct);
        if (ct.help() != null) {
            out.print(ct.help());
            out.println();
        }
        return 0;
    }

    private void helpOneline(String name, Cmd ct) {
        out.println(name + " " + (ct.args() != null ? ct.args() + " " : "") + "-- " + ct.oneline());
    }

    // ---------------------------------------------------------------- errors

    /**
     * A failed request: qemu-io's "read failed: Input/output error" line on stdout (when {@code report}), the
     * library's own message on stderr (QEMU would log it too, e.g. a corruption), the errno returned.
     */
    private int ioError(String op, Throwable e, boolean report) {
        int errno = errno(e);
        if (report) {
            failed(op, errno);
        }
        if (!(e instanceof OutOfMemoryError)) {
            err.println("qcow4j: " + describe(e));
        }
        debugTrace(e);
        return errno;
    }

    private void debugTrace(Throwable e) {
        if (debug) {
            e.printStackTrace(err);
        }
    }

    static int errno(Throwable e) {
        if (e instanceof OutOfMemoryError) {
            return ENOMEM;
        }
        if (e instanceof UnsupportedFeatureException) {
            return ENOTSUP;
        }
        if (e instanceof WriteRefusedException) {
            return EPERM;
        }
        if (e instanceof NoSuchFileException) {
            return -2;
        }
        if (e instanceof AccessDeniedException) {
            return EACCES;
        }
        if (e instanceof FileSystemException f && f.getReason() != null) {
            String r = f.getReason();
            if (r.contains("No space left")) {
                return ENOSPC;
            }
            if (r.contains("Read-only file system")) {
                return EROFS;
            }
        }
        if (e instanceof IOException io && io.getMessage() != null && io.getMessage().contains("No space left on device")) {
            return ENOSPC;
        }
        if (e instanceof IllegalArgumentException) {
            return EINVAL;
        }
        return EIO;
    }

    static String strerror(int errno) {
        return switch (errno) {
            case EPERM -> "Operation not permitted";
            case -2 -> "No such file or directory";
            case EIO -> "Input/output error";
            case ENOMEM -> "Cannot allocate memory";
            case EACCES -> "Permission denied";
            case EINVAL -> "Invalid argument";
            case ENOSPC -> "No space left on device";
            case EROFS -> "Read-only file system";
            case ENOTSUP -> "Operation not supported";
            default -> "Unknown error " + (-errno);
        };
    }

    /** One line for an exception, as ExitCodes words them. */
    static String describe(Throwable e) {
        if (e instanceof QcowException) {
            return e.getMessage();
        }
        if (e instanceof NoSuchFileException f) {
            return f.getFile() + ": No such file or directory";
        }
        if (e instanceof AccessDeniedException f) {
            return f.getFile() + ": Permission denied";
        }
        if (e instanceof FileSystemException f) {
            return f.getFile() + ": " + (f.getReason() != null ? f.getReason() : f.getClass().getSimpleName());
        }
        if (e instanceof IOException) {
            return e.getMessage() != null ? e.getMessage() : e.toString();
        }
        if (e instanceof OutOfMemoryError) {
            return "out of memory";
        }
        return "internal error: " + e + " (run with --debug for details)";
    }
}
