package org.qcow4j;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Optional;

/**
 * A virtual disk opened read-only: a qcow2 image with its backing chain, or a raw file.
 * Safe for concurrent use by several threads. Open one with {@link Images#open}.
 */
public interface DiskImage extends Closeable {
    /** The name the image was opened by (as given by the user or written in the overlay). */
    String filename();

    /** "qcow2" or "raw", as qemu-img names formats. */
    String format();

    /** Virtual disk size in bytes. */
    long size();

    /** The backing image, or null. */
    DiskImage backing();

    /**
     * Reads {@code dst.remaining()} guest bytes at {@code offset} into {@code dst}, advancing its position.
     * The range must lie inside the virtual disk.
     */
    void read(ByteBuffer dst, long offset) throws IOException;

    /**
     * The status of the bytes starting at {@code offset}: one run of at most {@code maxLength} bytes (never
     * empty) with one status across the whole backing chain, as QEMU's {@code bdrv_block_status} sees it.
     */
    Extent extentAt(long offset, long maxLength) throws IOException;

    /**
     * {@link #extentAt}, and where the image's own metadata cannot tell, the host file asked too, as QEMU's block
     * status does when it wants zeros ({@code qemu-img map}, NBD's {@code base:allocation}): a qcow2 image preallocated
     * with metadata only reports its data clusters lying in holes of its file as reading zeros. This may cost a look
     * at the file system (a process or two), which {@link #extentAt} never pays.
     */
    default Extent blockStatus(long offset, long maxLength) throws IOException {
        return extentAt(offset, maxLength);
    }

    /** A qcow2 image's persistent dirty bitmaps, to read and change; empty for other formats. */
    default Optional<DirtyBitmaps> dirtyBitmaps() {
        return Optional.empty();
    }

    /** A qcow2 image's VM state area, to read (and, opened for writing, write); empty for other formats. */
    default Optional<VmState> vmState() {
        return Optional.empty();
    }

    /** A qcow2 image's header, snapshots and bitmaps; empty for other formats. */
    default Optional<Qcow2Metadata> qcow2() {
        return Optional.empty();
    }
}
