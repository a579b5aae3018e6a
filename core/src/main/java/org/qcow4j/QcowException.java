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
    private final String qemuWords;

    public QcowException(String file, String message) {
        this(file, message, null, null);
    }

    public QcowException(String file, String message, Throwable cause) {
        this(file, message, cause, null);
    }

    /** @param qemuWords how QEMU 7.2 words the same refusal, if it refuses too (see {@link #qemuWords()}) */
    public QcowException(String file, String message, Throwable cause, String qemuWords) {
        super(file + ": " + message, cause);
        this.file = file;
        this.qemuWords = qemuWords;
    }

    /**
     * How QEMU 7.2 words its refusal of the same image, what follows its "Could not open 'FILE': " (e.g.
     * {@code "Image is too big"}); null where QEMU's words are not known or QEMU reads what qcow4j refuses. A
     * drop-in for QEMU's tools prints these; the message names file, field and value in qcow4j's own words.
     */
    public String qemuWords() {
        return qemuWords;
    }

    /** The image file the problem was found in, as the user named it. */
    public String file() {
        return file;
    }
}
