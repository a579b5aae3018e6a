package org.qcow4j;

/**
 * How a new qcow2 image is encrypted: LUKS (qemu-img create's {@code encrypt.format=luks} and its
 * {@code encrypt.*} options, QEMU's names and defaults). The passphrase goes into key slot 0.
 *
 * @param cipherAlg    "aes-128", "aes-192" or "aes-256" (the JDK has no other cipher QEMU offers)
 * @param cipherMode   "xts", "cbc" or "ecb"
 * @param ivgenAlg     "plain", "plain64" or "essiv"
 * @param ivgenHashAlg essiv's hash ("sha256" by default for essiv), or null
 * @param hashAlg      PBKDF2's hash: "sha1", "sha224", "sha256", "sha384", "sha512" (or "md5")
 * @param iterTimeMs   how long PBKDF2 should take to unlock the image, in milliseconds (QEMU's benchmark scales
 *                     the iteration counts to it)
 */
public record EncryptionOptions(Passphrase passphrase, String cipherAlg, String cipherMode, String ivgenAlg,
                                String ivgenHashAlg, String hashAlg, long iterTimeMs) {
    /** QEMU's default iteration time. */
    public static final long DEFAULT_ITER_TIME_MS = 2000;

    /** QEMU's defaults: aes-256 in xts mode, plain64 IVs, sha256, 2 s of PBKDF2. */
    public static EncryptionOptions luks(Passphrase passphrase) {
        return new EncryptionOptions(passphrase, "aes-256", "xts", "plain64", null, "sha256", DEFAULT_ITER_TIME_MS);
    }

    @Override
    public String toString() {
        return "EncryptionOptions[luks " + cipherAlg + "-" + cipherMode + "-" + ivgenAlg
                + (ivgenHashAlg == null ? "" : ":" + ivgenHashAlg) + ", " + hashAlg + ", " + iterTimeMs + " ms]";
    }
}
