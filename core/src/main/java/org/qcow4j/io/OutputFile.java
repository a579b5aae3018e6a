package org.qcow4j.io;

import java.io.IOException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import org.qcow4j.QcowException;

/**
 * Outputs appear under their name only when complete: they are written under a temporary name beside the
 * destination and renamed into place on success, so a failed or interrupted command leaves nothing behind.
 */
public final class OutputFile {
    private OutputFile() {
    }

    /** Writes a whole file at the path it is given. */
    public interface Writer {
        void write(Path file) throws IOException;
    }

    @SuppressWarnings("try") // the old file is held only for its locks
    public static void writeAtomically(Path requested, Writer writer) throws IOException {
        Path output = requested;
        while (Files.isSymbolicLink(output)) {
            // Like qemu-img, write through a link: the file it names gets the image, the link stays.
            output = output.resolveSibling(Files.readSymbolicLink(output));
        }
        if (Files.exists(output) && !Files.isRegularFile(output)) {
            writer.write(output); // a device or pipe: write in place, there is nothing to rename
            return;
        }
        // An image being replaced may be in use: hold QEMU's write locks on it until the new one is in place.
        try (OpenFile old = Files.isRegularFile(output) ? OpenFiles.open(output, Access.REPLACE, requested.toString())
                : null) {
            replace(requested, output, writer);
        }
    }

    private static void replace(Path requested, Path output, Writer writer) throws IOException {
        Path dir = output.toAbsolutePath().getParent();
        Path tmp;
        try {
            // Not Files.createTempFile: its mode is 0600, the output should get the umask's mode like qemu-img's.
            tmp = Files.createFile(dir.resolve("." + output.getFileName() + "." + Long.toHexString(System.nanoTime())
                    + ".qcow4j-tmp"));
        } catch (FileSystemException e) {
            String reason = Files.isDirectory(dir) ? "permission denied" : "no such directory";
            throw new QcowException(requested.toString(), "cannot create: " + reason, e);
        }
        try {
            writer.write(tmp);
            Files.move(tmp, output, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException | RuntimeException | Error e) {
            // The temporary file goes too (a full disk may have stopped it anywhere); the first failure is the one told.
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException d) {
                e.addSuppressed(d);
            }
            throw e;
        }
    }
}
