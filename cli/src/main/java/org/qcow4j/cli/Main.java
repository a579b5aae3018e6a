package org.qcow4j.cli;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * {@code qcow4j}: a qemu-img shaped command line for qcow2 images, and through links named {@code qemu-img} and
 * {@code qemu-io} (and {@code qemu-nbd}) a drop-in for those programs (see {@link Program}).
 */
public final class Main {
    /** Our commands in the help's order. Each is built when named: a run loads one command's classes, not all. */
    static final List<String> COMMAND_NAMES = List.of("info", "map", "convert", "create", "check", "e2image", "io", "bench",
            "nbd", "snapshot", "bitmap", "rebase", "commit", "amend", "compare", "resize", "dd", "measure");
    /** qemu-img's commands among ours (io and e2image are other programs' jobs). */
    private static final List<String> QEMU_IMG_COMMANDS = List.of("bench", "check", "compare", "convert", "create", "dd", "info", "map",
            "measure", "resize", "snapshot", "bitmap", "rebase", "commit", "amend");

    private Main() {
    }

    /** "qcow4j" and the POM's version. */
    static String version() {
        // the jar's manifest, already read at start-up; version.txt for the classes directory (tests)
        String fromJar = Main.class.getPackage().getImplementationVersion();
        if (fromJar != null) {
            return "qcow4j " + fromJar;
        }
        try (InputStream in = Main.class.getResourceAsStream("version.txt")) {
            return in == null ? "qcow4j" : "qcow4j " + new String(in.readAllBytes(), StandardCharsets.UTF_8).trim();
        } catch (IOException e) {
            return "qcow4j";
        }
    }

    /** The launcher passes the name it was invoked by as {@code -Dqcow4j.program=NAME}. */
    public static void main(String[] args) {
        System.exit(run(Program.invokedAs(System.getProperty("qcow4j.program")), args, System.out, System.err));
    }

    /** Runs one qcow4j command line; returns the exit code. Output goes to {@code out}, diagnostics to {@code err}. */
    public static int run(String[] argv, PrintStream out, PrintStream err) {
        return run(Program.QCOW4J, argv, out, err);
    }

    /** Runs one command line of {@code program} (qcow4j, or the QEMU tool it stands in for). */
    static int run(Program program, String[] argv, PrintStream out, PrintStream err) {
        PrintWriter o = new PrintWriter(new BufferedWriter(new OutputStreamWriter(out, StandardCharsets.UTF_8)));
        Stderr e = new Stderr(err, program);
        try {
            List<String> args = Arrays.asList(argv);
            return switch (program) {
                case QCOW4J -> qcow4j(args, o, e);
                case QEMU_IMG -> qemuImg(args, o, e);
                case QEMU_IO -> command(command("io"), args, o, e);
                case QEMU_NBD -> command(command("nbd"), args, o, e);
            };
        } finally {
            o.flush();
            e.flush();
        }
    }

    private static int qcow4j(List<String> argv, PrintWriter out, Stderr err) {
        if (argv.isEmpty() || argv.get(0).equals("-h") || argv.get(0).equals("--help")) {
            (argv.isEmpty() ? err : out).print(help());
            return argv.isEmpty() ? ExitCodes.USAGE : ExitCodes.OK;
        }
        if (argv.get(0).equals("-V") || argv.get(0).equals("--version")) {
            out.println(version());
            return ExitCodes.OK;
        }
        Command command = command(argv.get(0));
        if (command == null) {
            err.error("unknown command '" + argv.get(0) + "'");
            err.println("Try 'qcow4j --help' for more information.");
            return ExitCodes.USAGE;
        }
        return command(command, argv.subList(1, argv.size()), out, err);
    }

    /** qemu-img's main: its standard options, then a command among those qemu-img has. */
    private static int qemuImg(List<String> argv, PrintWriter out, Stderr err) {
        if (argv.isEmpty()) {
            err.error("Not enough arguments");
            err.println(Program.QEMU_IMG.helpHint(null));
            return ExitCodes.USAGE;
        }
        String first = argv.get(0);
        if (first.equals("-h") || first.equals("--help")) {
            out.print(programHelp(Program.QEMU_IMG));
            return ExitCodes.OK;
        }
        if (first.equals("-V") || first.equals("--version")) {
            out.println(Program.QEMU_IMG.version(version()));
            return ExitCodes.OK;
        }
        if (first.startsWith("-")) {
            err.error("unrecognized option '" + first + "'");
            err.println(Program.QEMU_IMG.helpHint(null));
            return ExitCodes.USAGE;
        }
        if (!QEMU_IMG_COMMANDS.contains(first)) {
            err.error("Command not found: " + first);
            err.println(Program.QEMU_IMG.helpHint(null));
            return ExitCodes.USAGE;
        }
        return command(command(first), argv.subList(1, argv.size()), out, err);
    }

    /** The command named {@code name}, or null. */
    static Command command(String name) {
        return switch (name) {
            case "info" -> new InfoCommand();
            case "map" -> new MapCommand();
            case "convert" -> new ConvertCommand();
            case "create" -> new CreateCommand();
            case "check" -> new CheckCommand();
            case "e2image" -> new E2imageCommand();
            case "io" -> new IoCommand();
            case "bench" -> new BenchCommand();
            case "nbd" -> new NbdCommand();
            case "snapshot" -> new SnapshotCommand();
            case "bitmap" -> new BitmapCommand();
            case "rebase" -> new RebaseCommand();
            case "commit" -> new CommitCommand();
            case "amend" -> new AmendCommand();
            case "compare" -> new CompareCommand();
            case "resize" -> new ResizeCommand();
            case "dd" -> new DdCommand();
            case "measure" -> new MeasureCommand();
            default -> null;
        };
    }

    /** Parses a command's options and runs it, turning every failure into a message and an exit code. */
    private static int command(Command command, List<String> argv, PrintWriter out, Stderr err) {
        Program program = err.program();
        List<CommandLine.Option> options = new ArrayList<>(command.options());
        options.add(Command.HELP);
        options.add(Command.DEBUG);
        if (program == Program.QEMU_IO || program == Program.QEMU_NBD) {
            options.add(Command.VERSION); // qemu-io's and qemu-nbd's options include -V; qemu-img's commands' do not
        }
        boolean debug = argv.contains("--debug");
        try {
            List<String> heldBack = command.heldBack(argv);
            CommandLine args;
            try {
                args = CommandLine.parse(argv.subList(0, argv.size() - heldBack.size()), options);
            } catch (CommandLine.UsageException ex) {
                if (program != Program.QEMU_IMG || !command.helpOnBadOption()) {
                    throw ex;
                }
                err.println(command.name() + ": " + ex.getMessage()); // getopt's own line, argv[0] being the command
                out.print(programHelp(program));
                return ExitCodes.OK;
            }
            args.positionals().addAll(heldBack);
            if (args.has("-h")) {
                out.print(program == Program.QCOW4J
                        ? CommandLine.help(command.synopsis(), command.description(), options)
                        : programHelp(program));
                return ExitCodes.OK;
            }
            if (args.has("-V")) {
                out.println(program.version(version()));
                return ExitCodes.OK;
            }
            if (!(command instanceof IoCommand) && command.options().contains(Command.OBJECT)) {
                // qemu-img's --object: checked as QEMU checks it (qemu-io's own, in order, in IoCommand)
                QemuObjects objects = args.objects();
                for (String definition : args.all("--object")) {
                    Integer exit = objects.addOption(definition, out, err);
                    if (exit != null) {
                        return exit == ExitCodes.OK ? exit : command.objectRefusedExit();
                    }
                }
            }
            return command.run(args, out, err);
        } catch (CommandLine.UsageException ex) {
            String message = program == Program.QEMU_IMG ? ex.qemuImgMessage() : ex.getMessage();
            if (!message.isEmpty()) {
                ex.reportedLines(message).forEach(err::error);
            }
            if (ex.hint()) { // else QEMU's error_report: the message alone
                String hint = program.helpHint(command.name());
                if (hint != null) {
                    err.println(hint);
                } else {
                    out.print(programHelp(program)); // qemu-io prints its usage after getopt's complaint
                }
            }
            return ExitCodes.USAGE;
        } catch (Exception | OutOfMemoryError ex) {
            out.flush();
            return ExitCodes.report(ex, err, debug);
        }
    }

    private static String help() {
        StringBuilder sb = new StringBuilder(version()).append(": inspect and convert qcow2 disk images (qemu-img compatible).\n\n")
                .append("usage: qcow4j COMMAND [OPTIONS]... (qcow4j COMMAND --help for a command's options)\n\n");
        for (String name : COMMAND_NAMES) {
            Command c = command(name);
            sb.append(String.format("  %-9s %s%n", c.name(), c.description()));
        }
        return sb.append("\n  -h, --help     Show this help.\n  -V, --version  Show the version.\n")
                .append("\nLinked as qemu-img, qemu-io or qemu-nbd, qcow4j acts as that program (see the README).\n").toString();
    }

    /** A drop-in's help: QEMU's text (qemu-img's with only the commands qcow4j has), read when asked. */
    static String programHelp(Program program) {
        String resource = program.displayName() + "-help.txt";
        try (InputStream in = Main.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IOException("missing resource " + resource);
            }
            String text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            return program == Program.QEMU_IMG ? program.version(version()) + "\n" + text : text;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
