package org.qcow4j;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SeekableByteChannel;

/**
 * A virtual disk opened for reading and writing (open one with {@link Images#openWritable}). Safe for concurrent
 * use by several threads. Guest writes become durable at {@link #flush()} and {@link #close()}; after a crash at any
 * other moment the image holds, for each write, either its old or its new content, and is consistent
 * ({@code qemu-img check} finds at most leaked clusters).
 */
public interface WritableImage extends DiskImage {
    /**
     * Writes {@code src.remaining()} bytes at guest {@code offset}, advancing the buffer's position.
     * The range must lie inside the virtual disk.
     */
    void write(ByteBuffer src, long offset) throws IOException;

    /**
     * Writes {@code src.remaining()} bytes at guest {@code offset} as compressed clusters, as QEMU's
     * {@code blk_pwrite_compressed} ({@code qemu-io write -c}) does: the range must be whole clusters (the last one
     * may stop at the end of the disk, the rest of it written as zeros), each compressed with the image's
     * compression type and stored packed after the previous compressed cluster, or written plainly when its stream
     * would not be shorter than the cluster. Each cluster must be unallocated (or a zero cluster without host
     * space): compression never overwrites. Advances the buffer's position.
     *
     * @throws RefusedRequestException for a range that is not whole clusters ({@code INVALID}), a cluster already
     *         allocated ({@code CONFLICT}; the clusters before it are written), or a format without compressed
     *         clusters ({@code NOT_SUPPORTED}, raw images)
     */
    void writeCompressed(ByteBuffer src, long offset) throws IOException;

    /**
     * Makes {@code length} bytes at {@code offset} read as zeros. With {@code mayUnmap} whole clusters may give
     * their host space back, as {@code qemu-io write -z -u} does; without it allocated clusters stay allocated.
     */
    void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException;

    /**
     * Gives back the host space of the whole clusters in the range, as a guest's discard does in QEMU: afterwards
     * they read as zeros. Parts of clusters at the ends of the range are left as they are, and so is everything in
     * a version 2 image with a backing file (it has no zero flag, so QEMU ignores discards there).
     */
    void discard(long offset, long length) throws IOException;

    /** Makes every write so far durable: data, then metadata, forced to the disk. */
    void flush() throws IOException;

    /**
     * Changes the virtual size. Growing exposes zeros (never backing data); shrinking drops the clusters past the
     * new end. Opened with {@link OpenOptions#withQemuLayout}, it does exactly what QEMU does instead.
     */
    void resize(long newSize) throws IOException;

    /** A channel over the guest bytes (position starts at 0; {@code truncate} shrinks the disk). */
    SeekableByteChannel channel();

    /**
     * Whether writes are refused: an image whose corrupt bit is set opens read-only (see {@link #warnings()}).
     */
    boolean readOnly();

    /** What opening the image had to say: a dirty image repaired, a corrupt image opened read-only. */
    java.util.List<String> warnings();

    /**
     * The diagnostics of the repair opening made (a dirty image, see {@link #warnings()}), line by line as {@code
     * qemu-img check -r} prints them ("ERROR cluster 5 refcount=0 reference=1", "Rebuilding refcount structure"...);
     * QEMU prints them on stderr when it opens such an image. Empty when nothing was repaired.
     */
    default java.util.List<String> repairDiagnostics() {
        return java.util.List.of();
    }
}
