package org.qcow4j;

import org.qcow4j.format.ClusterGeometry;
import org.qcow4j.format.Header;
import org.qcow4j.format.L1Entry;


/**
 * The options of a new qcow2 image, as {@code qemu-img create -o} names them.
 *
 * @param size          virtual size in bytes (rounded up to 512 by {@link #validate})
 * @param version       2 (compat=0.10) or 3 (compat=1.1)
 * @param clusterBits   log2 of cluster_size, 9..21
 * @param refcountOrder log2 of refcount_bits, 0..6
 * @param dataFile      external data file name, created and opened from the working directory as QEMU does (not
 *                      from the image's directory); the header names it without a {@code file:} prefix; or null
 * @param backingFile   backing file name as written in the header, or null
 * @param encryption    LUKS encryption of the new image, or null for none
 */
public record CreateOptions(long size, int version, int clusterBits, int refcountOrder, int compressionType,
                            boolean extendedL2, boolean lazyRefcounts, String dataFile, boolean dataFileRaw,
                            Preallocation preallocation, String backingFile, String backingFormat,
                            EncryptionOptions encryption) {

    /** Options of an image that is not encrypted. */
    public CreateOptions(long size, int version, int clusterBits, int refcountOrder, int compressionType,
                         boolean extendedL2, boolean lazyRefcounts, String dataFile, boolean dataFileRaw,
                         Preallocation preallocation, String backingFile, String backingFormat) {
        this(size, version, clusterBits, refcountOrder, compressionType, extendedL2, lazyRefcounts, dataFile, dataFileRaw,
                preallocation, backingFile, backingFormat, null);
    }

    /** qemu-img's preallocation modes. */
    public enum Preallocation { OFF, METADATA, FALLOC, FULL }

    /** qemu-img create's defaults: compat=1.1, 64 KiB clusters, 16-bit refcounts, zlib. */
    public static CreateOptions defaults(long size) {
        return new CreateOptions(size, 3, 16, 4, Header.COMPRESSION_ZLIB, false, false, null, false, Preallocation.OFF,
                null, null);
    }

    public ClusterGeometry geometry() {
        return new ClusterGeometry(clusterBits, extendedL2);
    }

    /** Checks the combination as qemu-img create does; returns the options with the size rounded up to 512. */
    public CreateOptions validate() {
        // QEMU's checks (qcow2_co_create, validate_cluster_size), in its order and words.
        if (size < 0) {
            throw new IllegalArgumentException("Image size must be a positive number");
        }
        if (version != 2 && version != 3) {
            throw new IllegalArgumentException("Invalid compatibility level");
        }
        if (extendedL2 && version < 3) {
            throw new IllegalArgumentException("Extended L2 entries are only supported with compatibility level 1.1 "
                    + "and above (use version=v3 or greater)");
        }
        if (clusterBits < ClusterGeometry.MIN_CLUSTER_BITS || clusterBits > ClusterGeometry.MAX_CLUSTER_BITS) {
            throw new IllegalArgumentException("Cluster size must be a power of two between 512 and 2048k");
        }
        if (extendedL2 && clusterBits < 14) {
            throw new IllegalArgumentException("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
        }
        if (backingFile != null && preallocation != Preallocation.OFF && !extendedL2) {
            throw new IllegalArgumentException("Backing file and preallocation can only be used at the same time if "
                    + "extended_l2 is on");
        }
        if (backingFormat != null && backingFile == null) {
            throw new IllegalArgumentException("Backing format cannot be used without backing file");
        }
        if (version < 3 && lazyRefcounts) {
            throw new IllegalArgumentException("Lazy refcounts only supported with compatibility level 1.1 and above "
                    + "(use version=v3 or greater)");
        }
        if (refcountOrder < 0 || refcountOrder > 6) {
            throw new IllegalArgumentException("Refcount width must be a power of two and may not exceed 64 bits");
        }
        if (version < 3 && refcountOrder != 4) {
            throw new IllegalArgumentException("Different refcount widths than 16 bits require compatibility level 1.1 "
                    + "or above (use version=v3 or greater)");
        }
        if (dataFileRaw && dataFile == null) {
            throw new IllegalArgumentException("data-file-raw requires data-file");
        }
        if (dataFileRaw && backingFile != null) {
            throw new IllegalArgumentException("Backing file and data-file-raw cannot be used at the same time");
        }
        if (dataFile != null && version < 3) {
            throw new IllegalArgumentException("External data files are only supported with compatibility level 1.1 "
                    + "and above (use version=v3 or greater)");
        }
        if (compressionType != Header.COMPRESSION_ZLIB && version < 3) {
            throw new IllegalArgumentException("Non-zlib compression type is only supported with compatibility level "
                    + "1.1 and above (use version=v3 or greater)");
        }
        if (backingFile != null && backingFile.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > Header.MAX_BACKING_NAME) {
            throw new IllegalArgumentException("Backing file name too long");
        }
        if (encryption != null && encryption.passphrase() == null) {
            throw new IllegalArgumentException("Parameter 'encrypt.key-secret' is required for cipher");
        }
        if (encryption != null && dataFile != null) {
            throw new IllegalArgumentException("External data files are not supported with encryption by qcow4j");
        }
        long rounded = (size + 511) & ~511L;
        if (geometry().l1EntriesFor(rounded) > L1Entry.MAX_ENTRIES) {
            throw new IllegalArgumentException("The image size is too large for file format 'qcow2' (try using a larger cluster size)");
        }
        return new CreateOptions(rounded, version, clusterBits, refcountOrder, compressionType, extendedL2, lazyRefcounts,
                dataFile, dataFileRaw, preallocation, backingFile, backingFormat, encryption);
    }

    public CreateOptions withSize(long newSize) {
        return new CreateOptions(newSize, version, clusterBits, refcountOrder, compressionType, extendedL2, lazyRefcounts,
                dataFile, dataFileRaw, preallocation, backingFile, backingFormat, encryption);
    }

    public CreateOptions withBacking(String file, String format) {
        return new CreateOptions(size, version, clusterBits, refcountOrder, compressionType, extendedL2, lazyRefcounts,
                dataFile, dataFileRaw, preallocation, file, format, encryption);
    }

    /** These options encrypting the new image as {@code e} says (null: not encrypted). */
    public CreateOptions withEncryption(EncryptionOptions e) {
        return new CreateOptions(size, version, clusterBits, refcountOrder, compressionType, extendedL2, lazyRefcounts,
                dataFile, dataFileRaw, preallocation, backingFile, backingFormat, e);
    }
}
