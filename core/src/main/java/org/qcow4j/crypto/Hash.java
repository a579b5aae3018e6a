package org.qcow4j.crypto;

import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/** QEMU's QCryptoHashAlgorithm names (the LUKS header's hash spec and ESSIV's hash), as the JDK knows them. */
public enum Hash {
    MD5("md5", "MD5", "HmacMD5", 16),
    SHA1("sha1", "SHA-1", "HmacSHA1", 20),
    SHA224("sha224", "SHA-224", "HmacSHA224", 28),
    SHA256("sha256", "SHA-256", "HmacSHA256", 32),
    SHA384("sha384", "SHA-384", "HmacSHA384", 48),
    SHA512("sha512", "SHA-512", "HmacSHA512", 64);

    private final String qemuName;
    private final String digest;
    private final String hmac;
    private final int length;

    Hash(String qemuName, String digest, String hmac, int length) {
        this.qemuName = qemuName;
        this.digest = digest;
        this.hmac = hmac;
        this.length = length;
    }

    /** The name QEMU writes and prints ("sha256"). */
    public String qemuName() {
        return qemuName;
    }

    public int length() {
        return length;
    }

    String hmacAlgorithm() {
        return hmac;
    }

    MessageDigest newDigest() {
        try {
            return MessageDigest.getInstance(digest);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JDK has no " + digest, e);
        }
    }

    /** The hash QEMU calls {@code name}, or null (QEMU also knows ripemd160, which the JDK lacks). */
    public static Hash byName(String name) {
        for (Hash h : values()) {
            if (h.qemuName.equals(name)) {
                return h;
            }
        }
        return null;
    }
}
