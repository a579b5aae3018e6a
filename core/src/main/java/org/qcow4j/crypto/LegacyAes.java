package org.qcow4j.crypto;

import java.util.Arrays;

/**
 * qcow2's legacy AES encryption (crypt_method 1, QEMU's crypto/block-qcow.c): AES-128-CBC per 512-byte sector with
 * the plain64 IV of the guest sector number, the key the passphrase's first 16 bytes, zero-padded. Weak (no key
 * derivation, the same key for every image with the passphrase); read so old images can be converted away from it.
 */
public final class LegacyAes {
    private LegacyAes() {
    }

    public static DiskCipher cipher(byte[] passphrase) {
        byte[] key = new byte[16];
        int len = 0;
        while (len < passphrase.length && passphrase[len] != 0) {
            len++; // QEMU takes strlen() of the secret
        }
        System.arraycopy(passphrase, 0, key, 0, Math.min(len, 16));
        try {
            return new DiskCipher(new CipherSpec(16, CipherSpec.Mode.CBC, CipherSpec.IvAlg.PLAIN64, null, Hash.SHA256), key);
        } finally {
            Arrays.fill(key, (byte) 0);
        }
    }
}
