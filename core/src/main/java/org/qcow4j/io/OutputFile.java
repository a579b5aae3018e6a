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
 * <p>{@link #writeAtomically} (create's small outputs) renames over a file being replaced, so the name always holds
 * the old file or the complete new one. {@link #writeReplacing} (convert's and e2image's large outputs) removes the
 * old file when the writing starts, as qemu-img's convert and e2image truncate it then: renaming over it made ext4
 * (auto_da_alloc) write out every delayed-allocation block of the new file before the rename returned, so a 1 GiB
 * convert over an existing output waited for most of it to reach the disk (2-4 s instead of 0.5), and the new output
 * reuses the old one's freed page cache (half the kernel time of the write: 380 against 550-720 ms). A failed command
 * then leaves no file under the name, not the old one. A file this process also holds (the command's own input or
 * a backing file of it) is kept until the new one is complete instead, and then renamed over.
 */
public final class OutputFile {
    private OutputFile() {
    }

    /** Writes a whole file at the path it is given. */
    public interface Writer {
        void write(Path file) throws IOException;
    }

    /** Writes a whole file at {@code requested}; a file there stays until the new one is renamed over it. */
    public static void writeAtomically(Path requested, Writer writer) throws IOException {
        write(requested, writer, false);
    }

    /**
     * Writes a whole file at {@code requested}; a file there is removed when the writing starts, unless this process
     * holds it too (see above).
     */
    public static void writeReplacing(Path requested, Writer writer) throws IOException {
        write(requested, writer, true);
    }

    @SuppressWarnings("try") // the old file is held only for its locks
    private static void write(Path requested, Writer writer, boolean removeFirst) throws IOException {
        Path output = requested;
        while (Files.isSymbolicLink(output)) {
            // Like qemu-img, write through a link: the file it names gets the image, the link stays.
            output = output.resolveSibling(Files.readSymbolicLink(output));
        }
        if (Files.exists(output) && !Files.isRegularFile(output)) {
            writer.write(output); // a device or pipe: write in place, there is nothing to rename
            return;
        }
        // An image being replaced may be in use: QEMU's write locks on it must be free, and stay held until it goes.
        try (OpenFile old = Files.isRegularFile(output) ? OpenFiles.open(output, Access.REPLACE, requested.toString())
                : null) {
            Path tmp = createTemporary(requested, output);
            boolean removed = false;
            try {
                if (old != null && removeFirst && !old.heldElsewhereHere()) {
                    try {
                        Files.deleteIfExists(output);
                    } catch (IOException e) {
                        throw new QcowException(requested.toString(), "cannot replace: " + e.getMessage(), e);
                    }
                    removed = true;
                    old.close(); // with no other hold on the removed file, its page cache is freed now
                }
                writer.write(tmp);
                if (removed) {
                    Files.move(tmp, output, StandardCopyOption.ATOMIC_MOVE);
                } else {
                    Files.move(tmp, output, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
                }
            } catch (IOException | RuntimeException | Error e) {
                // The temporary file goes too (a full disk may have stopped it anywhere); the first failure is told.
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException d) {
                    e.addSuppressed(d);
                }
                throw e;
            }
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
}
