package org.qcow4j.format;

/**
 * The feature bits QEMU 7.2 knows (qcow2.txt header bytes 72-95), with the names QEMU writes in its
 * feature name table.
 */
public enum Feature {
    DIRTY(Kind.INCOMPATIBLE, 0, "dirty bit"),
    CORRUPT(Kind.INCOMPATIBLE, 1, "corrupt bit"),
    EXTERNAL_DATA_FILE(Kind.INCOMPATIBLE, 2, "external data file"),
    COMPRESSION_TYPE(Kind.INCOMPATIBLE, 3, "compression type"),
    EXTENDED_L2(Kind.INCOMPATIBLE, 4, "extended L2 entries"),
    LAZY_REFCOUNTS(Kind.COMPATIBLE, 0, "lazy refcounts"),
    BITMAPS(Kind.AUTOCLEAR, 0, "bitmaps"),
    RAW_EXTERNAL_DATA(Kind.AUTOCLEAR, 1, "raw external data");

    /** The three feature words of a v3 header, in on-disk order; the ordinal is the name table's type byte. */
    public enum Kind { INCOMPATIBLE, COMPATIBLE, AUTOCLEAR }

    /** Incompatible bits this implementation understands; any other set bit refuses the image. */
    public static final long KNOWN_INCOMPATIBLE = 0x1fL;

    private final Kind kind;
    private final int bit;
    private final String qemuName;

    Feature(Kind kind, int bit, String qemuName) {
        this.kind = kind;
        this.bit = bit;
        this.qemuName = qemuName;
    }

    public Kind kind() {
        return kind;
    }

    public int bit() {
        return bit;
    }

    public long mask() {
        return 1L << bit;
    }

    /** The name QEMU gives the bit in its feature name table. */
    public String qemuName() {
        return qemuName;
    }
}
