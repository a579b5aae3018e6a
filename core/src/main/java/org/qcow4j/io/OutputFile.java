package org.qcow4j.io;

import java.io.IOException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import org.qcow4j.QcowException;

/**
 * Outputs appear under their name only when complete: they are written under a temporary name beside the
 * destination and renamed into place on success, so a failed or interrupted command never leaves a partly written
 * file under the name (the temporary file is deleted on failure).
 *
 * <p>A file being replaced is removed when the writing starts, once its locks show no one uses it, as qemu-img's
 * convert and create truncate it then: a failed command leaves no file under the name, not the old one. Kept to the
 * end instead, it cost a 1 GiB convert over an existing output up to 4x the time (0.5 s against 2 s): renamed over,
 * the old file makes ext4 (auto_da_alloc) write out the new one's delayed blocks before the rename returns; unlinked
 * just before the rename, its page cache is freed only then, so the new output's pages were all freshly allocated
 * memory instead of the old file's (measured: twice the kernel time of the write).
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
        Path tmp;
        // An image being replaced may be in use: QEMU's write locks on it must be free before it is removed.
        try (OpenFile old = Files.isRegularFile(output) ? OpenFiles.open(output, Access.REPLACE, requested.toString())
                : null) {
            tmp = createTemporary(requested, output);
            if (old != null) {
                removeOld(requested, output, tmp);
            }
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

    /** An empty file beside {@code output}, for the output to be written to. */
    private static Path createTemporary(Path requested, Path output) throws IOException {
        Path dir = output.toAbsolutePath().getParent();
        try {
            // Not Files.createTempFile: its mode is 0600, the output should get the umask's mode like qemu-img's.
            return Files.createFile(dir.resolve("." + output.getFileName() + "." + Long.toHexString(System.nanoTime())
                    + ".qcow4j-tmp"));
        } catch (FileSystemException e) {
            String reason = Files.isDirectory(dir) ? "permission denied" : "no such directory";
            throw new QcowException(requested.toString(), "cannot create: " + reason, e);
        }
    }

    /** Removes the file being replaced (see the class comment); if that fails, the temporary file goes too. */
    private static void removeOld(Path requested, Path output, Path tmp) throws IOException {
        try {
            Files.deleteIfExists(output);
        } catch (IOException e) {
            Files.deleteIfExists(tmp);
            throw new QcowException(requested.toString(), "cannot replace: " + e.getMessage(), e);
        }
    }
}
