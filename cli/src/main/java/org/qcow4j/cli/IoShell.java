package org.qcow4j.cli;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntConsumer;

/**
 * The command interpreter of {@code io}: runs command lines as qemu-io's (QEMU 7.2) qemuio_command does. A line is
 * split into words, its command found in {@link IoCommands}, the checks every command gets are made (an open image,
 * the number of arguments, the write permission), then the command's arguments are parsed by {@link IoArgs} and it
 * is run by {@link IoExecutor}, on stdout and stderr as qemu-io prints. A command returns 0 or a negative errno, as
 * in qemu-io; any failure makes the exit code 1.
 */
final class IoShell {
    private final PrintWriter out;
    private final Stderr err;
    private final IoArgs args;
    private final IoExecutor executor;
    private boolean quit;
    private boolean failed;

    /**
     * @param image     the open image, or null (commands that need one say so)
     * @param quiet     {@code -q}: every command as if given {@code -q}
     * @param imageOpts {@code --image-opts}: open's operand is an option string
     * @param raise     what raising a signal does (sigraise, abort): see {@link IoSignals#raise}
     */
    IoShell(IoOpen.Opened image, PrintWriter out, Stderr err, boolean quiet, boolean debug, boolean imageOpts,
            IntConsumer raise) {
        this.out = out;
        this.err = err;
        this.args = new IoArgs(out, err, quiet);
        this.executor = new IoExecutor(image, out, err, debug, imageOpts, raise);
    }

    /** Whether {@code quit} was run: no more commands. */
    boolean quit() {
        return quit;
    }

    /** Whether any command failed (qemu-io then exits with 1). */
    boolean failed() {
        return failed;
    }

    /** At exit: the aio completions printed, the image closed; false if closing failed (reported). */
    boolean finish() {
        return executor.finish();
    }

    /** Runs one command line (qemu-io's qemuio_command); returns 0 or a negative errno. */
    int execute(String line) {
        List<String> argv = breakline(line);
        if (argv.isEmpty()) {
            return 0;
        }
        int ret;
        IoCommands ct = IoCommands.find(argv.get(0));
        if (ct == null) {
            err.println("command \"" + argv.get(0) + "\" not found");
            ret = IoErrno.EINVAL;
        } else {
            ret = command(ct, argv);
        }
        if (ret < 0) {
            failed = true;
        }
        return ret;
    }

    /** Words separated by single spaces, empty ones skipped (qemu-io's breakline: tabs are not separators). */
    static List<String> breakline(String line) {
        List<String> words = new ArrayList<>();
        int start = 0;
        while (start <= line.length()) {
            int sp = line.indexOf(' ', start);
            int end = sp < 0 ? line.length() : sp;
            if (end > start) {
                words.add(line.substring(start, end));
            }
            start = end + 1;
        }
        return words;
    }

    private int command(IoCommands ct, List<String> argv) {
        String cmd = argv.get(0);
        IoCommands.Info c = ct.info;
        if (!c.global() && !c.noFileOk() && !executor.hasImage()) {
            err.println("no file open, try 'help open'");
            return IoErrno.EINVAL;
        }
        int n = argv.size() - 1;
        if (n < c.argmin() || (c.argmax() != -1 && n > c.argmax())) {
            if (c.argmax() == -1) {
                err.println("bad argument count " + n + " to " + cmd + ", expected at least " + c.argmin() + " arguments");
            } else if (c.argmin() == c.argmax()) {
                err.println("bad argument count " + n + " to " + cmd + ", expected " + c.argmin() + " arguments");
            } else {
                err.println("bad argument count " + n + " to " + cmd + ", expected between " + c.argmin() + " and "
                        + c.argmax() + " arguments");
            }
            return IoErrno.EINVAL;
        }
        if (c.writes() && !executor.writable()) {
            // qemu-io asks for the write permission before running the command.
            err.error("Block node is read-only");
            return IoErrno.EPERM;
        }
        try {
            return run(ct, argv);
        } catch (IoArgs.Refused r) {
            return r.errno;
        } catch (RuntimeException | OutOfMemoryError e) {
            // Only the I/O itself is expected to fail (reported by the commands); anything else is reported here.
            return executor.ioError(c.name(), e, false);
        }
    }

    /** The command itself: its arguments parsed and checked, then its work done. */
    private int run(IoCommands ct, List<String> argv) throws IoArgs.Refused {
        return switch (ct) {
            case ABORT -> executor.abort();
            case AIO_FLUSH -> executor.aioFlush();
            case AIO_READ -> executor.aioRead(args.aioRead(argv));
            case AIO_WRITE -> executor.aioWrite(args.aioWrite(argv));
            case ALLOC -> executor.alloc(args.alloc(argv));
            case BREAK, REMOVE_BREAK, RESUME, WAIT_BREAK -> executor.breakpoint(ct, argv);
            case CLOSE -> executor.close();
            case DISCARD -> executor.discard(args.discard(argv));
            case FLUSH -> executor.flush();
            case HELP -> IoCommands.help(out, argv);
            case INFO -> executor.info();
            case LENGTH -> executor.length();
            case MAP -> executor.map();
            case OPEN -> executor.open(args.open(argv, executor.imageOpts()));
            case QUIT -> {
                quit = true;
                yield 0;
            }
            case READ -> executor.read(args.read(argv));
            case READV -> executor.readv(args.readv(argv));
            case REOPEN -> executor.reopen(args.reopen(argv));
            case SIGRAISE -> executor.sigraise(args.sigraise(argv));
            case SLEEP -> executor.sleep(args.sleep(argv));
            case TRUNCATE -> executor.truncate(args.truncate(argv));
            case WRITE -> executor.write(args.write(argv));
            case WRITEV -> executor.writev(args.writev(argv));
        };
    }
}
