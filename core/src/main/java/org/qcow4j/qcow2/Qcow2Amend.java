package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.function.DoubleConsumer;
import org.qcow4j.AmendOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.ImageOperationException;
import org.qcow4j.InvalidTableException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WritableImage;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.format.Snapshot;
import org.qcow4j.io.Access;
import org.qcow4j.io.OpenFile;
import org.qcow4j.io.OpenFiles;

/**
 * QEMU 7.2's {@code qcow2_amend_options}, step for step and with its messages: the options checked, then an upgrade
 * to version 3 ({@code qcow2_upgrade}: a snapshot table whose entries lack the version 3 extra data written anew, the
 * header rewritten), the raw-data-file flag and data file name, the header
 * rewritten (always, as QEMU's {@code qcow2_update_header}), the backing file compared (QEMU cannot change it here:
 * {@code qemu-img rebase} does), lazy refcounts switched (the header again), the size changed (exactly, as
 * {@code blk_truncate}), and last a downgrade to version 2 ({@code qcow2_downgrade}: what version 2 cannot hold
 * refused, zero clusters expanded in the active L1 table and in every snapshot's and flushed, then the header).
 * Every header change is one write of cluster 0 after everything it names is on disk, so a crash leaves the image as
 * before or after each step.
 *
 * The refcount width changes as QEMU's {@code qcow2_change_refcount_order} ({@link RefcountOrderChange}).
 *
 * <p>An image with persistent bitmaps is amended on one read-write open, as QEMU amends it: the open flags the bitmaps
 * in use, every step goes through that image (the header rewritten under its lock, its resize, its zero-cluster
 * expansion), and its close stores the bitmaps anew, after a refusal as after the last step. The refcount width
 * change and the removal of the data file name are refused by name on such images before anything is written.
 */
public final class Qcow2Amend {
    private Qcow2Amend() {
    }

    public static void amend(Path path, AmendOptions o) throws IOException {
        String name = path.toString();
        DoubleConsumer progress = o.progress() == null ? p -> { } : o.progress();
        progress.accept(0); // qemu-img's, before the driver looks at the options
        try {
            amend(path, name, o, progress);
        } finally {
            progress.accept(100); // qemu-img's, whether the driver succeeded or not
        }
    }

    @SuppressWarnings("try") // the hold is there only for its locks
    private static void amend(Path path, String name, AmendOptions o, DoubleConsumer progress) throws IOException {
        java.util.function.Consumer<String> report = o.repairReport() == null ? line -> { } : o.repairReport();
        try (OpenFile hold = OpenFiles.open(path, Access.WRITE, name)) {
            Header onDisk = HeaderUpdate.read(path, name);
            if (!HeaderUpdate.opensWithBitmaps(onDisk)) {
                // As QEMU's read-write open: a dirty image repaired first, its repair's lines told
                Header h = HeaderUpdate.openedHeader(path, name, report);
                requireKey(h, name, o);
                List<Snapshot> snapshots;
                // with its backing chain, as QEMU's open: a backing file that does not open fails the amend here
                try (DiskImage image = new ChainOpener(o.open()).open(name, "qcow2", 0, null)) {
                    snapshots = image.qcow2().orElseThrow().snapshots();
                }
                amend(path, name, null, h, snapshots, o, progress);
                return;
            }
            requireKey(onDisk, name, o);
            Integer bits = o.refcountBits();
            if (bits != null && bits > 0 && bits <= 64 && Integer.bitCount(bits) == 1 && bits != onDisk.refcountBits()) {
                // the new refcount structure would have to replace the open image's allocator before its close
                // stores the bitmaps through it (QEMU's order); refused before anything is written
                throw new UnsupportedFeatureException(name, "changing the refcount width of an image with persistent "
                        + "bitmaps");
            }
            if ("".equals(o.dataFile()) && onDisk.has(Feature.EXTERNAL_DATA_FILE)) {
                // QEMU then stores the bitmaps under a header that names no data file for an image that needs one,
                // which qcow4j's reading of the header (before each header write of the store) refuses
                throw new UnsupportedFeatureException(name, "removing the data file name of an image with persistent "
                        + "bitmaps");
            }
            // QEMU's amend runs on its read-write open of the image: the bitmaps flagged in use by the open (a dirty
            // image repaired first), every step below on that one image, the bitmaps stored anew when it closes,
            // after the last step or a refusal
            try (WritableImage opened = Qcow2Image.openWritable(path, o.open().withQemuLayout(true))) {
                Qcow2Image image = (Qcow2Image) opened;
                image.repairDiagnostics().forEach(report);
                amend(path, name, image, image.headerOnDisk(), image.snapshots(), o, progress);
            }
        }
    }

    /** QEMU's read-write open unlocks the key of an encrypted image (qcow2_do_open without BDRV_O_NO_IO). */
    private static void requireKey(Header h, String name, AmendOptions o) throws org.qcow4j.QcowException {
        if (h.cryptMethod() != Header.CRYPT_NONE && o.open().passphrase() == null) {
            throw new org.qcow4j.QcowException(name, "encrypted image: a passphrase is needed (encrypt.key-secret)",
                    null, Encryption.KEY_SECRET_REQUIRED);
        }
    }

    /**
     * The steps of qcow2_amend_options on the image {@code path}, whose header as QEMU's read-write open leaves it is
     * {@code h}: through {@code open}, the image open for writing, when it has persistent bitmaps (null: each step
     * opens what it needs).
     */
    private static void amend(Path path, String name, Qcow2Image open, Header h, List<Snapshot> snapshots,
                              AmendOptions o, DoubleConsumer progress) throws IOException {
        // qcow2_amend_options' loop meets the encrypt.* options first (they lead qcow2_amend_opts)
        if (o.keySlots() != null) {
            if (h.cryptMethod() == Header.CRYPT_NONE) {
                throw new ImageOperationException(name, "encryption options cannot be amended: the image is not "
                        + "encrypted", "Can't amend encryption options - encryption not present");
            }
            if (h.cryptMethod() != Header.CRYPT_LUKS) {
                throw new ImageOperationException(name, "only LUKS encryption options can be amended",
                        "Only LUKS encryption options can be amended");
            }
        }
        int oldVersion = h.version();
        int newVersion = oldVersion;
        if (o.compat() != null) {
            newVersion = switch (o.compat()) {
                case "0.10", "v2" -> 2;
                case "1.1", "v3" -> 3;
                default -> throw refused(name, "compat", o.compat(), "Unknown compatibility level " + o.compat());
            };
        }
        int bits = h.refcountBits();
        if (o.refcountBits() != null) {
            int b = o.refcountBits();
            if (b <= 0 || b > 64 || Integer.bitCount(b) != 1) {
                throw refused(name, "refcount_bits", String.valueOf(b),
                        "Refcount width must be a power of two and may not exceed 64 bits");
            }
            bits = b;
        }
        boolean hasDataFile = h.has(Feature.EXTERNAL_DATA_FILE);
        if (o.dataFile() != null && !hasDataFile) {
            throw refused(name, "data_file", o.dataFile(),
                    "data-file can only be set for images that use an external data file");
        }
        boolean raw = hasDataFile && h.has(Feature.RAW_EXTERNAL_DATA);
        if (o.dataFileRaw() != null) {
            if (o.dataFileRaw() && !raw) {
                throw refused(name, "data_file_raw", "on", "data-file-raw cannot be set on existing images");
            }
            raw = o.dataFileRaw();
        }
        boolean upgradeOldSnapshots = newVersion > oldVersion
                && snapshots.stream().anyMatch(s -> s.diskSize() < 0);
        AmendProgress steps = new AmendProgress(progress, (newVersion != oldVersion ? 1 : 0)
                + (bits != h.refcountBits() ? 1 : 0) + (o.keySlots() != null ? 1 : 0));

        if (newVersion > oldVersion) { // qcow2_upgrade
            steps.start(AmendProgress.Step.UPGRADING);
            steps.report(0, 2);
            if (upgradeOldSnapshots) { // never with persistent bitmaps (version 3 alone keeps them): nothing open
                Qcow2Image.rewriteSnapshotTable(path, o.open());
                h = reread(path, null, name, h);
            }
            steps.report(1, 2);
            h = h.withFeatures(3, h.incompatibleFeatures(), h.compatibleFeatures(), h.autoclearFeatures());
            write(path, open, h);
            steps.report(2, 2);
        }
        if (o.keySlots() != null) {
            changeKeySlots(path, name, h, o);
        }
        if (bits != h.refcountBits()) {
            if (newVersion < 3 && bits != 16) {
                throw refused(name, "refcount_bits", String.valueOf(bits), "Refcount widths other than 16 bits "
                        + "require compatibility level 1.1 or above (use compat=1.1 or greater)");
            }
            steps.start(AmendProgress.Step.CHANGING_REFCOUNT_ORDER);
            // never with persistent bitmaps (refused before they were opened): nothing open
            RefcountOrderChange.change(path, h, Integer.numberOfTrailingZeros(bits), o.open(), steps);
            h = reread(path, null, name, h);
        }
        long autoclear = raw ? h.autoclearFeatures() | Feature.RAW_EXTERNAL_DATA.mask()
                : h.autoclearFeatures() & ~Feature.RAW_EXTERNAL_DATA.mask();
        h = h.withFeatures(h.version(), h.incompatibleFeatures(), h.compatibleFeatures(), autoclear);
        if (o.dataFile() != null) {
            h = h.withDataFile(o.dataFile().isEmpty() ? null : o.dataFile());
        }
        write(path, open, h);

        if ((o.backingFile() != null || o.backingFormat() != null)
                && (!Objects.equals(o.backingFile(), h.backingFile())
                || !Objects.equals(o.backingFormat(), h.backingFormat()))) {
            throw new ImageOperationException(name, "the backing file cannot be changed by amend (rebase changes it)",
                    "Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.");
        }
        boolean lazy = h.has(Feature.LAZY_REFCOUNTS);
        if (o.lazyRefcounts() != null && o.lazyRefcounts() != lazy) {
            if (o.lazyRefcounts() && newVersion < 3) {
                throw refused(name, "lazy_refcounts", "on", "Lazy refcounts only supported with compatibility "
                        + "level 1.1 and above (use compat=1.1 or greater)");
            }
            long compatible = o.lazyRefcounts() ? h.compatibleFeatures() | Feature.LAZY_REFCOUNTS.mask()
                    : h.compatibleFeatures() & ~Feature.LAZY_REFCOUNTS.mask();
            h = h.withFeatures(h.version(), h.incompatibleFeatures(), compatible, h.autoclearFeatures());
            write(path, open, h);
        }
        if (o.size() != null && o.size() != 0) {
            try {
                if (open != null) {
                    open.resize(o.size());
                } else {
                    try (WritableImage image = Qcow2Image.openWritable(path, o.open().withQemuLayout(true))) {
                        image.resize(o.size());
                    }
                }
            } catch (org.qcow4j.BitmapException e) { // an inconsistent bitmap: blk_truncate's error, hint and all
                throw new ImageOperationException(name, e.getMessage(), e.qemuWords()
                        + (e.hint() == null ? "" : "\n" + e.hint()), e);
            }
            h = reread(path, open, name, h);
        }
        if (newVersion < oldVersion) {
            steps.start(AmendProgress.Step.DOWNGRADING);
            downgrade(path, name, open, h, snapshots, o, steps);
        }
    }

    /**
     * The LUKS key slots changed as qcrypto_block_luks_amend_options changes them, through the header region
     * (qcow2_crypto_hdr_read_func and _write_func: nothing outside it), each write forced.
     */
    private static void changeKeySlots(Path path, String name, Header h, AmendOptions o) throws IOException {
        AmendOptions.KeySlotChange k = o.keySlots();
        org.qcow4j.format.CryptoExtension region = h.crypto();
        byte[] openSecret = o.open().passphrase() == null ? null : o.open().passphrase().bytes();
        byte[] oldSecret = k.oldSecret() == null ? null : k.oldSecret().bytes();
        byte[] newSecret = k.newSecret() == null ? null : k.newSecret().bytes();
        try (org.qcow4j.io.FileStorage storage = org.qcow4j.io.FileStorage.open(path, Access.WRITE)) {
            org.qcow4j.crypto.LuksHeader luks = org.qcow4j.crypto.LuksHeader.parse(
                    storage.read(region.offset(), org.qcow4j.crypto.LuksHeader.SIZE), region.length(), name);
            org.qcow4j.crypto.LuksKeySlots.Region r = new org.qcow4j.crypto.LuksKeySlots.Region() {
                @Override
                public java.nio.ByteBuffer read(long offset, int length) throws IOException {
                    check(offset, length);
                    return storage.read(region.offset() + offset, length);
                }

                @Override
                public void write(long offset, byte[] data) throws IOException {
                    check(offset, data.length);
                    storage.writeFully(java.nio.ByteBuffer.wrap(data), region.offset() + offset);
                    storage.force();
                }

                private void check(long offset, long length) throws ImageOperationException {
                    if (offset < 0 || offset + length > region.length()) {
                        throw new ImageOperationException(name, "LUKS key slot access at " + offset + " outside the "
                                + region.length() + "-byte header region", "Request for data outside of extension header");
                    }
                }
            };
            org.qcow4j.crypto.LuksKeySlots.amend(luks, r, new org.qcow4j.crypto.LuksKeySlots.Change(k.state(),
                    k.keyslot(), k.oldSecretId() == null ? null
                    : new org.qcow4j.crypto.LuksKeySlots.Secret(k.oldSecretId(), oldSecret), k.newSecretId() == null ? null
                    : new org.qcow4j.crypto.LuksKeySlots.Secret(k.newSecretId(), newSecret), k.iterTimeMs()),
                    openSecret, o.force(), name);
        } finally {
            for (byte[] b : new byte[][] {openSecret, oldSecret, newSecret}) {
                if (b != null) {
                    java.util.Arrays.fill(b, (byte) 0);
                }
            }
        }
    }

    /** qcow2_downgrade: what version 2 cannot hold refused in QEMU's words, zero clusters expanded, the header. */
    private static void downgrade(Path path, String name, Qcow2Image open, Header h, List<Snapshot> snapshots,
                                  AmendOptions o, AmendProgress steps) throws IOException {
        if (h.refcountOrder() != 4) {
            throw refused(name, "compat", "0.10", "compat=0.10 requires refcount_bits=16");
        }
        if (h.has(Feature.EXTERNAL_DATA_FILE)) {
            throw refused(name, "compat", "0.10", "Cannot downgrade an image with a data file");
        }
        for (Snapshot s : snapshots) {
            if (s.vmStateSize() > 0xffff_ffffL || s.diskSize() != h.virtualSize()) {
                throw refused(name, "compat", "0.10", "Internal snapshots prevent downgrade of image");
            }
        }
        if (open != null) {
            // "clear incompatible features": the open image marked clean (its lazy refcounts written) first
            open.leaveLazyRefcounts();
            h = reread(path, open, name, h);
        }
        long incompatible = h.incompatibleFeatures() & ~Feature.COMPRESSION_TYPE.mask();
        if (incompatible != 0) {
            throw refused(name, "compat", "0.10", "Cannot downgrade an image with incompatible features 0x"
                    + Long.toHexString(incompatible) + " set");
        }
        // QEMU's amend progress: L1 entries expanded (the active table's, then every snapshot's)
        long l1Entries = h.l1Size();
        for (Snapshot s : snapshots) {
            l1Entries += Integer.toUnsignedLong(s.l1Size());
        }
        long total = l1Entries;
        try {
            if (open != null) {
                open.expandZeroClustersForDowngrade(v -> steps.report(v, total));
            } else {
                try (WritableImage image = Qcow2Image.openWritable(path, o.open().withQemuLayout(true))) {
                    ((Qcow2Image) image).expandZeroClusters(v -> steps.report(v, total));
                }
            }
        } catch (InvalidTableException e) {
            // qcow2_expand_zero_clusters reports the table's fault itself; qcow2_downgrade then fails with its errno
            throw new ImageOperationException(name, e.getMessage(), "Failed to turn zero into data clusters: "
                    + e.reason().strerror(), e);
        }
        h = reread(path, open, name, h);
        if (h.has(Feature.COMPRESSION_TYPE)) {
            if (open != null ? hasCompressedClusters(open) : hasCompressedClusters(path, o)) {
                throw refused(name, "compat", "0.10",
                        "Cannot downgrade an image with zstd compression type and existing compressed clusters");
            }
        }
        Header v2 = new Header(2, 0, 0, h.clusterBits(), h.size(), h.cryptMethod(), h.l1Size(), h.l1TableOffset(),
                h.refcountTableOffset(), h.refcountTableClusters(), h.nbSnapshots(), h.snapshotsOffset(), 0, 0, 0,
                4, Header.V2_HEADER_LENGTH, Header.COMPRESSION_ZLIB, h.backingFile(), h.backingFormat(), null, h.crypto(),
                List.of(), h.bitmaps(), h.unknownExtensions());
        // QEMU's qcow2_update_header writes the bitmaps extension of an open image's bitmaps whatever the version:
        // the version 2 header names the directory, and the bitmaps stored at the close name the new one
        write(path, open, v2);
    }

    private static boolean hasCompressedClusters(Path path, AmendOptions o) throws IOException {
        try (DiskImage image = new ChainOpener(o.open().withoutBacking()).open(path.toString(), "qcow2", 0, null)) {
            return hasCompressedClusters(image);
        }
    }

    private static boolean hasCompressedClusters(DiskImage image) throws IOException {
        for (long pos = 0; pos < image.size(); ) {
            Extent e = image.extentAt(pos, image.size() - pos);
            if (e.depth() == 0 && e.data() && !e.hasHostOffset()) {
                return true;
            }
            pos = e.end();
        }
        return false;
    }

    /**
     * QEMU's {@code qcow2_update_header} with the amended header {@code h}: through the open image when there is one
     * (under its write lock, between its own writes), else on the closed file.
     */
    private static void write(Path path, Qcow2Image open, Header h) throws IOException {
        if (open != null) {
            open.rewriteHeader(onDisk -> h);
        } else {
            HeaderUpdate.write(path, h);
        }
    }

    /** The header after the engine changed it (size, tables), with the feature words and version amended so far. */
    private static Header reread(Path path, Qcow2Image open, String name, Header amended) throws IOException {
        Header now = open != null ? open.headerOnDisk() : HeaderUpdate.openedHeader(path, name);
        return now.withFeatures(amended.version(), now.incompatibleFeatures(), amended.compatibleFeatures(),
                now.autoclearFeatures());
    }

    private static ImageOperationException refused(String name, String field, String value, String qemu) {
        return new ImageOperationException(name, field + " = " + value + ": " + qemu, qemu);
    }
}
