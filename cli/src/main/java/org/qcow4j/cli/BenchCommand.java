package org.qcow4j.cli;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WritableImage;

/**
 * {@code bench}: {@code qemu-img bench} (QEMU 7.2) over qcow4j's library: the same options, the same two report
 * lines ("Sending ..." and "Run completed in ... seconds."), the same offsets, the same argument checks and messages.
 * QEMU's asynchronous queue of {@code -d N} requests is N threads sending synchronous requests (see
 * {@link BenchRun}). Unlike qemu-img, whose time stops before it closes the image, the time of a write run includes
 * the final flush (what qemu-img's close does after printing it).
 */
final class BenchCommand extends Command {
    /** Threads beyond this many do not add parallelism worth having; a deeper {@code -d} is reported but capped. */
    static final int MAX_THREADS = 256;

    private static final CommandLine.Option COUNT = CommandLine.Option.value("count", "Number of requests (default 75000).", "-c");
    private static final CommandLine.Option DEPTH = CommandLine.Option.value("depth",
            "Requests in flight (default 64): this many threads, each sending one request at a time (at most "
                    + MAX_THREADS + " threads).", "-d");
    private static final CommandLine.Option AIO = CommandLine.Option.value("aio",
            "threads, native or io_uring: checked as qemu-img does, then ignored (Java does its own I/O).", "-i");
    private static final CommandLine.Option NATIVE = CommandLine.Option.flag("As -i native: checked, then ignored.", "-n");
    private static final CommandLine.Option OFFSET = CommandLine.Option.value("offset",
            "Offset of the first request (default 0; k, M, G... suffixes).", "-o");
    private static final CommandLine.Option QUIET = CommandLine.Option.flag(
            "Accepted; as with qemu-img bench, the report is printed anyway.", "-q");
    private static final CommandLine.Option BUFFER = CommandLine.Option.value("buffer_size",
            "Bytes per request (default 4096).", "-s");
    private static final CommandLine.Option STEP = CommandLine.Option.value("step_size",
            "Added to the offset after each request, modulo the image size (default: the buffer size).", "-S");
    private static final CommandLine.Option CACHE = CommandLine.Option.value("cache",
            "none, off, directsync, writeback, unsafe or writethrough: checked, then ignored (writes are flushed at the"
                    + " end and at --flush-interval).", "-t");
    private static final CommandLine.Option WRITE = CommandLine.Option.flag("Write (the --pattern byte) instead of reading.", "-w");
    private static final CommandLine.Option SHARE = CommandLine.Option.flag(
            "Read the image whatever other processes do with it (read runs); refused with -w, as qemu-img does.", "-U", "--force-share");
    private static final CommandLine.Option PATTERN = CommandLine.Option.value("N",
            "Byte value written by -w (default 0).", "--pattern");
    private static final CommandLine.Option FLUSH_INTERVAL = CommandLine.Option.value("N",
            "Flush after every N requests (-w only; N >= depth).", "--flush-interval");
    private static final CommandLine.Option NO_DRAIN = CommandLine.Option.flag(
            "Flush without first waiting for the requests in flight.", "--no-drain");

    BenchCommand() {
        super("bench", "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] [--no-drain]"
                + " [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename",
                "Run a simple read or write benchmark on an image, as qemu-img bench does (its output and checks).",
                COUNT, DEPTH, FORMAT, FLUSH_INTERVAL, AIO, NATIVE, NO_DRAIN, OFFSET, PATTERN, QUIET, BUFFER, STEP,
                CACHE, WRITE, SHARE);
    }

    /** An argument qemu-img bench refuses: its error lines, printed as they are with qcow4j's prefix, exit 1. */
    private static final class Refused extends Exception {
        private static final long serialVersionUID = 1L;
        private final transient List<String> lines;

        Refused(List<String> lines) {
            super(String.join("\n", lines));
            this.lines = lines;
        }

        Refused(String line) {
            this(List.of(line));
        }
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        try {
            return bench(args, out, err);
        } catch (Refused | BenchRun.Failure e) {
            out.flush();
            for (String line : e instanceof Refused r ? r.lines : List.of(e.getMessage())) {
                err.error(line);
            }
            err.flush();
            return ExitCodes.FAILURE;
        }
    }

    private int bench(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        // The values, checked as img_bench's getopt loop checks them.
        int count = strtoul(args, "-c", 75000, Integer.MAX_VALUE, "Invalid request count specified");
        int depth = strtoul(args, "-d", 64, Integer.MAX_VALUE, "Invalid queue depth specified");
        boolean nativeAio = args.has("-n");
        for (String aio : values(args, "-i")) {
            switch (aio) {
                case "threads", "io_uring" -> {
                }
                case "native" -> nativeAio = true;
                default -> throw new Refused("Invalid aio option: " + aio);
            }
        }
        long offset = cvtnum(args, "-o", "offset", 0, Long.MAX_VALUE, err);
        int bufsize = (int) cvtnum(args, "-s", "buffer size", 4096, Integer.MAX_VALUE, err);
        int step = (int) cvtnum(args, "-S", "step_size", 0, Integer.MAX_VALUE, err);
        boolean direct = false;
        for (String cache : values(args, "-t")) {
            switch (cache) {
                case "none", "off", "directsync" -> direct = true;
                case "writeback", "unsafe", "writethrough" -> direct = false;
                default -> throw new Refused("Invalid cache mode");
            }
        }
        boolean write = args.has("-w");
        int pattern = strtoul(args, "--pattern", 0, 0xff, "Invalid pattern byte specified");
        int flushInterval = strtoul(args, "--flush-interval", 0, Integer.MAX_VALUE, "Invalid flush interval specified");
        boolean drainOnFlush = !args.has("--no-drain");

        if (args.positionals().size() != 1) {
            throw new CommandLine.UsageException("Expecting one image file name");
        }
        String filename = args.positionals().get(0);
        if (!write && flushInterval != 0) {
            throw new Refused("--flush-interval is only available in write tests");
        }
        if (flushInterval != 0 && flushInterval < depth) {
            throw new Refused("Flush interval can't be smaller than depth");
        }
        // What QEMU's open refuses before it looks at the file.
        if (write && args.has("-U")) {
            throw new Refused("Could not open '" + filename + "': force-share=on can only be used with read-only images");
        }
        Path path = ImageArgs.path(filename);
        if (!Files.exists(path)) {
            // QEMU's file layer says so before it looks at the aio mode.
            throw new Refused("Could not open '" + filename + "': Could not open '" + filename + "': No such file or directory");
        }
        if (nativeAio && !direct) {
            throw new Refused("Could not open '" + filename + "': aio=native was specified, but it requires cache.direct=on,"
                    + " which was not specified.");
        }
        if (depth == 0 && count > 0) {
            // qemu-img bench prints its first line and then waits forever: nothing is ever sent.
            throw new Refused("Invalid queue depth specified: -d 0 never sends the " + count
                    + " requests (qemu-img bench waits forever)");
        }

        String format = args.get("-f", null);
        if (format != null && !format.equals("qcow2") && !format.equals("raw")) {
            throw new UnsupportedFeatureException(filename, "image format '" + format + "' (qcow4j reads qcow2 and raw)");
        }
        OpenOptions options = OpenOptions.defaults().withFormat(format).withForceShare(args.has("-U"));
        DiskImage image = write ? Images.openWritable(path, options) : Images.open(path, options);
        WritableImage writable = write ? (WritableImage) image : null;
        try (image) {
            if (writable != null) {
                if (format == null && "raw".equals(image.format())) {
                    // QEMU's warning for a probed raw image opened for writing (the library restricts block 0 alike).
                    err.println("WARNING: Image format was not specified for '" + filename + "' and probing guessed raw.");
                    err.println("         Automatically detecting the format is dangerous for raw images, write operations"
                            + " on block 0 will be restricted.");
                    err.println("         Specify the 'raw' format explicitly to remove the restrictions.");
                }
                for (String w : writable.warnings()) {
                    err.error("warning: " + w);
                }
                if (writable.readOnly()) {
                    throw new QcowException(filename, "image is corrupt: cannot be opened for writing");
                }
            }
            BenchRun run = new BenchRun(image, writable, bufsize, step != 0 ? step : bufsize, offset, count, flushInterval,
                    drainOnFlush, pattern);
            out.print(String.format(Locale.ROOT, "Sending %d %s requests, %d bytes each, %d in parallel"
                    + " (starting at offset %d, step size %d)\n", count, write ? "write" : "read", bufsize, depth, offset,
                    step != 0 ? step : bufsize));
            if (flushInterval != 0) {
                out.print("Sending flush every " + flushInterval + " requests\n");
            }
            out.flush();
            int threads = Math.min(Math.min(depth, count), MAX_THREADS);
            long t0 = System.nanoTime();
            run.run(Math.max(threads, 1));
            long t1 = System.nanoTime();
            out.print(String.format(Locale.ROOT, "Run completed in %3.3f seconds.\n", (t1 - t0) / 1e9));
            out.flush();
        }
        return ExitCodes.OK;
    }

    /**
     * Every value of a repeated option is checked in order, as getopt hands them to qemu-img; the last one counts.
     * Each is {@code qemu_strtoul(optarg, NULL, 0, &res) < 0 || res > max}, refused with {@code message}.
     */
    private static int strtoul(CommandLine args, String key, int fallback, long max, String message) throws Refused {
        int value = fallback;
        for (String v : values(args, key)) {
            long n = QemuNumbers.strtoul(v);
            if (n < 0 || n > max) {
                throw new Refused(message);
            }
            value = (int) n;
        }
        return value;
    }

    /**
     * As {@link #strtoul}, with qemu-img's {@code cvtnum_full(name, optarg, 0, max)}: a size ({@code qemu_strtosz}),
     * refused with two lines about suffixes when it is not one, with one line about the range when it is too large.
     */
    private static long cvtnum(CommandLine args, String key, String name, long fallback, long max, Stderr err) throws Refused {
        long value = fallback;
        for (String v : values(args, key)) {
            value = QemuNumbers.strtosz(v, warning -> err.error(warning));
            if (value == QemuNumbers.EINVAL) {
                throw new Refused(List.of("Invalid " + name + " specified. You may use k, M, G, T, P or E suffixes for",
                        "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes."));
            }
            if (value < 0 || value > max) {
                throw new Refused("Invalid " + name + " specified. Must be between 0 and " + max + ".");
            }
        }
        return value;
    }

    /** The values given to {@code key}, in order. */
    private static List<String> values(CommandLine args, String key) {
        return args.all(key);
    }
}
