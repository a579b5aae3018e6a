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

    /** The external data file's name as written in the header, or null. */
    String dataFile();

    /** The backing file's name resolved against the image's directory, or null. */
    String fullBackingFilename();

    /** How the image is encrypted (read from its header, no passphrase needed), or empty if it is not. */
    default java.util.Optional<EncryptionInfo> encryption() {
        return java.util.Optional.empty();
    }
}
