package org.qcow4j.cli;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.IntConsumer;
import java.util.function.Supplier;

/**
 * {@code io}: qemu-io (QEMU 7.2). Takes qemu-io's program options, opens the image ({@link IoOpen}: qcow2 or raw,
 * read-write or with {@code -r} read-only, {@code -s} over a temporary overlay, {@code --image-opts} from an option
 * string), then runs the {@code -c} commands in order, or else one command per line of standard input until EOF or
 * {@code quit} (after qemu-io's prompt; under its own name, qcow4j prompts only a terminal). The commands, their
 * output and their errors are qemu-io's (see {@link IoShell}); the exit code is 1 when any command failed, as
 * qemu-io's.
 *
 * <p>{@code -t none} and {@code directsync} (cache.direct=on) are accepted without O_DIRECT, which the JDK's
 * FileChannel offers only through a non-portable option that also needs aligned buffers; {@code unsafe}
 * (cache.no-flush) still flushes; {@code -m} (misaligned buffers) and the aio modes change nothing in Java;
 * {@code -T} accepts QEMU's trace options, and qcow4j having no trace events, names what it cannot trace as QEMU
 * does.
 */
final class IoCommand extends Command {
    static final CommandLine.Option CMD = CommandLine.Option.value("STRING",
            "Execute command with its arguments from the given string (repeatable, in order). Without -c, commands "
                    + "are read from standard input.", "-c", "--cmd");
    static final CommandLine.Option FORMAT_IO = CommandLine.Option.value("FMT",
            "Image format (qcow2 or raw); probed if omitted.", "-f", "--format");
    static final CommandLine.Option READ_ONLY = CommandLine.Option.flag("Open the image read-only.", "-r", "--read-only");
    static final CommandLine.Option SNAPSHOT = CommandLine.Option.flag(
            "Write to a temporary overlay, deleted at exit: the image does not change.", "-s", "--snapshot");
    static final CommandLine.Option NOCACHE = CommandLine.Option.flag("Disable host cache, short for -t none.", "-n",
            "--nocache");
    static final CommandLine.Option COPY_ON_READ = CommandLine.Option.flag(
            "Copy-on-read: what a read finds in the backing chain is written to the image.", "-C", "--copy-on-read");
    static final CommandLine.Option MISALIGN = CommandLine.Option.flag("Misaligned buffers (no effect in Java).", "-m",
            "--misalign");
    static final CommandLine.Option NATIVE_AIO = CommandLine.Option.flag("Kernel AIO, short for -i native.", "-k",
            "--native-aio");
    static final CommandLine.Option AIO = CommandLine.Option.value("MODE", "AIO mode: threads, native or io_uring.", "-i",
            "--aio");
    static final CommandLine.Option DISCARD = CommandLine.Option.value("MODE", "Discard mode: ignore (off) or unmap (on).",
            "-d", "--discard");
    static final CommandLine.Option CACHE = CommandLine.Option.value("MODE",
            "Cache mode: writethrough (the default), writeback, none, directsync or unsafe.", "-t", "--cache");
    static final CommandLine.Option TRACE = CommandLine.Option.value("OPTIONS",
            "QEMU's trace options ([enable=]PATTERN,events=FILE,file=FILE); qcow4j has no trace events.", "-T", "--trace");
    static final CommandLine.Option QUIET = CommandLine.Option.flag(
            "Quiet: no statistics lines (every command as if given -q; not qemu-io's).", "-q", "--quiet");

    private final Supplier<InputStream> stdin;
    private final IntConsumer raise;

    /** Standard input and real signals; null fields, so that every command's start-up links no lambda for them. */
    IoCommand() {
        this(null, null);
    }

    /** For tests: commands from {@code stdin}, and what raising a signal ({@code sigraise}, {@code abort}) does. */
    IoCommand(Supplier<InputStream> stdin, IntConsumer raise) {
        super("io", "io [OPTIONS]... [-c COMMAND]... [IMAGE]",
                "Read and write an image as qemu-io does (try: qcow4j io -c help IMAGE).",
                CMD, FORMAT_IO, READ_ONLY, SNAPSHOT, NOCACHE, COPY_ON_READ, MISALIGN, NATIVE_AIO, AIO, DISCARD, CACHE,
                TRACE, FORCE_SHARE, OBJECT, IMAGE_OPTS, QUIET);
        this.stdin = stdin;
        this.raise = raise;
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        boolean qemuIo = err.program() == Program.QEMU_IO;
        if (qemuIo && args.has("-q")) {
            throw new CommandLine.UsageException("invalid option -- 'q'"); // qcow4j's own, not qemu-io's
        }
        IoOpen.Flags flags = new IoOpen.Flags();
        QemuObjects objects = new QemuObjects();
        flags.objects = objects;
        boolean imageOpts = false;
        String traceFile = null;
        for (Map.Entry<String, String> o : args.inOrder()) {
            String v = o.getValue();
            switch (o.getKey()) {
                case "-s" -> flags.snapshot = true;
                case "-n" -> {
                    flags.nocache = true;
                    flags.writethrough = false;
                }
                case "-C" -> flags.copyOnRead = true;
                case "-d" -> {
                    if (!flags.discardMode(v)) {
                        err.error("Invalid discard option: " + v);
                        return ExitCodes.FAILURE;
                    }
                }
                case "-r" -> flags.readOnly = true;
                case "-k" -> flags.nativeAio = true;
                case "-i" -> {
                    if (!flags.aioMode(v)) {
                        err.error("Invalid aio option: " + v);
                        return ExitCodes.FAILURE;
                    }
                }
                case "-t" -> {
                    if (!flags.cacheMode(v)) {
                        err.error("Invalid cache option: " + v);
                        return ExitCodes.FAILURE;
                    }
                }
                case "-T" -> {
                    Integer exit = trace(v, err);
                    if (exit != null) {
                        return exit;
                    }
                    traceFile = traceFile(v, traceFile);
                }
                case "-U" -> flags.forceShare = true;
                case "--object" -> {
                    Integer exit = objects.addOption(v, out, err);
                    if (exit != null) {
                        return exit;
                    }
                }
                case "--image-opts" -> imageOpts = true;
                default -> {
                    // -c, -f, -m (no effect), -q: read below
                }
            }
        }
        List<String> operands = args.positionals();
        if (operands.size() > 1) {
            throw new CommandLine.UsageException(""); // qemu-io prints its usage, no message
        }
        String format = args.get("-f", null);
        if (format != null && imageOpts) {
            err.error("--image-opts and -f are mutually exclusive");
            return ExitCodes.FAILURE;
        }
        if (traceFile != null) {
            try {
                Files.newOutputStream(Path.of(traceFile)).close(); // QEMU's log backend opens it: nothing to write
            } catch (IOException | RuntimeException e) {
                err.error("Error opening logfile " + traceFile + ": " + IoErrno.strerror(IoErrno.of(e)));
                return ExitCodes.FAILURE;
            }
        }
        boolean debug = args.has("--debug");

        IoOpen.Opened image = null;
        if (operands.size() == 1) {
            IoOpen.Request request;
            if (imageOpts) {
                Map<String, String> options;
                try {
                    options = QemuOpts.parse(operands.get(0), null, QemuOpts.Kind.WITH_ID, line -> warning(err, line));
                } catch (QemuOpts.Invalid e) {
                    err.error(e.getMessage());
                    if (e.hint() != null) {
                        err.println(e.hint());
                    }
                    return ExitCodes.FAILURE;
                }
                request = new IoOpen.Request(null, options, flags);
            } else {
                request = new IoOpen.Request(operands.get(0), format == null ? Map.of() : Map.of("driver", format), flags);
            }
            try {
                image = IoOpen.open(request, err);
            } catch (IoOpen.Failed f) {
                f.report(err, debug);
                return ExitCodes.FAILURE;
            }
        }
        IoShell shell = new IoShell(image, out, err, args.has("-q"), debug, imageOpts,
                raise != null ? raise : IoSignals::raise);
        boolean closed = true;
        try {
            List<String> commands = args.has("-c") ? args.all("-c") : null;
            if (commands != null) {
                for (int i = 0; i < commands.size() && !shell.quit(); i++) {
                    shell.execute(commands.get(i));
                }
            } else {
                readLoop(shell, out, qemuIo, err.program().displayName() + "> ");
            }
        } finally {
            closed = shell.finish();
        }
        return shell.failed() || !closed ? ExitCodes.FAILURE : ExitCodes.OK;
    }

    /** A deprecation warning's lines: "warning: ..." prefixed with the program's name, the next one as it is. */
    private static void warning(Stderr err, String line) {
        if (line.startsWith("warning: ")) {
            err.error(line);
        } else {
            err.println(line);
        }
    }

    /**
     * {@code -T}: QEMU's trace options, checked and applied as trace_opt_parse does; qcow4j has no trace events, so
     * each event named is one QEMU's warning says does not exist, and a pattern matches none. Returns the exit code
     * when the program ends here (an error, or the event list asked for), else null.
     */
    private static Integer trace(String value, Stderr err) {
        Map<String, String> opts;
        try {
            opts = QemuOpts.parse(value, "enable", QemuOpts.Kind.WITH_ID, line -> warning(err, line));
        } catch (QemuOpts.Invalid e) {
            err.error(e.getMessage());
            if (e.hint() != null) {
                err.println(e.hint());
            }
            return ExitCodes.FAILURE;
        }
        for (String k : opts.keySet()) {
            if (!k.equals("enable") && !k.equals("events") && !k.equals("file") && !k.equals("id")) {
                err.error("Invalid parameter '" + k + "'");
                return ExitCodes.FAILURE;
            }
        }
        String enable = opts.get("enable");
        if (enable != null && enableEvents(enable, null, err)) {
            return ExitCodes.OK;
        }
        String events = opts.get("events");
        if (events != null) {
            List<String> lines;
            try {
                lines = Files.readAllLines(Path.of(events), StandardCharsets.ISO_8859_1);
            } catch (NoSuchFileException e) {
                err.println(err.program().displayName() + ":" + events + ": " + IoErrno.strerror(IoErrno.ENOENT));
                return ExitCodes.FAILURE;
            } catch (IOException | RuntimeException e) {
                err.println(err.program().displayName() + ":" + events + ": " + IoErrno.strerror(IoErrno.of(e)));
                return ExitCodes.FAILURE;
            }
            for (int i = 0; i < lines.size(); i++) {
                String line = lines.get(i);
                if (line.isEmpty() || line.startsWith("#")) {
                    continue;
                }
                if (enableEvents(line, events + ":" + (i + 1), err)) {
                    return ExitCodes.OK;
                }
            }
        }
        return null;
    }

    /**
     * trace_enable_events for qcow4j's (empty) event list: "help" lists none and ends the program (true); an event
     * name (not a pattern) draws QEMU's warning, {@code location} ("FILE:LINE") before it when read from a file.
     */
    private static boolean enableEvents(String line, String location, Stderr err) {
        if (line.equals("help") || line.equals("?")) {
            return true;
        }
        String name = line.startsWith("-") ? line.substring(1) : line;
        if (!name.contains("*") && !name.contains("?")) {
            String message = "warning: trace event '" + name + "' does not exist";
            err.println(err.program().displayName() + ":" + (location != null ? location + ": " : " ") + message);
        }
        return false;
    }

    /** The file= of a -T option (the last one given wins, as QEMU keeps one), else {@code previous}. */
    private static String traceFile(String value, String previous) {
        try {
            String file = QemuOpts.parse(value, "enable", QemuOpts.Kind.WITH_ID, line -> { }).get("file");
            return file != null ? file : previous;
        } catch (QemuOpts.Invalid e) {
            return previous;
        }
    }

    /**
     * One command per line of standard input, until EOF or quit, each after the prompt: qemu-io prompts always, qcow4j
     * under its own name only a terminal.
     */
    private void readLoop(IoShell shell, PrintWriter out, boolean qemuIo, String prompt) throws IOException {
        InputStream in = stdin != null ? stdin.get() : System.in;
        boolean prompting = qemuIo || (in == System.in && System.console() != null);
        BufferedReader reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8), 1 << 16);
        StringBuilder line = new StringBuilder();
        while (!shell.quit()) {
            if (prompting) {
                out.print(prompt);
                out.flush();
            }
            // Lines end at '\n' only, as fgets reads them.
            line.setLength(0);
            int c;
            while ((c = reader.read()) >= 0 && c != '\n') {
                line.append((char) c);
            }
            if (c < 0 && line.length() == 0) {
                break;
            }
            shell.execute(line.toString());
            if (prompting) {
                out.flush();
            }
        }
    }
}
