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
 * <p>A file being replaced is never renamed over: ext4 (auto_da_alloc) then writes out every delayed-allocation block
 * of the new file before the rename returns, which made a 1 GiB convert over an existing output wait for most of its
 * output to reach the disk (2-4 s instead of 0.5). {@link #writeAtomically} keeps the old file until the new one is
 * complete and unlinks it just before the rename (a crash between the two leaves no file under the name, the new one
 * under its temporary name). {@link #writeReplacing}, for large outputs, removes it when the writing starts, as
 * qemu-img's convert truncates it then: a failed command leaves no file under the name, not the old one, but the new
 * output reuses the old one's freed page cache instead of fresh memory (1 GiB, over an existing output: half the
 * kernel time of the write, 380 against 550-720 ms).
 */
public final class OutputFile {
    private OutputFile() {
    }

    /** Writes a whole file at the path it is given. */
    public interface Writer {
        void write(Path file) throws IOException;
    }

    /** Writes a whole file at {@code requested}; a file there stays until the new one is complete. */
    public static void writeAtomically(Path requested, Writer writer) throws IOException {
        write(requested, writer, false);
    }

    /** Writes a whole file at {@code requested}; a file there is removed when the writing starts (see above). */
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
            if (old != null && removeFirst) {
                removeOld(requested, output, tmp);
                old.close(); // with no other hold on the removed file, its page cache is freed now
            }
            try {
                writer.write(tmp);
                Files.deleteIfExists(output); // not renamed over: see the class comment
                Files.move(tmp, output, StandardCopyOption.ATOMIC_MOVE);
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
