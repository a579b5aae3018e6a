package org.qcow4j.format;

import java.nio.ByteBuffer;
import org.qcow4j.FormatException;

/**
 * The full disk encryption header pointer (qcow2.txt "Full disk encryption header pointer", extension 0x0537be77),
 * present with LUKS encryption (crypt_method 2): where in the image file the LUKS header and its key material lie.
 * <pre>
 *   0 offset u64   cluster aligned; clusters the refcounts count
 *   8 length u64   bytes of the region (QEMU makes it the LUKS payload offset, cluster rounded on disk)
 * </pre>
 */
public record CryptoExtension(long offset, long length) {
    public static final int SIZE = 16;

    /** Decodes and checks the extension's {@code n} bytes at {@code at} of cluster 0, in QEMU's order and words. */
    static CryptoExtension decode(ByteBuffer b, int at, int n, String file, int cryptMethod, long clusterSize,
                                  long fileLength) throws FormatException {
        String field = "header extension 0x537be77";
        if (cryptMethod != Header.CRYPT_LUKS) {
            throw new FormatException(file, field, "crypt_method " + cryptMethod,
                    "encryption header extension without LUKS encryption",
                    "CRYPTO header extension only expected with LUKS encryption method");
        }
        if (n != SIZE) {
            throw new FormatException(file, field + " length", n, "must be " + SIZE,
                    "CRYPTO header extension size " + n + ", but expected size " + SIZE);
        }
        long offset = b.getLong(at);
        long length = b.getLong(at + 8);
        if (Long.remainderUnsigned(offset, clusterSize) != 0) {
            throw new FormatException(file, "encryption header offset", Long.toUnsignedString(offset),
                    "not a multiple of the cluster size " + clusterSize, "Encryption header offset '"
                    + Long.toUnsignedString(offset) + "' is not a multiple of cluster size '" + clusterSize + "'");
        }
        if (offset < clusterSize || offset > fileLength || length < 0 || length > fileLength - offset) {
            throw new FormatException(file, "encryption header offset", FormatException.hex(offset), "the LUKS header"
                    + " region of " + Long.toUnsignedString(length) + " bytes lies outside the file (" + fileLength
                    + " bytes)" + (offset < clusterSize ? " or in the header cluster" : ""));
        }
        return new CryptoExtension(offset, length);
    }

    byte[] encode() {
        return ByteBuffer.allocate(SIZE).putLong(offset).putLong(length).array();
    }
}
