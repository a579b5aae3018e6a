package org.qcow4j;

import java.io.IOException;
import java.nio.file.Path;
import org.qcow4j.qcow2.ChainOpener;
import org.qcow4j.qcow2.Qcow2Image;

/** Entry point of the library: opens disk images read-only or for writing. */
public final class Images {
    private Images() {
    }

    /** Opens {@code path} (format probed) with its backing chain. */
    public static DiskImage open(Path path) throws IOException {
        return open(path, OpenOptions.defaults());
    }

    /** Opens {@code path} with its backing chain as {@code options} say. */
    public static DiskImage open(Path path, OpenOptions options) throws IOException {
        return new ChainOpener(options).open(path.toString(), options.format(), 0, null);
    }

    /**
     * Opens the qcow2 or raw image {@code path} for reading and writing (a qcow2 image's backing chain read-only).
     * A dirty qcow2 image (lazy refcounts, not closed) is repaired first, as QEMU does; one marked corrupt opens
     * read-only with a warning; ones with internal snapshots, persistent bitmaps or an external data file are
     * refused by name. A raw image whose format was probed refuses writes that would make it probe as qcow2.
     */
    public static WritableImage openWritable(Path path, OpenOptions options) throws IOException {
        return Qcow2Image.openWritable(path, options);
    }

    /** Opens {@code path} for writing with the default options. */
    public static WritableImage openWritable(Path path) throws IOException {
        return openWritable(path, OpenOptions.defaults());
    }

    /**
     * The file a backing or data file name written in {@code imageName} refers to: absolute names as they are,
     * relative names against the image's directory (QEMU's {@code path_combine}).
     */
    public static String resolveRelative(String imageName, String name) throws UnsupportedFeatureException {
        return ChainOpener.resolveRelative(imageName, name);
    }
}
