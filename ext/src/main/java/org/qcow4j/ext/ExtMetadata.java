package org.qcow4j.ext;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.qcow4j.CreateOptions;
import org.qcow4j.Images;
import org.qcow4j.format.Header;

/**
 * Entry point of the ext module: an ext2/3/4 filesystem's metadata as a disk image, which {@link
 * org.qcow4j.Images#convert} writes as e2image does ({@code -Q}: a qcow2 image with {@link #qcow2Options}; {@code
 * -r}: a sparse raw image), and which any other {@link org.qcow4j.DiskImage} consumer can read. {@link #writeQcow2}
 * and {@link #writeRaw} write the same files in one sequential pass, as e2image itself does.
 */
public final class ExtMetadata {
    private ExtMetadata() {
    }

    /**
     * Which filesystem to read and what to include.
     *
     * @param offset      byte offset of the filesystem on the device ({@code -o})
     * @param superblock  block number of a backup superblock to open the filesystem from, or 0 for the primary
     *                    ({@code -b})
     * @param blockSize   the block size with a backup superblock ({@code -B}), else 0
     * @param includeData include the data blocks of regular files ({@code -a})
     * @param scramble    scramble directory entry names ({@code -s}); such an image reads in order only
     */
    public record Options(long offset, long superblock, int blockSize, boolean includeData, boolean scramble) {
        /** The primary superblock of a filesystem at offset 0, metadata only, names kept. */
        public static Options defaults() {
            return new Options(0, 0, 0, false, false);
        }

        public Options withOffset(long o) {
            return new Options(o, superblock, blockSize, includeData, scramble);
        }

        public Options withBackupSuperblock(long block, int size) {
            return new Options(offset, block, size, includeData, scramble);
        }

        public Options withData(boolean d) {
            return new Options(offset, superblock, blockSize, d, scramble);
        }

        public Options withScrambling(boolean s) {
            return new Options(offset, superblock, blockSize, includeData, s);
        }
    }

    /**
     * Opens the filesystem on {@code device} (a file or block device, read only) and returns its metadata as a
     * disk: the blocks e2image selects, every other block an unallocated zero.
     *
     * @throws org.qcow4j.FormatException naming the field when the filesystem is damaged
     */
    public static MetadataImage image(Path device, Options options) throws IOException {
        String name = device.toString();
        FileChannel ch = FileChannel.open(device, StandardOpenOption.READ);
        try {
            ExtFilesystem fs = ExtFilesystem.open(ch, name, options.offset(), options.superblock(), options.blockSize());
            BlockRanges blocks = fs.metadataBlocks(options.includeData());
            BlockRanges dirs = options.scramble() ? fs.directoryBlocks() : null;
            return new MetadataImage(name, ch, options.offset(), fs.blockSize(), fs.blocksCount(), blocks, dirs);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    /**
     * The options of the qcow2 image e2image {@code -Q} writes of {@code image}: version 2 (what {@code e2image -r}
     * reads back) with clusters of the filesystem's block size; with {@code compression} "zlib" or "zstd" (beyond
     * e2image) clusters are stored compressed, zstd needing version 3.
     */
    public static CreateOptions qcow2Options(MetadataImage image, String compression) {
        boolean zstd = "zstd".equals(compression);
        CreateOptions d = CreateOptions.defaults(image.size());
        return new CreateOptions(image.size(), zstd ? 3 : 2, Integer.numberOfTrailingZeros(image.blockSize()),
                d.refcountOrder(), zstd ? Header.COMPRESSION_ZSTD : Header.COMPRESSION_ZLIB, false, false, null, false,
                d.preallocation(), null, null);
    }

    /**
     * Writes {@code image} as the new qcow2 file {@code dest} ({@code e2image -Q}), uncompressed, with {@link
     * #qcow2Options}: the same file as {@link Images#convert} with {@code withMinSparse(512)} (all-zero clusters
     * left out), by e2image's own loop, sequentially on the calling thread. Not flushed, like e2image's.
     */
    public static void writeQcow2(MetadataImage image, Path dest) throws IOException {
        // Clusters are blocks: the refcount table is sized for every block of the image, as a conversion sizes it
        // from the data extents.
        Images.writeSequentially(dest, image.size(), qcow2Options(image, null), image.blockCount(), false, image);
    }

    /**
     * Writes {@code image} as the new sparse raw file {@code dest} ({@code e2image -r}): as long as the filesystem,
     * only the blocks that are not all zeros written. The same file as {@link Images#convert} to raw, by e2image's
     * own loop, sequentially on the calling thread. Not flushed, like e2image's.
     */
    public static void writeRaw(MetadataImage image, Path dest) throws IOException {
        Images.writeSequentially(dest, image.size(), null, 0, false, image);
    }
}
