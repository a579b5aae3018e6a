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

    /**
     * The spec QEMU's create options name (QCryptoCipherAlgorithm, QCryptoCipherMode, QCryptoIVGenAlgorithm,
     * QCryptoHashAlgorithm names); QEMU's defaults for nulls (aes-256, xts, plain64, sha256; essiv's hash sha256).
     *
     * @throws IllegalArgumentException for names QEMU does not know (its words)
     * @throws UnsupportedOperationException for what QEMU knows and the JDK lacks (serpent, twofish...), by name
     */
    public static CipherSpec of(String cipherAlg, String cipherMode, String ivgenAlg, String ivgenHashAlg, String hashAlg) {
        String alg = cipherAlg == null ? "aes-256" : cipherAlg;
        int keyBytes = switch (alg) {
            case "aes-128" -> 16;
            case "aes-192" -> 24;
            case "aes-256" -> 32;
            case "des", "3des", "cast5-128", "serpent-128", "serpent-192", "serpent-256", "twofish-128", "twofish-192",
                    "twofish-256", "sm4" -> throw new UnsupportedOperationException("cipher '" + alg
                    + "' (the JDK has only AES)");
            default -> throw notAccepted("cipher-alg", alg);
        };
        Mode mode = switch (cipherMode == null ? "xts" : cipherMode) {
            case "ecb" -> Mode.ECB;
            case "cbc" -> Mode.CBC;
            case "xts" -> Mode.XTS;
            case "ctr" -> throw new UnsupportedOperationException("cipher mode 'ctr'");
            default -> throw notAccepted("cipher-mode", cipherMode);
        };
        IvAlg iv = switch (ivgenAlg == null ? "plain64" : ivgenAlg) {
            case "plain" -> IvAlg.PLAIN;
            case "plain64" -> IvAlg.PLAIN64;
            case "essiv" -> IvAlg.ESSIV;
            default -> throw notAccepted("ivgen-alg", ivgenAlg);
        };
        Hash hash = hashNamed("hash-alg", hashAlg == null ? "sha256" : hashAlg);
        Hash ivHash = ivgenHashAlg != null ? hashNamed("ivgen-hash-alg", ivgenHashAlg) : iv == IvAlg.ESSIV ? Hash.SHA256 : null;
        if (iv == IvAlg.ESSIV && essivKeyBytes(keyBytes, ivHash) == null) {
            throw new IllegalArgumentException("No AES cipher with key size " + ivHash.length() + " available");
        }
        if (mode != Mode.XTS && keyBytes * 4000 % 512 != 0) {
            // QEMU 7.2 encrypts key material in whole sectors and aborts on aes-192 outside xts
            throw new IllegalArgumentException("Cipher " + alg + " in " + mode.qemuName() + " mode makes key material of "
                    + keyBytes * 4000 + " bytes, not whole sectors: QEMU 7.2 cannot open such an image");
        }
        return new CipherSpec(keyBytes, mode, iv, ivHash, hash);
    }

    private static Hash hashNamed(String parameter, String name) {
        Hash h = Hash.byName(name);
        if (h == null) {
            throw name.equals("ripemd160") ? new UnsupportedOperationException("hash 'ripemd160'")
                    : notAccepted(parameter, name);
        }
        return h;
    }

    /** QEMU's QAPI words for a name its enum does not have. */
    private static IllegalArgumentException notAccepted(String parameter, String value) {
        return new IllegalArgumentException("Parameter '" + parameter + "' does not accept value '" + value + "'");
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
