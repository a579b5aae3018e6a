package org.qcow4j.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Map;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.MissingFileException;
import org.qcow4j.OpenOptions;
import org.qcow4j.WritableImage;

/**
 * qemu-io's openfile (QEMU 7.2): an image opened as the command line or the {@code open} command asks, through the
 * library (read-only, read-write, or over a temporary overlay for {@code -s}; copy-on-read, caching and discard rules
 * as {@link OpenOptions}). The flags ({@code -r -s -n -t -d -i -k -U -C}) are QEMU's BDRV_O_* bits; the block options
 * ({@code --image-opts}, {@code open -o}, {@code -f}) go through {@link ImageSpec}; the options override the flags
 * as QEMU's do, and the rules between them are QEMU's, with its messages.
 */
final class IoOpen {
    /** The open flags: QEMU's BDRV_O_* bits qemu-io sets, and its writethrough bit. */
    static final class Flags {
        boolean readOnly;
        boolean snapshot;
        boolean copyOnRead;
        /** BDRV_O_NOCACHE: cache.direct=on. */
        boolean nocache;
        /** BDRV_O_NO_FLUSH: cache.no-flush=on. */
        boolean noFlush;
        /** qemu-io's default: writethrough (its BlockBackend has no write cache unless -t says so). */
        boolean writethrough = true;
        boolean nativeAio;
        boolean ioUring;
        /** BDRV_O_UNMAP: qemu-io sets it unless -d says otherwise. */
        boolean unmap = true;
        boolean forceShare;
        /** The program's {@code --object} definitions: the secrets {@code encrypt.key-secret} names. */
        QemuObjects objects;

        Flags copy() {
            Flags f = new Flags();
            f.readOnly = readOnly;
            f.snapshot = snapshot;
            f.copyOnRead = copyOnRead;
            f.nocache = nocache;
            f.noFlush = noFlush;
            f.writethrough = writethrough;
            f.nativeAio = nativeAio;
            f.ioUring = ioUring;
            f.unmap = unmap;
            f.forceShare = forceShare;
            f.objects = objects;
            return f;
        }

        /** bdrv_parse_cache_mode ({@link ImageArgs.CacheMode}): false (nothing changed) for a mode QEMU does not have. */
        boolean cacheMode(String mode) {
            ImageArgs.CacheMode m = ImageArgs.CacheMode.of(mode);
            if (m == null) {
                return false;
            }
            writethrough = m.writethrough();
            nocache = m.direct();
            noFlush = m.noFlush();
            return true;
        }

        /** bdrv_parse_discard_flags. */
        boolean discardMode(String mode) {
            switch (mode) {
                case "off", "ignore" -> unmap = false;
                case "on", "unmap" -> unmap = true;
                default -> {
                    return false;
                }
            }
            return true;
        }

        /** bdrv_parse_aio (this QEMU has io_uring). */
        boolean aioMode(String mode) {
            switch (mode) {
                case "threads" -> {
                    // the default
                }
                case "native" -> nativeAio = true;
                case "io_uring" -> ioUring = true;
                default -> {
                    return false;
                }
            }
            return true;
        }
    }

    /** What was asked: the name operand (null with {@code --image-opts}), the block options and the flags. */
    record Request(String name, Map<String, String> options, Flags flags) {
    }

    /** An open image, how it was asked for, and what it is. */
    record Opened(DiskImage image, Request request, ImageSpec spec, boolean temporary) {
        /** Whether writes may go to it. */
        boolean writable() {
            return image instanceof WritableImage w && !w.readOnly();
        }
    }

    /** An open refused or failed: QEMU's message (error_report), the lines after it, and the cause if any. */
    static final class Failed extends Exception {
        private static final long serialVersionUID = 1L;
        private final String reason;
        private final String hint;

        /** {@code prefix} ("can't open device X: ") before {@code reason}, or null: the reason is the whole message. */
        Failed(String prefix, String reason, String hint, Throwable cause) {
            super(prefix == null ? reason : prefix + reason, cause);
            this.reason = reason;
            this.hint = hint;
        }

        /** The message without "can't open device X: ". */
        String reason() {
            return reason;
        }

        /** Prints the message as qemu-io does, with its hint and QEMU's second line for a locked image. */
        void report(Stderr err, boolean debug) {
            err.error(getMessage());
            if (hint != null) {
                err.println(hint);
            }
            if (getCause() != null) {
                ExitCodes.explain(getCause(), err);
                if (debug) {
                    getCause().printStackTrace(err);
                }
            }
        }
    }

    private IoOpen() {
    }

    static Opened open(Request r, Stderr err) throws Failed {
        Flags f = r.flags();
        String prefix = r.name() != null ? "can't open device " + r.name() + ": " : "can't open: ";
        ImageSpec spec;
        try {
            spec = ImageSpec.of(r.name(), r.options());
        } catch (ImageSpec.Refused e) {
            throw new Failed(prefix, e.getMessage(), e.hint(), null);
        }
        if (f.forceShare && spec.forceShare() != null && !spec.forceShare().equals("on")) {
            throw new Failed(null, "-U conflicts with image options", null, null);
        }
        boolean readOnly = spec.readOnly() != null ? spec.readOnly() : f.readOnly;
        if (!f.readOnly && (readOnly || Boolean.TRUE.equals(spec.fileReadOnly()))) {
            throw new Failed(prefix, "Block node is read-only", null, null);
        }
        boolean direct = spec.fileCacheDirect() != null ? spec.fileCacheDirect() : f.nocache;
        String aio = spec.aio() != null ? spec.aio() : f.nativeAio ? "native" : f.ioUring ? "io_uring" : "threads";
        if (aio.equals("native") && !direct) {
            throw new Failed(prefix, "aio=native was specified, but it requires cache.direct=on, which was not specified.",
                    null, null);
        }
        if (f.copyOnRead && readOnly) {
            throw new Failed(prefix, "Can't use copy-on-read on read-only device", null, null);
        }
        OpenOptions options = spec.openOptions(OpenOptions.defaults().withDiscard(f.unmap)
                .withWritethrough(f.writethrough).withForceShare(f.forceShare).withCopyOnRead(f.copyOnRead)
                .withQemuLayout(true)); // qemu-io's file, byte for byte
        try {
            options = spec.withSecrets(options, f.objects == null ? new QemuObjects() : f.objects);
        } catch (QemuObjects.Invalid e) {
            throw new Failed(prefix, e.getMessage(), null, null);
        }
        boolean temporary = f.snapshot && !readOnly;
        if (spec.nbd() != null) {
            return openNbd(r, spec, prefix, readOnly, temporary, f.writethrough, err);
        }
        Path path;
        try {
            path = Path.of(spec.filename());
        } catch (InvalidPathException e) {
            throw new Failed(prefix, ExitCodes.noSuchFile(spec.filename()), null, null);
        }
        try {
            String format = spec.format() != null ? spec.format() : probe(path);
            spec.checkFormatKeys(format);
            if (spec.format() == null && format.equals("raw") && !readOnly && !temporary) {
                // QEMU's warning; the library restricts block 0 of a probed raw image as QEMU does
                err.println("WARNING: Image format was not specified for '" + spec.filename() + "' and probing guessed raw.");
                err.println("         Automatically detecting the format is dangerous for raw images, write operations on "
                        + "block 0 will be restricted.");
                err.println("         Specify the 'raw' format explicitly to remove the restrictions.");
            }
            DiskImage image;
            if (readOnly) {
                image = Images.open(path, options);
            } else if (temporary) {
                image = Images.openTemporaryOverlay(path, options.withFormat(format));
            } else {
                WritableImage w = Images.openWritable(path, options);
                if (err.program() == Program.QEMU_IO && !w.repairDiagnostics().isEmpty()) {
                    w.repairDiagnostics().forEach(err::println); // what QEMU's repair on open prints, no warning
                } else {
                    for (String warning : w.warnings()) {
                        err.error("warning: " + warning);
                    }
                }
                image = w;
            }
            try {
                spec.checkAgainst(image);
            } catch (ImageSpec.Refused e) {
                image.close();
                throw e;
            }
            return new Opened(image, r, spec, temporary);
        } catch (ImageSpec.Refused e) {
            throw new Failed(prefix, e.getMessage(), e.hint(), null);
        } catch (IOException | RuntimeException e) {
            throw new Failed(prefix, reason(spec.filename(), e), null, e);
        }
    }

    /** An image on an NBD export (QEMU's nbd protocol), raw over it. */
    private static Opened openNbd(Request r, ImageSpec spec, String prefix, boolean readOnly, boolean temporary,
            boolean writethrough, Stderr err) throws Failed {
        if (temporary) {
            throw new Failed(prefix, "-s (a temporary overlay) over NBD is not supported by qcow4j", null, null);
        }
        WritableImage image;
        try {
            image = org.qcow4j.nbd.NbdClient.open(spec.nbd(), readOnly, writethrough,
                    "nbd".equals(spec.format()) ? "nbd" : "raw");
        } catch (IOException e) {
            throw new Failed(prefix, e.getMessage(), null, null);
        }
        try {
            String format = ImageArgs.rawOverNbd(image, spec.format(), spec.filename());
            if (spec.format() == null && !readOnly) {
                err.println("WARNING: Image format was not specified for '" + image.filename() + "' and probing guessed raw.");
                err.println("         Automatically detecting the format is dangerous for raw images, write operations on "
                        + "block 0 will be restricted.");
                err.println("         Specify the 'raw' format explicitly to remove the restrictions.");
            }
            spec.checkFormatKeys(format);
            if (!readOnly && image.readOnly()) {
                throw new ImageSpec.Refused("Block node is read-only");
            }
            return new Opened(image, r, spec, false);
        } catch (ImageSpec.Refused e) {
            closeQuietly(image);
            throw new Failed(prefix, e.getMessage(), e.hint(), null);
        } catch (IOException | RuntimeException e) {
            closeQuietly(image);
            throw new Failed(prefix, ExitCodes.openReason(spec.filename(), e), null, e);
        }
    }

    private static void closeQuietly(DiskImage image) {
        try {
            image.close();
        } catch (IOException ignored) {
            // already failing
        }
    }

    /** "qcow2" when the file starts with qcow2's magic, else "raw" (as qemu probes among the two). */
    private static String probe(Path path) throws IOException {
        if (!Files.exists(path)) {
            throw new NoSuchFileException(path.toString());
        }
        if (Files.isDirectory(path) || !Files.isReadable(path)) {
            return "qcow2"; // let the library say what is wrong
        }
        return Images.probeFormat(path);
    }

    /** The reason after "can't open device X: ": QEMU's wording for a missing file, else the library's line. */
    private static String reason(String filename, Throwable e) {
        if (!(e instanceof MissingFileException) && !exists(filename)) {
            return ExitCodes.noSuchFile(filename); // a probe's NoSuchFileException, before the library is asked
        }
        return ExitCodes.openReason(filename, e);
    }

    private static boolean exists(String name) {
        try {
            return Files.exists(Path.of(name));
        } catch (InvalidPathException e) {
            return false;
        }
    }
}
