package org.qcow4j;

import java.io.IOException;

/**
 * Root of qcow4j's exceptions: an image (or its backing chain) cannot be opened or read as asked.
 * Every subclass names the file it is about, so a command can print one line and exit
 * (see {@code org.qcow4j.cli.ExitCodes}, the one place exceptions become exit codes).
 */
public class QcowException extends IOException {
    private static final long serialVersionUID = 1L;
    private final String file;

    public QcowException(String file, String message) {
        super(file + ": " + message);
        this.file = file;
    }

    public QcowException(String file, String message, Throwable cause) {
        super(file + ": " + message, cause);
        this.file = file;
    }

    /** The image file the problem was found in, as the user named it. */
    public String file() {
        return file;
    }
}
