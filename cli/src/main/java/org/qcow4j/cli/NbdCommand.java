package org.qcow4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.nio.file.NoSuchFileException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.DiskImage;
import org.qcow4j.ImageLockedException;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.WritableImage;
import org.qcow4j.nbd.NbdExport;
import org.qcow4j.nbd.NbdServer;
import org.qcow4j.nbd.TlsCredentials;

/**
 * {@code nbd}: serves images over NBD as qemu-nbd 7.2 does (its option names and defaults), through
 * {@link NbdServer}. Beyond qemu-nbd, {@code --export NAME=IMAGE} serves several images from one server. Stops on
 * SIGTERM or SIGINT (requests in flight answered, images flushed and closed), or when the last client leaves unless
 * {@code -t}.
 */
final class NbdCommand extends Command {
    private static final CommandLine.Option READ_ONLY = CommandLine.Option.flag("Export read-only.", "-r", "--read-only");
    private static final CommandLine.Option NAME = CommandLine.Option.value("NAME",
            "Export name (default: the empty string).", "-x", "--export-name");
    private static final CommandLine.Option DESCRIPTION = CommandLine.Option.value("TEXT",
            "A description clients show.", "-D", "--description");
    private static final CommandLine.Option SOCKET = CommandLine.Option.value("PATH", "Listen on a Unix socket.",
            "-k", "--socket");
    private static final CommandLine.Option PORT = CommandLine.Option.value("PORT", "TCP port (default 10809).",
            "-p", "--port");
    private static final CommandLine.Option BIND = CommandLine.Option.value("ADDR",
            "Address to listen on (default 0.0.0.0).", "-b", "--bind");
    private static final CommandLine.Option DEPTH = CommandLine.Option.flag(
            "Offer the qemu:allocation-depth meta context.", "-A", "--allocation-depth");
    private static final CommandLine.Option BITMAP = CommandLine.Option.value("NAME",
            "Offer the image's persistent dirty bitmap NAME as the qemu:dirty-bitmap:NAME meta context (repeatable).",
            "-B", "--bitmap");
    private static final CommandLine.Option SHARED = CommandLine.Option.value("N",
            "Clients at once (default 1, 0: no limit); more than 1 offers multi-conn.", "-e", "--shared");
    private static final CommandLine.Option PERSISTENT = CommandLine.Option.flag(
            "Keep serving after the last client leaves.", "-t", "--persistent");
    private static final CommandLine.Option PID_FILE = CommandLine.Option.value("PATH",
            "Write the server's process id there once it listens.", "--pid-file");
    private static final CommandLine.Option DISCARD = CommandLine.Option.value("ignore|unmap",
            "What a client's trim does (default ignore).", "--discard");
    private static final CommandLine.Option DETECT_ZEROES = CommandLine.Option.value("off|on|unmap",
            "Store written zeros as zero writes (unmap needs --discard=unmap).", "--detect-zeroes");
    private static final CommandLine.Option CACHE = CommandLine.Option.value("MODE",
            "Cache mode (none, writeback, writethrough, directsync, unsafe): checked; the page cache is used.",
            "--cache");
    private static final CommandLine.Option NOCACHE = CommandLine.Option.flag("As --cache=none.", "-n", "--nocache");
    private static final CommandLine.Option VERBOSE = CommandLine.Option.flag("Report connections and errors.",
            "-v", "--verbose");
    private static final CommandLine.Option EXPORT = CommandLine.Option.value("NAME=IMAGE",
            "Serve IMAGE under NAME as well (repeatable; beyond qemu-nbd).", "--export");
    private static final CommandLine.Option OBJECT = CommandLine.Option.value("tls-creds-x509,id=ID,dir=DIR,...",
            "TLS credentials for --tls-creds ID, as QEMU's (endpoint=server; verify-peer=on, the default, wants "
                    + "client certificates).", "--object");
    private static final CommandLine.Option TLS_CREDS = CommandLine.Option.value("ID|DIR",
            "Require TLS with the credentials of --object ID, or (qcow4j) of the directory DIR holding ca-cert.pem, "
                    + "server-cert.pem and server-key.pem (clients need no certificate).", "--tls-creds");
    private static final CommandLine.Option TLS_AUTHZ = CommandLine.Option.value("ID",
            "Refused: authorizing clients by name is not supported.", "--tls-authz");
    private static final CommandLine.Option CONNECT = CommandLine.Option.value("DEV",
            "Refused: connect a kernel device with nbd-client instead.", "-c", "--connect");
    private static final CommandLine.Option FORK = CommandLine.Option.flag("Refused: run the server in the background "
            + "with the shell's &.", "--fork");

    NbdCommand() {
        super("nbd", "nbd [-f FMT] [-r] [-x NAME] [-k PATH | -b ADDR -p PORT] [-e N] [-t] [-A] [-B NAME]... [--tls-creds DIR] "
                        + "[--export NAME=IMAGE]... [IMAGE]",
                "Serve images over NBD, as qemu-nbd.", FORMAT, READ_ONLY, NAME, DESCRIPTION, SOCKET, PORT, BIND, DEPTH,
                BITMAP, SHARED, PERSISTENT, PID_FILE, DISCARD, DETECT_ZEROES, CACHE, NOCACHE, VERBOSE, EXPORT, OBJECT, TLS_CREDS,
                TLS_AUTHZ, CONNECT, FORK);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        if (args.has("-c")) {
            throw CommandLine.UsageException.withoutHint("-c/--connect is not supported: serve with -k PATH, then "
                    + "connect the device with nbd-client -unix PATH /dev/nbdX");
        }
        if (args.has("--fork")) {
            throw CommandLine.UsageException.withoutHint("--fork is not supported: start the server with '&' and "
                    + "wait for --pid-file");
        }
        int shared = shared(args.get("-e", "1"));
        NbdExport.Discard discard = switch (args.get("--discard", "ignore")) {
            case "ignore", "off" -> NbdExport.Discard.IGNORE;
            case "unmap", "on" -> NbdExport.Discard.UNMAP;
            default -> throw CommandLine.UsageException.withoutHint("Invalid discard mode `" + args.get("--discard", "")
                    + "'");
        };
        NbdExport.DetectZeroes zeroes = switch (args.get("--detect-zeroes", "off")) {
            case "off" -> NbdExport.DetectZeroes.OFF;
            case "on" -> NbdExport.DetectZeroes.ON;
            case "unmap" -> NbdExport.DetectZeroes.UNMAP;
            default -> throw CommandLine.UsageException.withoutHint("Failed to parse detect_zeroes mode: Parameter "
                    + "'detect-zeroes' does not accept value '" + args.get("--detect-zeroes", "") + "'");
        };
        if (zeroes == NbdExport.DetectZeroes.UNMAP && discard != NbdExport.Discard.UNMAP) {
            throw CommandLine.UsageException.withoutHint(
                    "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap");
        }
        if (args.has("--cache")) {
            ImageArgs.cacheMode(args.get("--cache", ""), "cache");
        }
        String socket = args.get("-k", null);
        if (socket != null && !socket.startsWith("/")) {
            throw CommandLine.UsageException.withoutHint("socket path must be absolute");
        }
        int port = port(args.get("-p", "10809"));
        String name = args.get("-x", "");
        String description = args.get("-D", null);
        if (name.getBytes(StandardCharsets.UTF_8).length > NbdExport.MAX_STRING_BYTES) {
            throw CommandLine.UsageException.withoutHint("export name '" + name + "' too long");
        }
        if (description != null && description.getBytes(StandardCharsets.UTF_8).length > NbdExport.MAX_STRING_BYTES) {
            throw CommandLine.UsageException.withoutHint("export description '" + description + "' too long");
        }
        List<String[]> images = new ArrayList<>();
        List<String> positional = args.positionals();
        if (positional.size() > 1 || (positional.isEmpty() && args.all("--export").isEmpty())) {
            throw CommandLine.UsageException.withoutHint("Invalid number of arguments");
        }
        if (!positional.isEmpty()) {
            images.add(new String[] {name, positional.get(0)});
        }
        for (String e : args.all("--export")) {
            int eq = e.indexOf('=');
            if (eq < 0 || eq == e.length() - 1) {
                throw CommandLine.UsageException.withoutHint("--export needs NAME=IMAGE: '" + e + "'");
            }
            images.add(new String[] {e.substring(0, eq), e.substring(eq + 1)});
        }
        for (int i = 0; i < images.size(); i++) {
            for (int j = 0; j < i; j++) {
                if (images.get(i)[0].equals(images.get(j)[0])) {
                    throw CommandLine.UsageException.withoutHint("export '" + images.get(i)[0] + "' given twice");
                }
            }
        }
        TlsCredentials tls = TlsOptions.credentials(args.all("--object"), args.get("--tls-creds", null),
                err.program() == Program.QCOW4J);
        if (args.has("--tls-authz")) {
            throw CommandLine.UsageException.withoutHint(tls == null ? "--tls-authz is not permitted without --tls-creds"
                    : "--tls-authz is not supported");
        }
        boolean verbose = args.has("-v");
        boolean readOnly = args.has("-r");
        Served served = new Served();
        try {
            NbdServer.Builder b = NbdServer.builder().maxConnections(shared).persistent(args.has("-t"))
                    .tls(tls).log(line -> err.error(line));
            for (String[] e : images) {
                DiskImage image = open(e[1], args.get("-f", null), readOnly, err);
                served.images.add(image);
                NbdExport exp = new NbdExport(e[0], e[0].equals(name) ? description : null, image, !readOnly,
                        args.has("-A"), discard, zeroes, e[0].equals(name) ? bitmaps(args, image) : List.of());
                b.export(exp);
            }
            if (socket != null) {
                b.unixSocket(Path.of(socket));
            } else {
                b.tcp(new InetSocketAddress(bindAddress(args.get("-b", "0.0.0.0")), port));
            }
            served.server = b.start();
            if (args.has("--pid-file")) {
                Path pidFile = Path.of(args.get("--pid-file", ""));
                // Written beside it and renamed: whoever waits for the file never reads it empty.
                Path partial = pidFile.resolveSibling(pidFile.getFileName() + ".tmp");
                Files.writeString(partial, ProcessHandle.current().pid() + "\n");
                Files.move(partial, pidFile, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                        java.nio.file.StandardCopyOption.ATOMIC_MOVE);
                served.pidFile = pidFile;
            }
            if (verbose) {
                err.error("listening on " + served.server.address());
            }
            Thread hook = new Thread(served::stop, "nbd-shutdown");
            Runtime.getRuntime().addShutdownHook(hook);
            served.server.awaitTermination();
            served.stop();
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException e) {
                // the JVM is stopping (SIGTERM): the hook has done the same
            }
            if (served.failure != null) {
                throw served.failure;
            }
            return ExitCodes.OK;
        } finally {
            served.stop();
        }
    }

    /** What the server holds, stopped once by whoever comes first: the last client leaving, or a signal. */
    private static final class Served {
        final List<DiskImage> images = new ArrayList<>();
        NbdServer server;
        Path pidFile;
        IOException failure;
        private boolean stopped;

        synchronized void stop() {
            if (stopped) {
                return;
            }
            stopped = true;
            try {
                if (server != null) {
                    server.close();
                }
            } catch (IOException e) {
                failure = e;
            }
            for (DiskImage image : images) {
                try {
                    image.close();
                } catch (IOException e) {
                    failure = failure == null ? e : failure;
                }
            }
            if (pidFile != null) {
                try {
                    Files.deleteIfExists(pidFile);
                } catch (IOException e) {
                    // qemu-nbd leaves it too when it cannot remove it
                }
            }
        }
    }

    /**
     * The bitmaps of {@code -B}, last first as qemu-nbd lists them, each one the image has (else qemu-nbd's "Bitmap
     * 'NAME' is not found").
     */
    private static List<String> bitmaps(CommandLine args, DiskImage image) throws CommandLine.UsageException, IOException {
        List<String> names = new java.util.ArrayList<>(args.all("-B"));
        if (names.isEmpty()) {
            return List.of();
        }
        java.util.Collections.reverse(names);
        List<String> present = new java.util.ArrayList<>();
        if (image.dirtyBitmaps().isPresent()) {
            for (org.qcow4j.format.Bitmap b : image.dirtyBitmaps().get().list()) {
                present.add(b.name());
            }
        }
        for (String n : names) {
            if (!present.contains(n)) {
                throw CommandLine.UsageException.withoutHint("Bitmap '" + n + "' is not found");
            }
        }
        return List.copyOf(new java.util.LinkedHashSet<>(names));
    }

    private static DiskImage open(String filename, String format, boolean readOnly, Stderr err) throws IOException {
        if (format != null && !format.equals("qcow2") && !format.equals("raw")) {
            throw new IOException("Failed to blk_new_open '" + filename + "': Unknown driver '" + format + "'");
        }
        Path path = ImageArgs.path(filename);
        OpenOptions options = OpenOptions.defaults().withFormat(format).withQemuLayout(true);
        if (readOnly) {
            return opening(filename, () -> Images.open(path, options));
        }
        if (format == null && Files.isRegularFile(path) && Images.probeFormat(path).equals("raw")) {
            err.println("WARNING: Image format was not specified for '" + filename + "' and probing guessed raw.");
            err.println("         Automatically detecting the format is dangerous for raw images, write operations on "
                    + "block 0 will be restricted.");
            err.println("         Specify the 'raw' format explicitly to remove the restrictions.");
        }
        WritableImage image = opening(filename, () -> Images.openWritable(path, options));
        for (String w : image.warnings()) {
            err.error("warning: " + w);
        }
        return image;
    }

    /** Opens an image; a failure in qemu-nbd's words ("Failed to blk_new_open 'X': REASON"). */
    private static <T> T opening(String filename, ImageArgs.Opening<T> open) throws IOException {
        try {
            return open.open();
        } catch (ImageLockedException e) {
            throw e; // its own two lines, as QEMU prints them
        } catch (NoSuchFileException e) {
            throw new IOException("Failed to blk_new_open '" + filename + "': " + ExitCodes.noSuchFile(filename), e);
        } catch (IOException e) {
            throw new IOException("Failed to blk_new_open '" + filename + "': " + ExitCodes.openReason(filename, e), e);
        }
    }

    private static int shared(String value) throws CommandLine.UsageException {
        try {
            int n = Integer.decode(value);
            if (n >= 0) {
                return n;
            }
        } catch (NumberFormatException e) {
            // below
        }
        throw CommandLine.UsageException.withoutHint("Invalid shared device number '" + value + "'");
    }

    private static int port(String value) throws CommandLine.UsageException {
        try {
            int n = Integer.parseInt(value);
            if (n >= 0 && n <= 65535) {
                return n;
            }
        } catch (NumberFormatException e) {
            // below
        }
        throw CommandLine.UsageException.withoutHint("Invalid port '" + value + "'");
    }

    private static InetAddress bindAddress(String host) throws IOException {
        try {
            return InetAddress.getByName(host);
        } catch (UnknownHostException e) {
            throw new IOException("address resolution failed for " + host + ": Name or service not known", e);
        }
    }
}
