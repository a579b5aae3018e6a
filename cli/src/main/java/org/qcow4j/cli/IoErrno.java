package org.qcow4j.cli;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import org.qcow4j.InvalidTableException;
import org.qcow4j.RefusedRequestException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WriteRefusedException;

/**
 * The errors of {@code io}'s commands as qemu-io has them: the (negative) errno a command returns, which errno a
 * failure of the library or the file system stands for, strerror's words for it, and the one line that describes an
 * exception on stderr.
 */
final class IoErrno {
    static final int EPERM = -1;
    static final int ENOENT = -2;
    static final int EIO = -5;
    static final int ENOMEM = -12;
    static final int EACCES = -13;
    static final int EINVAL = -22;
    static final int EFBIG = -27;
    static final int ENOSPC = -28;
    static final int EROFS = -30;
    static final int ENOTSUP = -95;

    private IoErrno() {
    }

    /** The errno QEMU would have returned for the failure {@code e}. */
    static int of(Throwable e) {
        if (e instanceof OutOfMemoryError) {
            return ENOMEM;
        }
        if (e instanceof RefusedRequestException r) {
            return switch (r.reason()) {
                case INVALID -> EINVAL;
                case CONFLICT -> EIO;
                case NOT_SUPPORTED -> ENOTSUP;
                case TOO_LARGE -> EFBIG;
            };
        }
        if (e instanceof UnsupportedFeatureException) {
            return ENOTSUP;
        }
        if (e instanceof InvalidTableException t) {
            return switch (t.reason()) {
                case TOO_LARGE -> EFBIG;
                case OFFSET_INVALID -> EINVAL;
            };
        }
        if (e instanceof WriteRefusedException) {
            return EPERM;
        }
        if (e instanceof NoSuchFileException) {
            return ENOENT;
        }
        if (e instanceof AccessDeniedException) {
            return EACCES;
        }
        if (e instanceof FileSystemException f && f.getReason() != null) {
            String r = f.getReason();
            if (r.contains("No space left")) {
                return ENOSPC;
            }
            if (r.contains("Read-only file system")) {
                return EROFS;
            }
        }
        if (e instanceof IOException io && io.getMessage() != null && io.getMessage().contains("No space left on device")) {
            return ENOSPC;
        }
        if (e instanceof IllegalArgumentException) {
            return EINVAL;
        }
        return EIO;
    }

    /** glibc's strerror of a (negative) errno. */
    static String strerror(int errno) {
        return switch (errno) {
            case EPERM -> "Operation not permitted";
            case ENOENT -> "No such file or directory";
            case EIO -> "Input/output error";
            case ENOMEM -> "Cannot allocate memory";
            case EACCES -> "Permission denied";
            case EINVAL -> "Invalid argument";
            case EFBIG -> "File too large";
            case ENOSPC -> "No space left on device";
            case EROFS -> "Read-only file system";
            case ENOTSUP -> "Operation not supported";
            default -> "Unknown error " + (-errno);
        };
    }

    /** One line for an exception, as ExitCodes words them but for strerror's capitals ("No such file or directory"). */
    static String describe(Throwable e) {
        return ExitCodes.describe(e, strerror(ENOENT), strerror(EACCES));
    }
}
