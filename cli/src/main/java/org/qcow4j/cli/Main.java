package org.qcow4j.cli;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** {@code qcow4j}: a qemu-img shaped command line for qcow2 images. */
public final class Main {
    static final List<Command> COMMANDS = List.of(new InfoCommand(), new MapCommand(), new ConvertCommand(), new CreateCommand(),
            new CheckCommand(), new E2imageCommand(), new IoCommand(), new BenchCommand());

    private Main() {
    }

    /** "qcow4j" and the POM's version (read only when asked: --version and the help). */
    static String version() {
        try (InputStream in = Main.class.getResourceAsStream("version.txt")) {
            return in == null ? "qcow4j" : "qcow4j " + new String(in.readAllBytes(), StandardCharsets.UTF_8).trim();
        } catch (IOException e) {
            return "qcow4j";
        }
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    /** Runs one command line; returns the exit code. Output goes to {@code out}, diagnostics to {@code err}. */
    public static int run(String[] argv, PrintStream out, PrintStream err) {
        PrintWriter o = new PrintWriter(new BufferedWriter(new OutputStreamWriter(out, StandardCharsets.UTF_8)));
        PrintWriter e = new PrintWriter(new OutputStreamWriter(err, StandardCharsets.UTF_8), true);
        try {
            return dispatch(Arrays.asList(argv), o, e);
        } finally {
            o.flush();
            e.flush();
        }
    }

    private static int dispatch(List<String> argv, PrintWriter out, PrintWriter err) {
        if (argv.isEmpty() || argv.get(0).equals("-h") || argv.get(0).equals("--help")) {
            (argv.isEmpty() ? err : out).print(help());
            return argv.isEmpty() ? ExitCodes.USAGE : ExitCodes.OK;
        }
        if (argv.get(0).equals("-V") || argv.get(0).equals("--version")) {
            out.println(version());
            return ExitCodes.OK;
        }
        Command command = COMMANDS.stream().filter(c -> c.name().equals(argv.get(0))).findFirst().orElse(null);
        if (command == null) {
            err.println("qcow4j: unknown command '" + argv.get(0) + "'");
            err.println("Try 'qcow4j --help' for more information.");
            return ExitCodes.USAGE;
        }
        List<CommandLine.Option> options = new ArrayList<>(command.options());
        options.add(Command.HELP);
        options.add(Command.DEBUG);
        boolean debug = argv.contains("--debug");
        try {
            CommandLine args = CommandLine.parse(argv.subList(1, argv.size()), options);
            if (args.has("-h")) {
                out.print(CommandLine.help(command.synopsis(), command.description(), options));
                return ExitCodes.OK;
            }
            return command.run(args, out, err);
        } catch (CommandLine.UsageException ex) {
            err.println("qcow4j: " + ex.getMessage());
            err.println("Try 'qcow4j " + command.name() + " --help' for more information.");
            return ExitCodes.USAGE;
        } catch (Exception | OutOfMemoryError ex) {
            out.flush();
            return ExitCodes.report(ex, err, debug);
        }
    }

    private static String help() {
        StringBuilder sb = new StringBuilder(version()).append(": inspect and convert qcow2 disk images (qemu-img compatible).\n\n")
                .append("usage: qcow4j COMMAND [OPTIONS]... (qcow4j COMMAND --help for a command's options)\n\n");
        for (Command c : COMMANDS) {
            sb.append(String.format("  %-9s %s%n", c.name(), c.description()));
        }
        return sb.append("\n  -h, --help     Show this help.\n  -V, --version  Show the version.\n").toString();
    }
}
