package org.qcow4j.cli;

import java.io.PrintWriter;
import java.util.List;

/**
 * qemu-io's (QEMU 7.2) command table, its cmdinfo_t entries (qemu-io-cmds.c, and qemu-io.c's open, close and quit):
 * each command's name and alias, how many arguments it takes, whether it needs an open image or the write
 * permission, and the words of its usage line and help, with the {@code help} command that prints them. What a
 * command does is {@link IoArgs} (its arguments) and {@link IoExecutor} (its work), put together by {@link IoShell}.
 */
enum IoCommands {
    // Sorted by name, as qemu-io's table (qsort by strcmp); the help texts are qemu-io's, byte for byte.
    ABORT(new Info("abort", null, 0, 0, false, true, false, null,
            "simulate a program crash using abort(3)", null)),
    AIO_FLUSH(new Info("aio_flush", null, 0, 0, false, false, false, null,
            "completes all outstanding aio requests", null)),
    AIO_READ(new Info("aio_read", null, 2, -1, false, false, false, "[-Ciqv] [-P pattern] off len [len..]",
            "asynchronously reads a number of bytes", """

             asynchronously reads a range of bytes from the given offset

             Example:
             'aio_read -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file

             Reads a segment of the currently open file, optionally dumping it to the
             standard output stream (with -v option) for subsequent inspection.
             The read is performed asynchronously and the aio_flush command must be
             used to ensure all outstanding aio requests have been completed.
             Note that due to its asynchronous nature, this command will be
             considered successful once the request is submitted, independently
             of potential I/O errors or pattern mismatches.
             -C, -- report statistics in a machine parsable format
             -P, -- use a pattern to verify read data
             -i, -- treat request as invalid, for exercising stats
             -v, -- dump buffer to standard output
             -q, -- quiet mode, do not show I/O statistics

            """)),
    AIO_WRITE(new Info("aio_write", null, 2, -1, false, false, true, "[-Cfiquz] [-P pattern] off len [len..]",
            "asynchronously writes a number of bytes", """

             asynchronously writes a range of bytes from the given offset source
             from multiple buffers

             Example:
             'aio_write 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file

             Writes into a segment of the currently open file, using a buffer
             filled with a set pattern (0xcdcdcdcd).
             The write is performed asynchronously and the aio_flush command must be
             used to ensure all outstanding aio requests have been completed.
             Note that due to its asynchronous nature, this command will be
             considered successful once the request is submitted, independently
             of potential I/O errors or pattern mismatches.
             -P, -- use different pattern to fill file
             -C, -- report statistics in a machine parsable format
             -f, -- use Force Unit Access semantics
             -i, -- treat request as invalid, for exercising stats
             -q, -- quiet mode, do not show I/O statistics
             -u, -- with -z, allow unmapping
             -z, -- write zeroes using blk_aio_pwrite_zeroes

            """)),
    ALLOC(new Info("alloc", "a", 1, 2, false, false, false, "offset [count]",
            "checks if offset is allocated in the file", null)),
    BREAK(new Info("break", null, 2, 2, false, false, false, "event tag",
            "sets a breakpoint on event and tags the stopped request as tag", null)),
    CLOSE(new Info("close", "c", 0, 0, false, false, false, null,
            "close the current open file", null)),
    DISCARD(new Info("discard", "d", 2, -1, false, false, true, "[-Cq] off len",
            "discards a number of bytes at a specified offset", """

             discards a range of bytes from the given offset

             Example:
             'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file

             Discards a segment of the currently open file.
             -C, -- report statistics in a machine parsable format
             -q, -- quiet mode, do not show I/O statistics

            """)),
    FLUSH(new Info("flush", "f", 0, 0, false, false, false, null,
            "flush all in-core file state to disk", null)),
    HELP(new Info("help", "?", 0, 1, true, false, false, "[command]",
            "help for one or all commands", null)),
    INFO(new Info("info", "i", 0, 0, false, false, false, null,
            "prints information about the current file", null)),
    LENGTH(new Info("length", "l", 0, 0, false, false, false, null,
            "gets the length of the current file", null)),
    MAP(new Info("map", null, 0, 0, false, false, false, "",
            "prints the allocated areas of a file", null)),
    OPEN(new Info("open", "o", 1, -1, false, true, false, "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
            "open the file specified by path", """

             opens a new file in the requested mode

             Example:
             'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached

             Opens a file for subsequent use by all of the other qemu-io commands.
             -r, -- open file read-only
             -s, -- use snapshot file
             -C, -- use copy-on-read
             -n, -- disable host cache, short for -t none
             -U, -- force shared permissions
             -k, -- use kernel AIO implementation (Linux only, prefer use of -i)
             -i, -- use AIO mode (threads, native or io_uring)
             -t, -- use the given cache mode for the image
             -d, -- use the given discard mode for the image
             -o, -- options to be given to the block driver
            """)),
    QUIT(new Info("quit", "q", -1, -1, true, false, false, null,
            "exit the program", null)),
    READ(new Info("read", "r", 2, -1, false, false, false, "[-abCqv] [-P pattern [-s off] [-l len]] off len",
            "reads a number of bytes at a specified offset", """

             reads a range of bytes from the given offset

             Example:
             'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file

             Reads a segment of the currently open file, optionally dumping it to the
             standard output stream (with -v option) for subsequent inspection.
             -b, -- read from the VM state rather than the virtual disk
             -C, -- report statistics in a machine parsable format
             -l, -- length for pattern verification (only with -P)
             -p, -- ignored for backwards compatibility
             -P, -- use a pattern to verify read data
             -q, -- quiet mode, do not show I/O statistics
             -s, -- start offset for pattern verification (only with -P)
             -v, -- dump buffer to standard output

            """)),
    READV(new Info("readv", null, 2, -1, false, false, false, "[-Cqv] [-P pattern] off len [len..]",
            "reads a number of bytes at a specified offset", """

             reads a range of bytes from the given offset into multiple buffers

             Example:
             'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file

             Reads a segment of the currently open file, optionally dumping it to the
             standard output stream (with -v option) for subsequent inspection.
             Uses multiple iovec buffers if more than one byte range is specified.
             -C, -- report statistics in a machine parsable format
             -P, -- use a pattern to verify read data
             -v, -- dump buffer to standard output
             -q, -- quiet mode, do not show I/O statistics

            """)),
    REMOVE_BREAK(new Info("remove_break", null, 1, 1, false, false, false, "tag",
            "remove a breakpoint by tag", null)),
    REOPEN(new Info("reopen", null, 0, -1, false, false, false, "[(-r|-w)] [-c cache] [-o options]",
            "reopens an image with new options", """

             Changes the open options of an already opened image

             Example:
             'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image

             -r, -- Reopen the image read-only
             -w, -- Reopen the image read-write
             -c, -- Change the cache mode to the given value
             -o, -- Changes block driver options (cf. 'open' command)

            """)),
    RESUME(new Info("resume", null, 1, 1, false, false, false, "tag",
            "resumes the request tagged as tag", null)),
    SIGRAISE(new Info("sigraise", null, 1, 1, false, true, false, "signal",
            "raises a signal", """

             raises the given signal

             Example:
             'sigraise 15' - raises SIGTERM

             Invokes raise(signal), where "signal" is the mandatory integer argument
             given to sigraise.

            """)),
    SLEEP(new Info("sleep", null, 1, 1, false, true, false, null,
            "waits for the given value in milliseconds", null)),
    TRUNCATE(new Info("truncate", "t", 1, 3, false, false, true, "[-m prealloc_mode] off",
            "truncates the current file at the given offset", null)),
    WAIT_BREAK(new Info("wait_break", null, 1, 1, false, false, false, "tag",
            "waits for the suspension of a request", null)),
    WRITE(new Info("write", "w", 2, -1, false, false, true, "[-bcCfnquz] [-P pattern | -s source_file] off len",
            "writes a number of bytes at a specified offset", """

             writes a range of bytes from the given offset

             Example:
             'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file

             Writes into a segment of the currently open file, using a buffer
             filled with a set pattern (0xcdcdcdcd).
             -b, -- write to the VM state rather than the virtual disk
             -c, -- write compressed data with blk_write_compressed
             -f, -- use Force Unit Access semantics
             -n, -- with -z, don't allow slow fallback
             -p, -- ignored for backwards compatibility
             -P, -- use different pattern to fill file
             -s, -- use a pattern file to fill the write buffer
             -C, -- report statistics in a machine parsable format
             -q, -- quiet mode, do not show I/O statistics
             -u, -- with -z, allow unmapping
             -z, -- write zeroes using blk_co_pwrite_zeroes

            """)),
    WRITEV(new Info("writev", null, 2, -1, false, false, true, "[-Cfq] [-P pattern] off len [len..]",
            "writes a number of bytes at a specified offset", """

             writes a range of bytes from the given offset source from multiple buffers

             Example:
             'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file

             Writes into a segment of the currently open file, using a buffer
             filled with a set pattern (0xcdcdcdcd).
             -P, -- use different pattern to fill file
             -C, -- report statistics in a machine parsable format
             -f, -- use Force Unit Access semantics
             -q, -- quiet mode, do not show I/O statistics

            """));

    /**
     * One command's entry, qemu-io's cmdinfo_t: the name and alias it is called by; at least {@code argmin} and at most
     * {@code argmax} (-1: no limit) arguments after the name; whether it runs with no image open ({@code global}: help
     * and quit, CMD_FLAG_GLOBAL; {@code noFileOk}: CMD_NOFILE_OK); whether it needs the write permission, asked for
     * before it runs; the arguments of its usage line (or null), its one line, and the text its help prints after
     * that line (or null).
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
        }
        return 0;
    }

    private void helpOneline(PrintWriter out, String typed) {
        out.println(typed + " " + (info.args() != null ? info.args() + " " : "") + "-- " + info.oneline());
    }
}
