package org.qcow4j.cli;

import java.io.PrintWriter;
import java.util.List;

/** One qcow4j command (info, map, convert...): its name, help and options, and what it does. */
abstract class Command {
    /** The options every command takes. */
    static final CommandLine.Option HELP = CommandLine.Option.flag("Show this help.", "-h", "--help");
    static final CommandLine.Option DEBUG = CommandLine.Option.flag("Show stack traces of errors.", "--debug");
    static final CommandLine.Option VERSION = CommandLine.Option.flag("Show the version.", "-V", "--version");
    /** Options several commands take. */
    static final CommandLine.Option FORMAT = CommandLine.Option.value("FMT",
            "Image format (qcow2 or raw); probed if omitted.", "-f");
    static final CommandLine.Option FORCE_SHARE = CommandLine.Option.flag(
            "Read the image whatever other processes do with it: no image lock refuses it.", "-U", "--force-share");
    static final CommandLine.Option SOURCE_CACHE = CommandLine.Option.value("CACHE",
            "Cache mode for reading (none, writeback, writethrough, directsync, unsafe): checked, then the page cache is used.",
            "-T");
    static final CommandLine.Option OBJECT = CommandLine.Option.value("OBJECTDEF",
            "Define an object: secret,id=ID,data=DATA|file=FILE.", "--object");
    static final CommandLine.Option IMAGE_OPTS = CommandLine.Option.flag(
            "The image operands are option strings (driver=qcow2,file.filename=PATH...).", "--image-opts");
    static final CommandLine.Option OUTPUT = CommandLine.Option.value("human|json", "Output format (default: human).",
            "--output");

    private final String name;
    private final String synopsis;
    private final String description;
    private final List<CommandLine.Option> options;

    /**
     * @param options this command's options, without {@link #HELP} and {@link #DEBUG}
     */
    Command(String name, String synopsis, String description, CommandLine.Option... options) {
        this.name = name;
        this.synopsis = synopsis;
        this.description = description;
        this.options = List.of(options);
    }

    final String name() {
        return name;
    }

    final String synopsis() {
        return synopsis;
    }

    final String description() {
        return description;
    }

    final List<CommandLine.Option> options() {
        return options;
    }

    /**
     * The operands at the end of {@code argv} kept from option parsing and appended to the positionals (qemu-img
     * resize takes its SIZE off first, so that {@code -1G} is no option); none by default.
     */
    List<String> heldBack(List<String> argv) throws CommandLine.UsageException {
        return List.of();
    }

    /** The exit code when an {@code --object} definition is refused (qemu-img compare's errors are 2). */
    int objectRefusedExit() {
        return ExitCodes.FAILURE;
    }

    /**
     * Whether qemu-img answers an unknown option or a missing argument with getopt's own line and its help, exit 0
     * (measure's {@code case '?': help()}), instead of its usual message.
     */
    boolean helpOnBadOption() {
        return false;
    }

    /**
     * Runs the command; returns the exit code. Results go to {@code out}; {@code err} takes what a command says
     * besides the one error line {@link ExitCodes} prints for an exception (check's findings, io's failures).
     */
    abstract int run(CommandLine args, PrintWriter out, Stderr err) throws Exception;
}
