package org.qcow4j.cli;

import java.io.PrintWriter;
import java.util.List;

/** One qcow4j command (info, map, convert): its options, its help and what it does. */
interface Command {
    /** The options every command takes. */
    CommandLine.Option HELP = CommandLine.Option.flag("Show this help.", "-h", "--help");
    CommandLine.Option DEBUG = CommandLine.Option.flag("Show stack traces of errors.", "--debug");
    CommandLine.Option FORMAT = CommandLine.Option.value("FMT", "Image format (qcow2 or raw); probed if omitted.", "-f");
    CommandLine.Option FORCE_SHARE = CommandLine.Option.flag(
            "Accepted for qemu-img compatibility: inputs are opened read-only, without locks.", "-U", "--force-share");
    CommandLine.Option OUTPUT = CommandLine.Option.value("human|json", "Output format (default: human).", "--output");

    String name();

    String synopsis();

    String description();

    /** This command's options, without {@link #HELP} and {@link #DEBUG}. */
    List<CommandLine.Option> options();

    /** Runs the command; returns the exit code. */
    int run(CommandLine args, PrintWriter out) throws Exception;

    /** Runs the command with a stream for diagnostics besides the one error line (check's findings). */
    default int run(CommandLine args, PrintWriter out, PrintWriter err) throws Exception {
        return run(args, out);
    }
}
