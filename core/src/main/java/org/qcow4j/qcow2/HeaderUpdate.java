package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.qcow4j.QcowException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WritableImage;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.io.Access;
import org.qcow4j.io.FileStorage;

/**
 * QEMU's {@code qcow2_update_header} on an image that is not open otherwise: cluster 0 written whole, in one write,
 * as {@link Header#qemuCluster0} lays it out, then forced. Every other structure the new header names is on disk
 * before it (the caller's order), so a crash leaves the old header or the new one, each naming complete structures.
 */
public final class HeaderUpdate {
    /** QEMU's QCOW2_AUTOCLEAR_MASK: the autoclear bits QEMU knows; an image opened for writing loses the others. */
    static final long KNOWN_AUTOCLEAR = Feature.BITMAPS.mask() | Feature.RAW_EXTERNAL_DATA.mask();

    /** Why a header change was refused, as the errno QEMU's {@code bdrv_change_backing_file} returns. */
    public enum Refusal {
        /** -ENOTSUP: the format keeps no backing file (raw). */
        NOT_SUPPORTED("Operation not supported"),
        /** -EINVAL: a name over 1023 bytes, a backing file for a raw data file, a format without a file. */
        INVALID("Invalid argument"),
        /** -ENOSPC: header, extensions and name do not fit in cluster 0. */
        NO_SPACE("No space left on device");

        private final String strerror;

        Refusal(String strerror) {
            this.strerror = strerror;
        }

        /** The C library's words for the errno. */
        public String strerror() {
            return strerror;
        }
    }

    /** A header change refused before anything was written. */
    public static final class RefusedException extends QcowException {
        private static final long serialVersionUID = 1L;
        private final Refusal refusal;

        RefusedException(String file, Refusal refusal, String message) {
            super(file, message);
            this.refusal = refusal;
        }

        public Refusal refusal() {
            return refusal;
        }
    }

    private HeaderUpdate() {
    }

    /**
     * Names {@code backingFile} (null: none) in format {@code backingFormat} (null: no backing format extension) as
     * the backing file of the qcow2 image {@code path}, as QEMU's {@code qcow2_change_backing_file}: the name stored as
     * given (relative names stay relative). A dirty image is repaired first and autoclear bits QEMU does not know are
     * cleared, as QEMU's read-write open does.
     *
     * @throws RefusedException what QEMU refuses (nothing written)
     */
    public static void changeBackingFile(Path path, String backingFile, String backingFormat) throws IOException {
        String name = path.toString();
        Header onDisk = read(path, name);
        if (opensWithBitmaps(onDisk)) {
            // refused before the open flags the bitmaps in use, where QEMU would fail after it
            checkedBackingChange(onDisk, name, backingFile, backingFormat);
            Qcow2Image.openAndClose(path, now -> checkedBackingChange(now, name, backingFile, backingFormat));
            return;
        }
        write(path, checkedBackingChange(openedHeader(path, name), name, backingFile, backingFormat));
    }

    /**
     * {@link #changeBackingFile(Path, String, String)} on a qcow2 image open for writing, before it closes, as
     * qemu-img rebase's safe mode does: cluster 0 rewritten through the image from the header on disk. Persistent
     * bitmaps, flagged in use by the open, are stored when the image closes. False (nothing done) if {@code image}
     * is not a qcow2 image (raw: the path-based change refuses it).
     *
     * @throws IllegalArgumentException if {@code image} is a qcow2 image behind a wrapper: a second writer on the
     *         file would be the only way on
     */
    public static boolean changeBackingFile(WritableImage image, String backingFile, String backingFormat)
            throws IOException {
        if (!(image instanceof Qcow2Image q)) {
            if ("qcow2".equals(image.format())) {
                throw new IllegalArgumentException("the engine's image is needed, not a wrapper of it");
            }
            return false;
        }
        q.rewriteHeader(now -> checkedBackingChange(now, q.filename(), backingFile, backingFormat));
        return true;
    }

    /**
     * Whether QEMU's read-write open of an image with header {@code onDisk} loads persistent bitmaps (and flags them in
     * use), so that a change of the image must run on the open image ({@link Qcow2Image#openWritable}) for its close
     * to store them anew, as QEMU's does. A corrupt image does not open for writing at all.
     */
    static boolean opensWithBitmaps(Header onDisk) {
        return onDisk.has(Feature.BITMAPS) && !onDisk.has(Feature.CORRUPT);
    }

    /** {@code h} naming the new backing file, or what QEMU refuses about it. */
    private static Header checkedBackingChange(Header h, String name, String backingFile, String backingFormat)
            throws RefusedException {
        if (backingFile != null && h.has(Feature.RAW_EXTERNAL_DATA) && h.has(Feature.EXTERNAL_DATA_FILE)) {
            throw new RefusedException(name, Refusal.INVALID, "a backing file cannot go with a raw external data file");
        }
        if (backingFile != null && backingFile.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > Header.MAX_BACKING_NAME) {
            throw new RefusedException(name, Refusal.INVALID, "backing file name longer than " + Header.MAX_BACKING_NAME
                    + " bytes");
        }
        Header changed = h.withBackingFile(backingFile, backingFormat);
        if (changed.qemuCluster0() == null) {
            throw noSpace(name, h);
        }
        return changed;
    }

    /**
     * The header of {@code path} as QEMU sees it once opened for writing: a qcow2 image, not corrupt, repaired if
     * dirty, unknown autoclear bits and a stale bitmaps extension gone.
     */
    static Header openedHeader(Path path, String name) throws IOException {
        return openedHeader(path, name, line -> { });
    }

    /** {@link #openedHeader(Path, String)}, telling {@code repairLines} what the repair of a dirty image prints. */
    static Header openedHeader(Path path, String name, java.util.function.Consumer<String> repairLines)
            throws IOException {
        Header h = read(path, name);
        if (h.has(Feature.CORRUPT)) {
            throw new QcowException(name, "the image is marked corrupt (qemu-img check -r all repairs it)", null,
                    "qcow2: Image is corrupt; cannot be opened read/write");
        }
        if (h.has(Feature.BITMAPS)) {
            throw new UnsupportedFeatureException(name, "writing to an image with persistent bitmaps");
        }
        if (h.has(Feature.DIRTY)) {
            Qcow2Check.repairDirty(path, repairLines);
            h = read(path, name);
        }
        return h.withoutStaleBitmaps().withFeatures(h.version(), h.incompatibleFeatures(), h.compatibleFeatures(),
                h.autoclearFeatures() & KNOWN_AUTOCLEAR);
    }

    /** The header of the qcow2 image {@code path} as it is on disk. */
    public static Header read(Path path, String name) throws IOException {
        try (FileStorage storage = FileStorage.open(path, Access.WRITE)) {
            if (!ChainOpener.probe(storage).equals("qcow2")) {
                throw new RefusedException(name, Refusal.NOT_SUPPORTED, "a raw image has no backing file");
            }
            return Qcow2Image.readHeader(storage, name);
        }
    }

    /** Writes {@code h} as QEMU's {@code qcow2_update_header} does: all of cluster 0, once, forced. */
    static void write(Path path, Header h) throws IOException {
        byte[] cluster0 = h.qemuCluster0();
        if (cluster0 == null) {
            throw noSpace(path.toString(), h);
        }
        try (FileStorage storage = FileStorage.open(path, Access.WRITE)) {
            write(storage, cluster0);
        }
    }

    private static RefusedException noSpace(String name, Header h) {
        return new RefusedException(name, Refusal.NO_SPACE,
                "header, extensions and backing file name do not fit in cluster 0 (" + h.clusterSize() + " bytes)");
    }

    /** One write of cluster 0, forced. */
    static void write(FileStorage storage, byte[] cluster0) throws IOException {
        storage.writeFully(ByteBuffer.wrap(cluster0), 0);
        storage.force();
    }
}
