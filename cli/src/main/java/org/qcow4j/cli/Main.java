package org.qcow4j.cli;

import java.io.PrintStream;
import java.io.PrintWriter;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ScopeType;

/** {@code qcow4j}: a qemu-img shaped command line for qcow2 images. */
@Command(name = "qcow4j", mixinStandardHelpOptions = true, version = "qcow4j 0.1.0",
        description = "Inspect and convert qcow2 disk images (qemu-img compatible commands).",
        subcommands = {InfoCommand.class, MapCommand.class, ConvertCommand.class})
public final class Main implements Runnable {
    @Option(names = "--debug", scope = ScopeType.INHERIT, description = "Show stack traces of errors.")
    boolean debug;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "a command is required (info, map, convert)");
    }

    public static void main(String[] args) {
        int code = run(args, System.out, System.err);
        System.out.flush();
        System.exit(code);
    }

    /** Runs one command line; returns the exit code. Output goes to {@code out}, diagnostics to {@code err}. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        Main main = new Main();
        CommandLine cl = new CommandLine(main);
        PrintWriter errWriter = new PrintWriter(err, true);
        cl.setOverwrittenOptionsAllowed(true); // like qemu-img: the last of a repeated option wins
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(errWriter);
        cl.setParameterExceptionHandler((ex, a) -> {
            errWriter.println("qcow4j: " + ex.getMessage());
            errWriter.println("Try 'qcow4j " + (ex.getCommandLine() == cl ? "" : ex.getCommandLine().getCommandName() + " ")
                    + "--help' for more information.");
            return ExitCodes.USAGE;
        });
        cl.setExecutionExceptionHandler((ex, c, parsed) -> ExitCodes.report(ex, errWriter, main.debug));
        int code = cl.execute(args);
        out.flush();
        return code;
    }
}
