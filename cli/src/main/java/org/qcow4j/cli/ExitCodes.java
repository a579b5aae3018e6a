package org.qcow4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import org.qcow4j.QcowException;

/** The one place exceptions become a line on stderr and an exit code (qemu-img uses 1 for failures). */
final class ExitCodes {
    static final int OK = 0;
    static final int FAILURE = 1;
    static final int USAGE = 1;

    private ExitCodes() {
    }

    static int report(Throwable ex, PrintWriter err, boolean debug) {
        err.println("qcow4j: " + describe(ex));
        if (debug) {
            ex.printStackTrace(err);
        }
        err.flush();
        return FAILURE;
    }

    private static String describe(Throwable ex) {
        if (ex instanceof QcowException) {
            return ex.getMessage();
        }
        if (ex instanceof NoSuchFileException e) {
            return e.getFile() + ": no such file or directory";
        }
        if (ex instanceof AccessDeniedException e) {
            return e.getFile() + ": permission denied";
        }
        if (ex instanceof FileSystemException e) {
            return e.getFile() + ": " + (e.getReason() != null ? e.getReason() : e.getClass().getSimpleName());
        }
        if (ex instanceof IOException) {
            return ex.getMessage() != null ? ex.getMessage() : ex.toString();
        }
        if (ex instanceof OutOfMemoryError) {
            return "out of memory";
        }
        return "internal error: " + ex + " (run with --debug for details)";
    }
}
