package org.qcow4j.cli;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Supplier;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.MissingFileException;
import org.qcow4j.OpenOptions;
import org.qcow4j.WritableImage;

/**
 * {@code io}: a small qemu-io (QEMU 7.2). Opens one image read-write (qcow2 through {@link Images#openWritable},
 * raw files directly) or read-only with {@code -r}, then runs the {@code -c} commands in order, or else one command
 * per line of standard input until EOF or {@code quit}. The commands, their output and their errors are qemu-io's
 * (see {@link IoShell}); the exit code is 1 when any command failed, as qemu-io's.
 */
final class IoCommand extends Command {
    static final CommandLine.Option READ_ONLY = CommandLine.Option.flag("Open the image read-only.", "-r", "--read-only");
    static final CommandLine.Option QUIET = CommandLine.Option.flag(
            "Quiet: no statistics lines (every command as if given -q).", "-q", "--quiet");
    static final CommandLine.Option CMD = CommandLine.Option.value("COMMAND",
            "Run COMMAND (repeatable, in order). Without -c, commands are read from standard input.", "-c", "--cmd");

    /** The process ends at once, as qemu-io's abort(3): nothing flushed or closed (134 = 128 + SIGABRT). */
    private static final Runnable HALT = () -> Runtime.getRuntime().halt(134);

    private final Supplier<InputStream> stdin;
    private final Runnable abort;

    IoCommand() {
        this(() -> System.in, HALT);
    }

    /** For tests: commands from {@code stdin}, and what {@code abort} does. */
    IoCommand(Supplier<InputStream> stdin, Runnable abort) {
        super("io", "io [-f FMT] [-r] [-q] [-c COMMAND]... IMAGE",
                "Read and write an image as qemu-io does (try: qcow4j io -c help IMAGE).",
                CMD, FORMAT, READ_ONLY, QUIET, FORCE_SHARE);
        this.stdin = stdin;
        this.abort = abort;
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        List<String> operands = args.positionals();
        List<String> commands = args.has("-c") ? args.all("-c") : null;
        if (operands.size() > 1) {
            throw new CommandLine.UsageException(""); // qemu-io prints its usage, no message
        }
        // As qemu-io without a file: the commands (-c or standard input) run with no image open.
        String filename = operands.isEmpty() ? null : operands.get(0);
        boolean debug = args.has("--debug");

        DiskImage image = null;
        if (filename != null) {
            try {
                image = open(filename, args.get("-f", null), args.has("-r"), args.has("-U"), err);
            } catch (IOException | RuntimeException e) {
                err.error("can't open device " + filename + ": " + openError(filename, e));
                ExitCodes.explain(e, err);
                if (debug) {
                    e.printStackTrace(err);
                }
                return ExitCodes.FAILURE;
            }
        }
        IoShell shell = new IoShell(image, out, err, args.has("-q"), debug, abort);
        boolean closed = true;
        try {
            if (commands != null) {
                for (int i = 0; i < commands.size() && !shell.quit(); i++) {
                    shell.execute(commands.get(i));
                }
            } else {
                readLoop(shell, out, err.program().displayName() + "> ");
            }
        } finally {
            closed = image == null || close(image, out, err, debug);
        }
        return shell.failed() || !closed ? ExitCodes.FAILURE : ExitCodes.OK;
    }

    /** Closes the image (the last writes made durable); false, with the reason on stderr, if that failed. */
    private static boolean close(DiskImage image, PrintWriter out, Stderr err, boolean debug) {
        try {
            image.close();
            return true;
        } catch (IOException | RuntimeException e) {
            out.flush();
            err.error(IoErrno.describe(e));
            if (debug) {
                e.printStackTrace(err);
            }
            return false;
        }
    }

    /** One command per line of standard input, until EOF or quit; a prompt only when talking to a terminal. */
    private void readLoop(IoShell shell, PrintWriter out, String prompt) throws IOException {
        InputStream in = stdin.get();
        boolean interactive = in == System.in && System.console() != null;
        BufferedReader reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8), 1 << 16);
        StringBuilder line = new StringBuilder();
        while (!shell.quit()) {
            if (interactive) {
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
            if (interactive) {
                out.flush();
            }
        }
    }

    /**
     * Opens the image for writing through the library, or with -r read-only with its backing chain. The library's warnings (a dirty image repaired, a corrupt one opened
     * read-only) go to stderr.
     */
    private static DiskImage open(String filename, String format, boolean readOnly, boolean forceShare, Stderr err)
            throws IOException {
        if (format != null && !format.equals("qcow2") && !format.equals("raw")) {
            throw new IoOpenException("Unknown driver '" + format + "'");
        }
        Path path = ImageArgs.path(filename);
        OpenOptions options = OpenOptions.defaults().withFormat(format).withForceShare(forceShare).withQemuLayout(true);
        if (readOnly) {
            return Images.open(path, options);
        }
        if (format == null && probe(path).equals("raw")) {
            // qemu-io's warning; the library restricts block 0 of a probed raw image as QEMU does
            err.println("WARNING: Image format was not specified for '" + filename + "' and probing guessed raw.");
            err.println("         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.");
            err.println("         Specify the 'raw' format explicitly to remove the restrictions.");
        }
        WritableImage image = Images.openWritable(path, options);
        for (String w : image.warnings()) {
            err.error("warning: " + w);
        }
        return image;
    }

    /** "qcow2" when the file starts with qcow2's magic, else "raw" (as qemu probes among the two). */
    private static String probe(Path path) throws IOException {
        if (!Files.exists(path)) {
            throw new NoSuchFileException(path.toString());
        }
        if (Files.isDirectory(path) || !Files.isReadable(path)) {
            return "qcow2"; // let the library say what is wrong
        }
        return Images.probeFormat(path);
    }

    /** The reason after "can't open device X: ", qemu-io's wording for a missing file. */
    private static String openError(String filename, Throwable e) {
        if (e instanceof IoOpenException) {
            return e.getMessage();
        }
        if (!(e instanceof MissingFileException) && !exists(filename)) {
            return ExitCodes.noSuchFile(filename); // a probe's NoSuchFileException, before the library is asked
        }
        return ExitCodes.openReason(filename, e);
    }

    private static boolean exists(String name) {
        try {
            return Files.exists(Path.of(name));
        } catch (InvalidPathException e) {
            return false;
        }
    }

    /** An open refused before the library is asked (an unknown format). */
    private static final class IoOpenException extends IOException {
        private static final long serialVersionUID = 1L;

        IoOpenException(String message) {
            super(message);
        }
    }
}
