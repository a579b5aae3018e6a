package org.qcow4j.format;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.FormatException;
import org.qcow4j.UnsupportedFeatureException;

/**
 * The qcow2 header (qcow2.txt "Header"), its extensions and the backing file name: everything that lives in
 * cluster 0. {@link #parse} is a pure function of the first cluster's bytes and the file length; it checks every
 * field against the file and QEMU's limits before anything is sized from it.
 * <pre>
 *  0 magic "QFI\xfb"          4 version (2|3)          8 backing_file_offset   16 backing_file_size
 * 20 cluster_bits            24 size                  32 crypt_method          36 l1_size
 * 40 l1_table_offset         48 refcount_table_offset 56 refcount_table_clusters
 * 60 nb_snapshots            64 snapshots_offset      -- v2 ends at 72 --
 * 72 incompatible_features   80 compatible_features   88 autoclear_features
 * 96 refcount_order         100 header_length        104 compression_type (if header_length > 104)
 * </pre>
 */
public record Header(
        int version,
        long backingFileOffset,
        int backingFileSize,
        int clusterBits,
        long size,
        int cryptMethod,
        int l1Size,
        long l1TableOffset,
        long refcountTableOffset,
        int refcountTableClusters,
        int nbSnapshots,
        long snapshotsOffset,
        long incompatibleFeatures,
        long compatibleFeatures,
        long autoclearFeatures,
        int refcountOrder,
        int headerLength,
        int compressionType,
        String backingFile,
        String backingFormat,
        String dataFile,
        CryptoExtension crypto,
        List<FeatureName> featureNames,
        BitmapsExtension bitmaps,
        List<UnknownExtension> unknownExtensions) {

    public static final int MAGIC = 0x514649fb;
    /** Byte offsets of the fields an open image rewrites in place (see the layout above). */
    public static final int SIZE_AT = 24;
    /** l1_size (u32) followed by l1_table_offset (u64): one 12-byte write moves the L1 table. */
    public static final int L1_SIZE_AT = 36;
    /** Where {@code nb_snapshots} (u32) and then {@code snapshots_offset} (u64) are. */
    public static final int NB_SNAPSHOTS_AT = 60;
    /** refcount_table_offset (u64) followed by refcount_table_clusters (u32): one 12-byte write moves the table. */
    public static final int REFCOUNT_TABLE_AT = 48;
    public static final int INCOMPATIBLE_FEATURES_AT = 72;
    public static final int AUTOCLEAR_FEATURES_AT = 88;
    public static final int V2_HEADER_LENGTH = 72;
    public static final int V3_MIN_HEADER_LENGTH = 104;
    /** Enough to hold every fixed header field of any version. */
    public static final int FIXED_PART = 112;

    public static final int EXT_END = 0x00000000;
    public static final int EXT_BACKING_FORMAT = 0xe2792aca;
    public static final int EXT_FEATURE_TABLE = 0x6803f857;
    public static final int EXT_CRYPTO = 0x0537be77;
    public static final int EXT_BITMAPS = 0x23852875;
    public static final int EXT_DATA_FILE = 0x44415441;

    public static final int CRYPT_NONE = 0;
    public static final int CRYPT_AES = 1;
    public static final int CRYPT_LUKS = 2;
    public static final int COMPRESSION_ZLIB = 0;
    public static final int COMPRESSION_ZSTD = 1;

    /** QEMU: backing file names are at most 1023 bytes. */
    public static final int MAX_BACKING_NAME = 1023;
    /** QEMU's QCOW_MAX_REFTABLE_SIZE. */
    public static final long MAX_REFTABLE_BYTES = 8L * 1024 * 1024;
    /** QEMU's QCOW_MAX_SNAPSHOTS. */
    public static final int MAX_SNAPSHOTS = 65536;
    /** QEMU limits a format name (backing format extension) to 15 bytes. */
    public static final int MAX_FORMAT_NAME = 15;

    /** A header extension qcow4j does not interpret; kept so a rewrite can preserve it. */
    public record UnknownExtension(int type, byte[] data) {
    }

    public ClusterGeometry geometry() {
        return new ClusterGeometry(clusterBits, has(Feature.EXTENDED_L2));
    }

    public long clusterSize() {
        return 1L << clusterBits;
    }

    public int refcountBits() {
        return 1 << refcountOrder;
    }

    /** The virtual disk size QEMU exposes: the header size rounded down to 512-byte sectors. */
    public long virtualSize() {
        return size & ~511L;
    }

    public boolean has(Feature f) {
        long word = switch (f.kind()) {
            case INCOMPATIBLE -> incompatibleFeatures;
            case COMPATIBLE -> compatibleFeatures;
            case AUTOCLEAR -> autoclearFeatures;
        };
        return (word & f.mask()) != 0;
    }

    /** "zlib" or "zstd", as qemu-img names the compression type. */
    public String compressionTypeName() {
        return compressionType == COMPRESSION_ZSTD ? "zstd" : "zlib";
    }

    /**
     * A header for a new image, laid out as QEMU 7.2 writes one: v3 headers are 112 bytes, extensions follow in
     * QEMU's order (backing format, external data file name, feature name table, end) and the backing file name
     * comes after them. The feature name table is written for v3 images with clusters over 4 KiB, as QEMU does.
     */
    public static Header newImage(int version, int clusterBits, long size, int l1Size, long l1TableOffset,
                                  long refcountTableOffset, int refcountTableClusters, long incompatible, long compatible,
                                  long autoclear, int refcountOrder, int compressionType, String backingFile,
                                  String backingFormat, String dataFile) {
        List<FeatureName> names = new ArrayList<>();
        if (version >= 3 && clusterBits > 12) {
            for (Feature f : Feature.values()) {
                names.add(new FeatureName(f.kind().ordinal(), f.bit(), f.qemuName()));
            }
        }
        int headerLength = version >= 3 ? FIXED_PART : V2_HEADER_LENGTH;
        Header h = new Header(version, 0, 0, clusterBits, size, 0, l1Size, l1TableOffset, refcountTableOffset,
                refcountTableClusters, 0, 0, incompatible, compatible, autoclear, refcountOrder, headerLength,
                compressionType, backingFile, backingFile == null ? null : backingFormat, dataFile, null, List.copyOf(names), null,
                List.of());
        if (backingFile == null) {
            return h;
        }
        int nameOffset = h.extensionsEnd();
        return new Header(version, nameOffset, backingFile.getBytes(StandardCharsets.UTF_8).length, clusterBits, size, 0,
                l1Size, l1TableOffset, refcountTableOffset, refcountTableClusters, 0, 0, incompatible, compatible,
                autoclear, refcountOrder, headerLength, compressionType, backingFile, h.backingFormat, dataFile, null, h.featureNames,
                null, List.of());
    }

    /** Where the extension area (with its end marker) ends: the backing file name goes there. */
    private int extensionsEnd() {
        return headerLength + serializedExtensions().length;
    }

    private byte[] serializedExtensions() {
        ByteBuffer b = ByteBuffer.allocate(1 << clusterBits);
        if (backingFile != null && backingFormat != null) {
            putExtension(b, EXT_BACKING_FORMAT, backingFormat.getBytes(StandardCharsets.UTF_8));
        }
        if (dataFile != null) {
            putExtension(b, EXT_DATA_FILE, dataFile.getBytes(StandardCharsets.UTF_8));
        }
        if (crypto != null) {
            putExtension(b, EXT_CRYPTO, crypto.encode());
        }
        if (!featureNames.isEmpty()) {
            ByteBuffer t = ByteBuffer.allocate(featureNames.size() * FeatureName.ENTRY_SIZE);
            for (FeatureName n : featureNames) {
                int at = t.position();
                t.put((byte) n.type()).put((byte) n.bit()).put(n.name().getBytes(StandardCharsets.UTF_8));
                t.position(at + FeatureName.ENTRY_SIZE);
            }
            putExtension(b, EXT_FEATURE_TABLE, t.array());
        }
        // QEMU's qcow2_update_header writes it while its open image holds bitmaps (nb_bitmaps > 0), whatever the version
        // and the autoclear word: a version 2 header after an amend's downgrade names them (a stale extension, which
        // QEMU's open forgets, is dropped by whoever read the header: withoutStaleBitmaps)
        if (bitmaps != null && bitmaps.count() > 0) {
            putExtension(b, EXT_BITMAPS, ByteBuffer.allocate(BitmapsExtension.SIZE).putInt(bitmaps.count()).putInt(0)
                    .putLong(bitmaps.directorySize()).putLong(bitmaps.directoryOffset()).array());
        }
        for (UnknownExtension u : unknownExtensions) {
            putExtension(b, u.type(), u.data());
        }
        b.putInt(EXT_END).putInt(0);
        byte[] out = new byte[b.position()];
        b.flip().get(out);
        return out;
    }

    private static void putExtension(ByteBuffer b, int type, byte[] data) {
        b.putInt(type).putInt(data.length).put(data);
        b.position((b.position() + 7) & ~7);
    }

    /**
     * This header as QEMU's {@code qcow2_update_header} rewrites it, with the bitmaps extension {@code newBitmaps}
     * (null: none) and the autoclear bits {@code autoclear}: a v3 header 112 bytes long, QEMU's own feature name table
     * (v3, clusters over 4 KiB), the backing file name after the extensions. Write it with {@link #toCluster()}.
     */
    public Header rewritten(BitmapsExtension newBitmaps, long autoclear) {
        List<FeatureName> names = new ArrayList<>();
        if (version >= 3 && clusterBits > 12) {
            for (Feature f : Feature.values()) {
                names.add(new FeatureName(f.kind().ordinal(), f.bit(), f.qemuName()));
            }
        }
        int length = version >= 3 ? Math.max(headerLength, FIXED_PART) : V2_HEADER_LENGTH;
        return new Header(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod, l1Size, l1TableOffset,
                refcountTableOffset, refcountTableClusters, nbSnapshots, snapshotsOffset, incompatibleFeatures,
                compatibleFeatures, version >= 3 ? autoclear : 0, refcountOrder, length, compressionType, backingFile,
                backingFormat, dataFile, crypto, List.copyOf(names), newBitmaps, unknownExtensions);
    }

    /** The whole of cluster 0 as QEMU writes it: {@link #toBytes()} and zeros to the end of the cluster. */
    public ByteBuffer toCluster() {
        ByteBuffer b = ByteBuffer.allocate((int) clusterSize());
        b.put(toBytes());
        return b.clear();
    }

    /** The bytes of cluster 0 up to the end of the backing file name: header, extensions, backing file name. */
    public byte[] toBytes() {
        byte[] ext = serializedExtensions();
        byte[] name = backingFile == null ? new byte[0] : backingFile.getBytes(StandardCharsets.UTF_8);
        int end = headerLength + ext.length + name.length;
        if (end > clusterSize()) {
            throw new IllegalStateException("header, extensions and backing file name do not fit in cluster 0 (" + end + " bytes)");
        }
        ByteBuffer b = ByteBuffer.allocate(end);
        b.putInt(MAGIC).putInt(version).putLong(backingFile == null ? 0 : headerLength + ext.length).putInt(name.length)
                .putInt(clusterBits).putLong(size).putInt(cryptMethod).putInt(l1Size).putLong(l1TableOffset)
                .putLong(refcountTableOffset).putInt(refcountTableClusters).putInt(nbSnapshots).putLong(snapshotsOffset);
        if (version >= 3) {
            b.putLong(incompatibleFeatures).putLong(compatibleFeatures).putLong(autoclearFeatures)
                    .putInt(refcountOrder).putInt(headerLength).put((byte) compressionType);
        }
        b.position(headerLength);
        b.put(ext).put(name);
        return b.array();
    }

    /**
     * This header as QEMU 7.2's {@code qcow2_update_header} writes it back (every header change an open image makes:
     * backing file, features, version, refcount order, dirty bit cleared): the fixed part of its version (72 bytes, or
     * 112 for version 3, the length of a longer v3 header kept), the extensions in QEMU's order (backing format, data
     * file, the feature name table of every feature QEMU knows for version 3 with clusters over 4 KiB, whatever the
     * image had, bitmaps, then the unknown ones), the end marker and the backing file name; the rest of the cluster
     * zeros. Unknown extensions come back in reverse order, as QEMU keeps them. The bytes of unknown fields past byte 112 of a longer header are not kept (qcow4j does not parse them);
     * QEMU keeps them.
     *
     * @return the whole of cluster 0, or null when it does not fit (QEMU's {@code -ENOSPC})
     */
    public byte[] qemuCluster0() {
        List<FeatureName> names = new ArrayList<>();
        if (version >= 3 && clusterBits > 12) {
            for (Feature f : Feature.values()) {
                names.add(new FeatureName(f.kind().ordinal(), f.bit(), f.qemuName()));
            }
        }
        int length = version >= 3 ? Math.max(FIXED_PART, headerLength) : V2_HEADER_LENGTH;
        Header h = new Header(version, 0, 0, clusterBits, size, cryptMethod, l1Size, l1TableOffset, refcountTableOffset,
                refcountTableClusters, nbSnapshots, snapshotsOffset, incompatibleFeatures, compatibleFeatures,
                autoclearFeatures, refcountOrder, length, compressionType, backingFile,
                backingFile == null ? null : backingFormat, dataFile, crypto, List.copyOf(names), bitmaps, reversed(unknownExtensions));
        byte[] name = backingFile == null ? new byte[0] : backingFile.getBytes(StandardCharsets.UTF_8);
        if (length + h.serializedExtensionsLength() + name.length > clusterSize()) {
            return null;
        }
        return java.util.Arrays.copyOf(h.toBytes(), (int) clusterSize());
    }

    /** QEMU reads unknown extensions onto the head of a list, so it writes them back in reverse order. */
    private static List<UnknownExtension> reversed(List<UnknownExtension> list) {
        List<UnknownExtension> r = new ArrayList<>(list);
        java.util.Collections.reverse(r);
        return r;
    }

    private int serializedExtensionsLength() {
        try {
            return serializedExtensions().length;
        } catch (java.nio.BufferOverflowException e) {
            return Integer.MAX_VALUE / 2; // more than a cluster
        }
    }

    /** This header naming {@code file} (null: none) as its backing file, in format {@code format} (null: none). */
    public Header withBackingFile(String file, String format) {
        return new Header(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod, l1Size,
                l1TableOffset, refcountTableOffset, refcountTableClusters, nbSnapshots, snapshotsOffset,
                incompatibleFeatures, compatibleFeatures, autoclearFeatures, refcountOrder, headerLength, compressionType,
                file, file == null ? null : format, dataFile, crypto, featureNames, bitmaps, unknownExtensions);
    }

    /** This header with other feature words and version (an amend). */
    public Header withFeatures(int newVersion, long incompatible, long compatible, long autoclear) {
        return new Header(newVersion, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod, l1Size,
                l1TableOffset, refcountTableOffset, refcountTableClusters, nbSnapshots, snapshotsOffset,
                incompatible, compatible, autoclear, refcountOrder, headerLength, compressionType,
                backingFile, backingFormat, dataFile, crypto, featureNames, bitmaps, unknownExtensions);
    }

    /**
     * This header as QEMU's read-write open leaves it: a bitmaps extension whose autoclear bit is clear (a program
     * without bitmap support wrote the image; always so in version 2, which has no autoclear word) forgotten.
     */
    public Header withoutStaleBitmaps() {
        if (bitmaps == null || has(Feature.BITMAPS)) {
            return this;
        }
        return new Header(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod, l1Size,
                l1TableOffset, refcountTableOffset, refcountTableClusters, nbSnapshots, snapshotsOffset,
                incompatibleFeatures, compatibleFeatures, autoclearFeatures, refcountOrder, headerLength, compressionType,
                backingFile, backingFormat, dataFile, crypto, featureNames, null, unknownExtensions);
    }

    /** This header with another external data file name (null: none; the feature bits are the caller's). */
    public Header withDataFile(String file) {
        return new Header(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod, l1Size,
                l1TableOffset, refcountTableOffset, refcountTableClusters, nbSnapshots, snapshotsOffset,
                incompatibleFeatures, compatibleFeatures, autoclearFeatures, refcountOrder, headerLength, compressionType,
                backingFile, backingFormat, file, crypto, featureNames, bitmaps, unknownExtensions);
    }

    /** This header with the refcount table and refcount order of a rewritten refcount structure. */
    public Header withRefcounts(int order, long tableOffset, int tableClusters) {
        return new Header(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod, l1Size,
                l1TableOffset, tableOffset, tableClusters, nbSnapshots, snapshotsOffset,
                incompatibleFeatures, compatibleFeatures, autoclearFeatures, order, headerLength, compressionType,
                backingFile, backingFormat, dataFile, crypto, featureNames, bitmaps, unknownExtensions);
    }

    /** This header with an L1 table at {@code offset} of {@code entries} entries and a refcount table moved. */
    public Header withTables(long l1Offset, int entries, long tableOffset, int tableClusters) {
        return new Header(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod, entries,
                l1Offset, tableOffset, tableClusters, nbSnapshots, snapshotsOffset,
                incompatibleFeatures, compatibleFeatures, autoclearFeatures, refcountOrder, headerLength, compressionType,
                backingFile, backingFormat, dataFile, crypto, featureNames, bitmaps, unknownExtensions);
    }

    /** This header of a new image encrypted with LUKS, its header region at {@code region} (crypt_method 2). */
    public Header withEncryption(CryptoExtension region) {
        Header h = new Header(version, backingFileOffset, backingFileSize, clusterBits, size, CRYPT_LUKS, l1Size,
                l1TableOffset, refcountTableOffset, refcountTableClusters, nbSnapshots, snapshotsOffset, incompatibleFeatures,
                compatibleFeatures, autoclearFeatures, refcountOrder, headerLength, compressionType, backingFile,
                backingFormat, dataFile, region, featureNames, bitmaps, unknownExtensions);
        return h; // toBytes() places the backing file name after the extensions, this one included
    }

    /** Reads the cluster_bits field so the caller knows how much of cluster 0 to read before {@link #parse}. */
    public static int peekClusterBits(ByteBuffer start, String file, long fileLength) throws FormatException {
        checkFixedPart(start, file, fileLength);
        int bits = start.order(ByteOrder.BIG_ENDIAN).getInt(20);
        if (bits < ClusterGeometry.MIN_CLUSTER_BITS || bits > ClusterGeometry.MAX_CLUSTER_BITS) {
            throw new FormatException(file, "cluster_bits", Integer.toUnsignedString(bits),
                    "must be 9..21 (cluster sizes 512 B..2 MiB)");
        }
        return bits;
    }

    private static void checkFixedPart(ByteBuffer b, String file, long fileLength) throws FormatException {
        if (b.limit() < 4) {
            throw new FormatException(file, "header", fileLength + " bytes", "file too short for a qcow2 header");
        }
        int magic = b.order(ByteOrder.BIG_ENDIAN).getInt(0);
        if (magic != MAGIC) {
            throw new FormatException(file, "magic", FormatException.hex(magic & 0xffffffffL),
                    "not a qcow2 image (expected 0x514649fb)");
        }
        if (b.limit() < 8) {
            throw new FormatException(file, "header", fileLength + " bytes", "truncated qcow2 header");
        }
        int version = b.getInt(4);
        if (version != 2 && version != 3) {
            throw new FormatException(file, "version", Integer.toUnsignedString(version),
                    "unsupported qcow2 version (2 and 3 are known)");
        }
        int need = version == 2 ? V2_HEADER_LENGTH : V3_MIN_HEADER_LENGTH;
        if (b.limit() < need) {
            throw new FormatException(file, "header", fileLength + " bytes",
                    "truncated qcow2 v" + version + " header (needs " + need + " bytes)");
        }
    }

    /**
     * Parses and validates the header.
     *
     * @param cluster0   the file's first bytes: the whole first cluster, or the whole file if shorter
     * @param file       the file name for error messages
     * @param fileLength the image file's length, which every offset is checked against
     */
    public static Header parse(ByteBuffer cluster0, String file, long fileLength) throws FormatException, UnsupportedFeatureException {
        return parse(cluster0, file, fileLength, true);
    }

    /**
     * {@link #parse} as QEMU opens an image for {@code qemu-img check} ({@code BDRV_O_CHECK}): the snapshot table's
     * count and offset are not validated here, the check reads and reports them itself
     * ({@code qcow2_check_read_snapshot_table}).
     */
    public static Header parseForCheck(ByteBuffer cluster0, String file, long fileLength) throws FormatException,
            UnsupportedFeatureException {
        return parse(cluster0, file, fileLength, false);
    }

    private static Header parse(ByteBuffer cluster0, String file, long fileLength, boolean snapshotTable)
            throws FormatException, UnsupportedFeatureException {
        ByteBuffer b = cluster0.duplicate().order(ByteOrder.BIG_ENDIAN);
        int clusterBits = peekClusterBits(b, file, fileLength);
        long clusterSize = 1L << clusterBits;
        int version = b.getInt(4);
        long backingFileOffset = b.getLong(8);
        int backingFileSize = b.getInt(16);
        long size = b.getLong(24);
        int cryptMethod = b.getInt(32);
        int l1Size = b.getInt(36);
        long l1TableOffset = b.getLong(40);
        long refcountTableOffset = b.getLong(48);
        int refcountTableClusters = b.getInt(56);
        int nbSnapshots = b.getInt(60);
        long snapshotsOffset = b.getLong(64);
        long incompatible = 0;
        long compatible = 0;
        long autoclear = 0;
        int refcountOrder = 4;
        int headerLength = V2_HEADER_LENGTH;
        int compressionType = COMPRESSION_ZLIB;
        if (version == 3) {
            incompatible = b.getLong(72);
            compatible = b.getLong(80);
            autoclear = b.getLong(88);
            refcountOrder = b.getInt(96);
            headerLength = b.getInt(100);
            if (Integer.compareUnsigned(headerLength, V3_MIN_HEADER_LENGTH) < 0) {
                throw new FormatException(file, "header_length", Integer.toUnsignedString(headerLength),
                        "too small for a v3 header (at least 104)", "qcow2 header too short");
            }
            if (Integer.toUnsignedLong(headerLength) > clusterSize) {
                throw new FormatException(file, "header_length", Integer.toUnsignedString(headerLength),
                        "larger than the cluster size " + clusterSize, "qcow2 header exceeds cluster size");
            }
            if (headerLength > b.limit()) {
                throw new FormatException(file, "header_length", headerLength, "past the end of the file (" + fileLength + " bytes)");
            }
            if (headerLength > V3_MIN_HEADER_LENGTH) {
                compressionType = b.get(104) & 0xff;
            }
        }

        if (Long.compareUnsigned(backingFileOffset, clusterSize) > 0) {
            throw new FormatException(file, "backing_file_offset", Long.toUnsignedString(backingFileOffset),
                    "past cluster 0", "Invalid backing file offset");
        }
        // Extensions and feature names first: the unknown-feature error wants the names.
        long extEnd = backingFileOffset != 0 ? backingFileOffset : clusterSize;
        Extensions ext = readExtensions(b, file, headerLength, extEnd, cryptMethod, clusterSize, fileLength);

        long unknownIncompat = incompatible & ~Feature.KNOWN_INCOMPATIBLE;
        if (unknownIncompat != 0) {
            throw new UnsupportedFeatureException(file, describeUnknown(unknownIncompat, ext.featureNames),
                    qemuUnsupported(unknownIncompat, ext.featureNames));
        }
        if (cryptMethod != CRYPT_NONE && cryptMethod != CRYPT_AES && cryptMethod != CRYPT_LUKS) {
            throw new FormatException(file, "crypt_method", Integer.toUnsignedString(cryptMethod), "unknown encryption method",
                    "Unsupported encryption method " + cryptMethod);
        }
        if (cryptMethod == CRYPT_LUKS && ext.crypto == null) {
            throw new FormatException(file, "crypt_method", cryptMethod, "LUKS encryption without the full disk encryption"
                    + " header extension", "Missing CRYPTO header for crypt method 2");
        }
        if (refcountOrder < 0 || refcountOrder > 6) {
            throw new FormatException(file, "refcount_order", Integer.toUnsignedString(refcountOrder), "must be 0..6");
        }
        validateCompression(file, incompatible, compressionType);
        boolean extendedL2 = (incompatible & Feature.EXTENDED_L2.mask()) != 0;
        if (extendedL2 && clusterBits < 14) {
            throw new FormatException(file, "cluster_bits", clusterBits, "extended L2 entries need clusters of at least 16 KiB");
        }
        boolean dataFileBit = (incompatible & Feature.EXTERNAL_DATA_FILE.mask()) != 0;
        if ((autoclear & Feature.RAW_EXTERNAL_DATA.mask()) != 0 && !dataFileBit) {
            throw new FormatException(file, "autoclear_features", FormatException.hex(autoclear),
                    "raw external data bit set without the external data file bit");
        }
        // (the external data file bit without a data file name extension is valid: QEMU opens such an image with its
        // data-file option, and qemu-img amend -o data_file= makes one)
        if (size < 0) {
            throw new FormatException(file, "size", Long.toUnsignedString(size), "virtual size out of range");
        }

        // The tables in QEMU's order (qcow2_do_open), each refusal QEMU shares in its words: the refcount table, the
        // snapshot table (its offset checked even when it has no entries), the active L1 table, then the size.
        long reftableBytes = Integer.toUnsignedLong(refcountTableClusters) * clusterSize;
        if (refcountTableClusters == 0) {
            throw new FormatException(file, "refcount_table_clusters", 0, "image has no refcount table",
                    "Image does not contain a reference count table");
        }
        if (reftableBytes > MAX_REFTABLE_BYTES) {
            throw new FormatException(file, "refcount_table_clusters", Integer.toUnsignedString(refcountTableClusters),
                    "refcount table too large (QEMU's limit is 8 MiB)", "Reference count table too large");
        }
        checkTable(file, "refcount_table_offset", refcountTableOffset, reftableBytes, clusterSize, fileLength, true,
                "Reference count table");

        if (snapshotTable && Integer.toUnsignedLong(nbSnapshots) > MAX_SNAPSHOTS) {
            throw new FormatException(file, "nb_snapshots", Integer.toUnsignedString(nbSnapshots),
                    "more than QEMU's limit of 65536", "Snapshot table too large");
        }
        // Each entry is at least 40 bytes; the table's exact size is known only once it is read.
        if (snapshotTable) {
            // only what QEMU's qcow2_validate_table refuses: a table past the end of the file reads as zeros
            checkTable(file, "snapshots_offset", snapshotsOffset, 40L * nbSnapshots, clusterSize, fileLength, false,
                    "Snapshot table");
        }

        long l1Entries = Integer.toUnsignedLong(l1Size);
        if (l1Entries > L1Entry.MAX_ENTRIES) {
            throw new FormatException(file, "l1_size", l1Entries, "active L1 table too large (QEMU's limit is "
                    + L1Entry.MAX_ENTRIES + " entries)", "Active L1 table too large");
        }
        checkTable(file, "l1_table_offset", l1TableOffset, l1Entries * 8, clusterSize, fileLength, l1Entries > 0,
                "Active L1 table");
        ClusterGeometry geo = new ClusterGeometry(clusterBits, extendedL2);
        long needL1 = geo.l1EntriesFor(size);
        if (needL1 > L1Entry.MAX_ENTRIES) {
            // QEMU: past INT_MAX entries the size itself; below, the L1 table (at most the limit) is too small
            throw new FormatException(file, "size", size, "virtual size too large for cluster size " + clusterSize
                    + " (needs " + needL1 + " L1 entries, QEMU's limit is " + L1Entry.MAX_ENTRIES + ")",
                    needL1 > Integer.MAX_VALUE ? "Image is too big" : "L1 table is too small");
        }
        if (l1Entries < needL1) {
            throw new FormatException(file, "l1_size", l1Entries, "L1 table too small for virtual size " + size
                    + " (needs " + needL1 + " entries)", "L1 table is too small");
        }

        String backingFile = null;
        if (backingFileOffset != 0) {
            long len = Integer.toUnsignedLong(backingFileSize);
            if (len > MAX_BACKING_NAME || backingFileOffset < 0 || backingFileOffset + len > clusterSize) {
                throw new FormatException(file, "backing_file_size", len, "backing file name too long or outside cluster 0"
                        + " (offset " + backingFileOffset + ")", "Backing file name too long");
            }
            if (backingFileOffset + len > b.limit()) {
                throw new FormatException(file, "backing_file_offset", backingFileOffset,
                        "backing file name past the end of the file (" + fileLength + " bytes)");
            }
            backingFile = fileName(b, (int) backingFileOffset, (int) len, file, "backing_file");
            if (backingFile.isEmpty()) {
                backingFile = null; // QEMU: an empty name means no backing file
            }
        }
        return new Header(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod, l1Size,
                l1TableOffset, refcountTableOffset, refcountTableClusters, nbSnapshots, snapshotsOffset, incompatible,
                compatible, autoclear, refcountOrder, headerLength, compressionType, backingFile, ext.backingFormat,
                ext.dataFile, ext.crypto, List.copyOf(ext.featureNames), ext.bitmaps, List.copyOf(ext.unknown));
    }

    private static void validateCompression(String file, long incompatible, int compressionType) throws FormatException {
        boolean bit = (incompatible & Feature.COMPRESSION_TYPE.mask()) != 0;
        if (compressionType != COMPRESSION_ZLIB && compressionType != COMPRESSION_ZSTD) {
            throw new FormatException(file, "compression_type", compressionType, "unknown compression type");
        }
        if (bit != (compressionType != COMPRESSION_ZLIB)) {
            throw new FormatException(file, "compression_type", compressionType, bit
                    ? "compression type feature bit set but the type is zlib"
                    : "non-zlib compression type without the compression type feature bit");
        }
    }

    /** Checks that a table of {@code bytes} at {@code offset} is cluster aligned and inside the file. */
    public static void checkTable(String file, String field, long offset, long bytes, long clusterSize, long fileLength,
                                  boolean present) throws FormatException {
        checkTable(file, field, offset, bytes, clusterSize, fileLength, present, null);
    }

    /**
     * The same, and where QEMU's {@code qcow2_validate_table} refuses the table too (an offset not cluster aligned,
     * even for a table without entries, or the table's end past 2^63) with its words for {@code qemuName}.
     */
    private static void checkTable(String file, String field, long offset, long bytes, long clusterSize,
                                   long fileLength, boolean present, String qemuName) throws FormatException {
        boolean qemuRefuses = (offset & (clusterSize - 1)) != 0 || Long.MAX_VALUE - bytes < offset || offset < 0;
        String words = qemuName == null ? null : qemuName + " offset invalid";
        if (qemuRefuses && (present || qemuName != null)) {
            throw new FormatException(file, field, FormatException.hex(offset), offset < 0 || offset + bytes < 0
                    ? "table runs past 2^63" : "not aligned to the cluster size " + clusterSize, words);
        }
        if (!present) {
            return;
        }
        if (offset == 0) {
            throw new FormatException(file, field, FormatException.hex(offset), "table at offset 0 overlaps the header");
        }
        if (offset > fileLength || bytes > fileLength - offset) {
            throw new FormatException(file, field, FormatException.hex(offset), "table of " + bytes
                    + " bytes runs past the end of the file (" + fileLength + " bytes)");
        }
    }

    private static String describeUnknown(long bits, List<FeatureName> names) {
        StringBuilder sb = new StringBuilder();
        for (int bit = 0; bit < 64; bit++) {
            if ((bits & (1L << bit)) == 0) {
                continue;
            }
            if (sb.length() > 0) {
                sb.append(", ");
            }
            sb.append("incompatible feature bit ").append(bit);
            for (FeatureName n : names) {
                if (n.type() == 0 && n.bit() == bit) {
                    sb.append(" (").append(n.name()).append(')');
                }
            }
        }
        return sb.toString();
    }

    /**
     * QEMU's {@code report_unsupported_feature}: the names the image's feature table gives the unknown bits, in
     * table order, then the bits left unnamed as one hexadecimal mask.
     */
    private static String qemuUnsupported(long bits, List<FeatureName> names) {
        List<String> parts = new ArrayList<>();
        for (FeatureName n : names) {
            if (n.name().isEmpty()) {
                break; // QEMU's walk of the table ends at an empty name
            }
            if (n.type() == 0 && n.bit() < 64 && (bits & (1L << n.bit())) != 0) {
                parts.add(n.name().length() > 46 ? n.name().substring(0, 46) : n.name());
                bits &= ~(1L << n.bit());
            }
        }
        if (bits != 0) {
            parts.add("Unknown incompatible feature: " + Long.toHexString(bits));
        }
        return "Unsupported qcow2 feature(s): " + String.join(", ", parts);
    }

    private record Extensions(String backingFormat, String dataFile, CryptoExtension crypto, List<FeatureName> featureNames,
                              BitmapsExtension bitmaps, List<UnknownExtension> unknown) {
    }

    private static Extensions readExtensions(ByteBuffer b, String file, long start, long end, int cryptMethod,
                                             long clusterSize, long fileLength) throws FormatException {
        String backingFormat = null;
        CryptoExtension crypto = null;
        String dataFile = null;
        List<FeatureName> names = new ArrayList<>();
        BitmapsExtension bitmaps = null;
        List<UnknownExtension> unknown = new ArrayList<>();
        long off = start;
        // QEMU's loop: a header starting before the end must fit before it, even the end marker; past the end of a
        // file shorter than a cluster the bytes read as zeros, which is the end marker.
        while (off < end) {
            if (off + 8 > end) {
                throw new FormatException(file, "header extension at " + off, "8 bytes",
                        "runs past the end of the extension area (" + end + ")", "Header extension too large");
            }
            if (off + 8 > b.limit()) {
                break;
            }
            int type = b.getInt((int) off);
            long len = Integer.toUnsignedLong(b.getInt((int) off + 4));
            off += 8;
            String field = "header extension " + FormatException.hex(type & 0xffffffffL) + " length";
            if (len > end - off) {
                throw new FormatException(file, field, len, "header extension runs past the extension area (ends at "
                        + end + ")", "Header extension too large");
            }
            if (type == EXT_END) {
                break;
            }
            if (off + len > b.limit()) {
                throw new FormatException(file, field, len, "header extension runs past the end of the file ("
                        + b.limit() + " bytes)");
            }
            int at = (int) off;
            int n = (int) len;
            switch (type) {
                case EXT_BACKING_FORMAT -> {
                    if (n > MAX_FORMAT_NAME) {
                        throw new FormatException(file, field, n, "backing format name too long");
                    }
                    backingFormat = string(b, at, n);
                }
                case EXT_DATA_FILE -> dataFile = fileName(b, at, n, file, "data_file");
                case EXT_CRYPTO -> crypto = CryptoExtension.decode(b, at, n, file, cryptMethod, clusterSize, fileLength);
                case EXT_FEATURE_TABLE -> {
                    // A short last entry reads as zero-padded, as QEMU reads the table into a zeroed buffer.
                    for (int i = 0; i < n; i += FeatureName.ENTRY_SIZE) {
                        int entry = Math.min(FeatureName.ENTRY_SIZE, n - i);
                        String name = entry > 2 ? string(b, at + i + 2, entry - 2) : "";
                        int nul = name.indexOf('\0');
                        names.add(new FeatureName(b.get(at + i) & 0xff, entry > 1 ? b.get(at + i + 1) & 0xff : 0,
                                nul >= 0 ? name.substring(0, nul) : name));
                    }
                }
                case EXT_BITMAPS -> {
                    if (n != BitmapsExtension.SIZE) {
                        throw new FormatException(file, field, n, "bitmaps extension must be 24 bytes");
                    }
                    long count = Integer.toUnsignedLong(b.getInt(at));
                    long dirSize = b.getLong(at + 8);
                    long dirOffset = b.getLong(at + 16);
                    if (count == 0 || count > BitmapsExtension.MAX_BITMAPS) {
                        throw new FormatException(file, "nb_bitmaps", count, "must be 1..65535");
                    }
                    if (dirSize < 0 || dirSize > BitmapsExtension.MAX_DIRECTORY_SIZE) {
                        throw new FormatException(file, "bitmap_directory_size", Long.toUnsignedString(dirSize), "more than 64 MiB");
                    }
                    bitmaps = new BitmapsExtension((int) count, dirSize, dirOffset);
                }
                default -> {
                    byte[] data = new byte[n];
                    b.get(at, data);
                    unknown.add(new UnknownExtension(type, data));
                }
            }
            off += (len + 7) & ~7L;
        }
        return new Extensions(backingFormat, dataFile, crypto, names, bitmaps, unknown);
    }

    /** A file name the image gives (backing or data file): no file system takes a NUL byte in a name. */
    private static String fileName(ByteBuffer b, int at, int len, String file, String field) throws FormatException {
        String name = string(b, at, len);
        if (name.indexOf('\0') >= 0) {
            throw new FormatException(file, field, "'" + name.replace("\0", "\\0") + "'", "file name contains a NUL byte");
        }
        return name;
    }

    private static String string(ByteBuffer b, int at, int len) {
        byte[] bytes = new byte[len];
        b.get(at, bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }
}
