package org.qcow4j.io;

import org.qcow4j.QcowException;

/**
 * The file itself failed: a read, write, extension or flush of an image file returned an error (a full disk, a
 * failing device). Thrown by {@link FileStorage}, naming the file, so writers can tell it from damage they found.
 */
public final class FileIOException extends QcowException {
    private static final long serialVersionUID = 1L;

    FileIOException(String file, String message, Throwable cause) {
        super(file, message, cause);
    }
}
