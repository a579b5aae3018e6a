package org.qcow4j.crypto;

import java.security.GeneralSecurityException;
import java.util.Arrays;
import javax.crypto.Cipher;
import javax.crypto.spec.SecretKeySpec;

/**
 * AES in XTS mode (IEEE 1619-2007, QEMU's crypto/xts.c) over the JDK's AES/ECB/NoPadding: the first half of the key
 * encrypts the data, the second the tweak. For each 16-byte block {@code j} of a data unit, {@code T_j = E_K2(IV) *
 * alpha^j} in GF(2^128) (little-endian, reduction 0x87) and {@code C_j = E_K1(P_j ^ T_j) ^ T_j}. A data unit here is
 * a multiple of 16 bytes (LUKS sectors are 512 bytes): ciphertext stealing is never needed and is refused.
 * The tweaks of a whole unit are computed first so that the data passes through the block cipher in one call.
 * Not thread-safe; {@link #destroy} forgets the keys as far as the JDK lets it.
 */
final class Xts {
    private final Cipher data;
    private final Cipher dataDecrypt;
    private final Cipher tweak;
    private byte[] tweaks = new byte[512];

    Xts(byte[] key) {
        if (key.length != 32 && key.length != 48 && key.length != 64) {
            throw new IllegalArgumentException("XTS needs a 32, 48 or 64 byte key, not " + key.length);
        }
        int half = key.length / 2;
        byte[] k1 = Arrays.copyOfRange(key, 0, half);
        byte[] k2 = Arrays.copyOfRange(key, half, key.length);
        try {
            data = Cipher.getInstance("AES/ECB/NoPadding");
            data.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(k1, "AES"));
            dataDecrypt = Cipher.getInstance("AES/ECB/NoPadding");
            dataDecrypt.init(Cipher.DECRYPT_MODE, new SecretKeySpec(k1, "AES"));
            tweak = Cipher.getInstance("AES/ECB/NoPadding");
            tweak.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(k2, "AES"));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("the JDK has no AES/ECB/NoPadding", e);
        } finally {
            Arrays.fill(k1, (byte) 0);
            Arrays.fill(k2, (byte) 0);
        }
    }

    /** Encrypts {@code len} bytes (a multiple of 16) at {@code off} in place, one data unit with tweak {@code iv}. */
    void encrypt(byte[] iv, byte[] buf, int off, int len) {
        run(data, iv, buf, off, len);
    }

    /** Decrypts one data unit in place: see {@link #encrypt}. */
    void decrypt(byte[] iv, byte[] buf, int off, int len) {
        run(dataDecrypt, iv, buf, off, len);
    }

    private void run(Cipher c, byte[] iv, byte[] buf, int off, int len) {
        if (len % 16 != 0 || iv.length != 16) {
            throw new IllegalArgumentException("XTS data units here are multiples of 16 bytes with a 16-byte tweak");
        }
        if (tweaks.length < len) {
            tweaks = new byte[len];
        }
        try {
            tweak.doFinal(iv, 0, 16, tweaks, 0);
            for (int j = 16; j < len; j += 16) {
                multiplyByAlpha(tweaks, j - 16, tweaks, j);
            }
            xor(buf, off, tweaks, len);
            if (c.doFinal(buf, off, len, buf, off) != len) {
                throw new IllegalStateException("AES/ECB returned a short block");
            }
            xor(buf, off, tweaks, len);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("AES/ECB failed", e);
        }
    }

    private static void xor(byte[] buf, int off, byte[] t, int len) {
        for (int i = 0; i < len; i++) {
            buf[off + i] ^= t[i];
        }
    }

    /** {@code out = in * alpha} in GF(2^128), the 16 bytes read as a little-endian number (IEEE 1619 5.2). */
    private static void multiplyByAlpha(byte[] in, int from, byte[] out, int to) {
        int carry = 0;
        for (int i = 0; i < 16; i++) {
            int b = in[from + i] & 0xff;
            out[to + i] = (byte) ((b << 1) | carry);
            carry = b >>> 7;
        }
        if (carry != 0) {
            out[to] ^= (byte) 0x87;
        }
    }

    /** Zeroes the tweak buffer; the JDK's ciphers hold their own key schedules until collected. */
    void destroy() {
        Arrays.fill(tweaks, (byte) 0);
    }
}
