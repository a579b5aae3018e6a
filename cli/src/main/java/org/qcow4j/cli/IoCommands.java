package org.qcow4j.cli;

import java.io.PrintWriter;
import java.util.List;

/**
 * qemu-io's (QEMU 7.2) command table, its cmdinfo_t entries: each command's name and alias, how many arguments it
 * takes, whether it needs an open image or the write permission, and the words of its usage line and help, with
 * the {@code help} command that prints them. What a command does is {@link IoArgs} (its arguments) and
 * {@link IoExecutor} (its work), put together by {@link IoShell}.
 */
enum IoCommands {
    // Sorted by name, as qemu-io's table.
    ABORT(new Info("abort", null, 0, 0, false, true, false, null, "simulate a program crash using abort(3)", null)),
    DISCARD(new Info("discard", "d", 2, -1, false, false, true, "[-Cq] off len",
            "discards a number of bytes at a specified offset", """

             discards a range of bytes from the given offset

             Example:
             'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file

             Discards a segment of the currently open file.
             -C, -- report statistics in a machine parsable format
             -q, -- quiet mode, do not show I/O statistics
            """)),
    FLUSH(new Info("flush", "f", 0, 0, false, false, false, null, "flush all in-core file state to disk", null)),
    HELP(new Info("help", "?", 0, 1, true, false, false, "[command]", "help for one or all commands", null)),
    LENGTH(new Info("length", "l", 0, 0, false, false, false, null, "gets the length of the current file", null)),
    QUIT(new Info("quit", "q", -1, -1, true, false, false, null, "exit the program", null)),
    READ(new Info("read", "r", 2, -1, false, false, false, "[-abCqv] [-P pattern [-s off] [-l len]] off len",
            "reads a number of bytes at a specified offset", """

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
            """)),
    TRUNCATE(new Info("truncate", "t", 1, 3, false, false, true, "[-m prealloc_mode] off",
            "truncates the current file at the given offset", null)),
    WRITE(new Info("write", "w", 2, -1, false, false, true, "[-bcCfnquz] [-P pattern | -s source_file] off len",
            "writes a number of bytes at a specified offset", """

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
            """));

    /**
     * One command's entry, qemu-io's cmdinfo_t: the name and alias it is called by; at least {@code argmin} and at most
     * {@code argmax} (-1: no limit) arguments after the name; whether it runs with no image open ({@code global}: help
     * and quit, CMD_FLAG_GLOBAL; {@code noFileOk}: abort, CMD_NOFILE_OK); whether it needs the write permission,
     * asked for before it runs; the arguments of its usage line (or null), its one line, and the help after that
     * line (or null).
     */
    record Info(String name, String altname, int argmin, int argmax, boolean global, boolean noFileOk, boolean writes,
                String args, String oneline, String help) {
    }

    final Info info;

    IoCommands(Info info) {
        this.info = info;
    }

    /** The command named {@code name} or by its alias, or null. */
    static IoCommands find(String name) {
        for (IoCommands c : values()) {
            if (c.info.name().equals(name) || name.equals(c.info.altname())) {
                return c;
            }
        }
        return null;
    }

    /** The usage line a command with bad options or operands prints; returns EINVAL, what the command returns. */
    int usage(PrintWriter out) {
        out.println(info.name() + " " + info.args() + " -- " + info.oneline());
        return IoErrno.EINVAL;
    }

    /** {@code help}: the one line of every command, or the one line and the help of the command named. */
    static int help(PrintWriter out, List<String> argv) {
        if (argv.size() < 2) {
            for (IoCommands c : values()) {
                c.helpOneline(out, c.info.name());
            }
            out.println();
            out.println("Use 'help commandname' for extended help.");
            return 0;
        }
        IoCommands ct = find(argv.get(1));
        if (ct == null) {
            out.println("command " + argv.get(1) + " not found");
            return IoErrno.EINVAL;
        }
        ct.helpOneline(out, argv.get(1));
        if (ct.info.help() != null) {
            out.print(ct.info.help());
            out.println();
        }
        return 0;
    }

    private void helpOneline(PrintWriter out, String typed) {
        out.println(typed + " " + (info.args() != null ? info.args() + " " : "") + "-- " + info.oneline());
    }
}
