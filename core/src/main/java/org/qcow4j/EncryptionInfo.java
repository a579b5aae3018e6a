package org.qcow4j;

import java.util.List;

/**
 * How a qcow2 image is encrypted, as {@code qemu-img info} shows it (QEMU's QCryptoBlockInfo): the legacy AES format
 * has nothing but its name; LUKS has its cipher, IV generator, key derivation hash, UUID, key slots and payload
 * offset. Nothing secret: no key, salt or digest.
 *
 * @param format       "luks" or "aes"
 * @param ivgenHashAlg the IV generator's hash (essiv), or null
 */
public record EncryptionInfo(String format, String cipherAlg, String cipherMode, String ivgenAlg, String ivgenHashAlg,
                             String hashAlg, String uuid, long payloadOffset, long masterKeyIters, List<KeySlot> slots) {
    /** A LUKS key slot: whether it holds a key, its PBKDF2 iterations and stripes (active ones), where its key lies. */
    public record KeySlot(boolean active, long iters, long keyOffset, int stripes) {
    }

    /** The legacy AES format's description. */
    public static EncryptionInfo aes() {
        return new EncryptionInfo("aes", null, null, null, null, null, null, 0, 0, List.of());
    }
}
