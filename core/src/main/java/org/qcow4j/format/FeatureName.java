package org.qcow4j.format;

/**
 * One 48-byte entry of the feature name table header extension (type 0x6803f857):
 * {@code u8 type (0 incompatible, 1 compatible, 2 autoclear), u8 bit, char name[46]} (NUL padded).
 */
public record FeatureName(int type, int bit, String name) {
    public static final int ENTRY_SIZE = 48;
}
