package org.qcow4j.cli;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import org.qcow4j.ImageLockedException;
import org.qcow4j.MissingFileException;
import org.qcow4j.QcowException;

/** The one place exceptions become a line on stderr and an exit code (qemu-img uses 1 for failures). */
final class ExitCodes {
    static final int OK = 0;
    static final int FAILURE = 1;
    static final int USAGE = 1;

    private ExitCodes() {
    }

    static int report(Throwable ex, Stderr err, boolean debug) {
        err.error(describe(ex));
        explain(ex, err);
        if (debug) {
            ex.printStackTrace(err);
        }
        err.flush();
        return FAILURE;
    }

    /** QEMU's second line for an image another process holds. */
    static void explain(Throwable ex, Stderr err) {
        if (ex instanceof ImageLockedException e) {
            err.println("Is another process using the image [" + e.file() + "]?");
        }
    }

    /**
     * Why an image did not open, in QEMU's words where they are known (bdrv_open's message, which qemu-img puts after
     * "Could not open 'IMAGE': " and qemu-io after "can't open device IMAGE: "); else the library's line without
     * its leading "FILE: ".
     */
    static String openReason(String filename, Throwable ex) {
        if (ex instanceof MissingFileException m) {
            return "Could not open backing file: ".repeat(m.depth()) + noSuchFile(m.file());
        }
        String m = describe(ex, "No such file or directory", "Permission denied");
        return m.startsWith(filename + ": ") && m.length() > filename.length() + 2 ? m.substring(filename.length() + 2) : m;
    }

    /** QEMU's words for a file that is not there: {@code Could not open 'FILE': No such file or directory}. */
    static String noSuchFile(String file) {
        return "Could not open '" + file + "': No such file or directory";
    }

    private static String describe(Throwable ex) {
        return describe(ex, "no such file or directory", "permission denied");
    }

    /**
     * One line for an exception; a missing file and a denied access end with {@code noSuchFile} and
     * {@code permissionDenied} (in lower case for qemu-img's commands, strerror's capitals for io's).
     */
    static String describe(Throwable ex, String noSuchFile, String permissionDenied) {
        if (ex instanceof QcowException) {
            return ex.getMessage();
        }
        if (ex instanceof NoSuchFileException e) {
            return e.getFile() + ": " + noSuchFile;
        }
        if (ex instanceof AccessDeniedException e) {
            return e.getFile() + ": " + permissionDenied;
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
