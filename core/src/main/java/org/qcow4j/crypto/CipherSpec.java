package org.qcow4j.crypto;

/**
 * What encrypts a LUKS payload (QEMU's cipher-alg, cipher-mode, ivgen-alg, ivgen-hash-alg and hash-alg): AES with a
 * 16, 24 or 32 byte key in XTS, CBC or ECB mode, sectors numbered by the plain, plain64 or essiv IV generator, key
 * slots derived with PBKDF2 over {@code hash}. Other ciphers QEMU knows (serpent, twofish, cast5, sm4) are not in
 * the JDK and are refused by name where a header is read.
 *
 * @param aesKeyBytes 16, 24 or 32 (aes-128, aes-192, aes-256)
 * @param ivHash      ESSIV's hash, or the hash written after a plain/plain64 generator (ignored, as QEMU ignores it);
 *                    null if none
 */
public record CipherSpec(int aesKeyBytes, Mode mode, IvAlg ivAlg, Hash ivHash, Hash hash) {
    /** QEMU's QCryptoCipherMode names. */
    public enum Mode {
        ECB, CBC, XTS;

        public String qemuName() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /** QEMU's QCryptoIVGenAlgorithm names. */
    public enum IvAlg {
        PLAIN, PLAIN64, ESSIV;

        public String qemuName() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /** QEMU's creation defaults: aes-256, xts, plain64, sha256. */
    public static final CipherSpec DEFAULT = new CipherSpec(32, Mode.XTS, IvAlg.PLAIN64, null, Hash.SHA256);

    public CipherSpec {
        if (aesKeyBytes != 16 && aesKeyBytes != 24 && aesKeyBytes != 32) {
            throw new IllegalArgumentException("AES keys are 16, 24 or 32 bytes, not " + aesKeyBytes);
        }
    }

    /** "aes-256", as QEMU names the cipher algorithm. */
    public String cipherAlgName() {
        return "aes-" + aesKeyBytes * 8;
    }

    /** The master key's length: the AES key, twice over for XTS. */
    public int masterKeyBytes() {
        return mode == Mode.XTS ? 2 * aesKeyBytes : aesKeyBytes;
    }

    /** The LUKS header's cipher mode string, as QEMU writes it: {@code xts-plain64}, {@code cbc-essiv:sha256}. */
    public String luksModeSpec() {
        String s = mode.qemuName() + "-" + ivAlg.qemuName();
        return ivHash == null ? s : s + ":" + ivHash.qemuName();
    }

    /** ESSIV's AES key length: the hash's digest length (QEMU's qcrypto_block_luks_essiv_cipher), or null if none. */
    static Integer essivKeyBytes(int aesKeyBytes, Hash h) {
        int d = h.length();
        if (d == aesKeyBytes || d == 16 || d == 24 || d == 32) {
            return d;
        }
        return null;
    }
}
