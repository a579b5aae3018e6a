package org.qcow4j;

import java.util.List;
import org.qcow4j.format.Bitmap;
import org.qcow4j.format.Header;
import org.qcow4j.format.Snapshot;

/** What a qcow2 image's header and tables say beyond its guest data: what {@code qemu-img info} shows. */
public interface Qcow2Metadata {
    /** The header with its extensions, as read when the image was opened. */
    Header header();

    /** The internal snapshots, in table order. */
    List<Snapshot> snapshots();

    /** The persistent dirty bitmaps, in directory order. */
    List<Bitmap> bitmaps();

    /**
     * The external data file's name as written in the header (what qemu-img info shows), or null: none, or an image
     * whose header has the external data file bit but names no file (then opened with
     * {@link OpenOptions#dataFile}).
     */
    String dataFile();

    /**
     * The name the external data file was opened by ({@link OpenOptions#dataFile}, else the header's name), or null
     * when the image has none, or it was opened for metadata only ({@link OpenOptions#noIo}) and the data file not.
     */
    String openedDataFile();

    /** The backing file's name resolved against the image's directory, or null. */
    String fullBackingFilename();

    /** How the image is encrypted (read from its header, no passphrase needed), or empty if it is not. */
    default java.util.Optional<EncryptionInfo> encryption() {
        return java.util.Optional.empty();
    }
}
