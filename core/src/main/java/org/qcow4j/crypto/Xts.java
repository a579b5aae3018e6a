package org.qcow4j.crypto;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.security.GeneralSecurityException;
import java.util.Arrays;
import javax.crypto.Cipher;
import javax.crypto.spec.SecretKeySpec;

/**
 * AES in XTS mode (IEEE 1619-2007, QEMU's crypto/xts.c) over the JDK's AES/ECB/NoPadding: the first half of the key
 * encrypts the data, the second the tweak. For each 16-byte block {@code j} of a data unit, {@code T_j = E_K2(IV) *
 * alpha^j} in GF(2^128) (little-endian, reduction 0x87) and {@code C_j = E_K1(P_j ^ T_j) ^ T_j}. A data unit here is
 * a multiple of 16 bytes (LUKS sectors are 512 bytes): ciphertext stealing is never needed and is refused.
 *
 * <p>Since every block is independent once its tweak is known, {@link #encrypt(byte[], int, byte[], int, int)} does
 * many units at once, up to {@link #CHUNK} bytes per step: their IVs through the tweak cipher in one call, the tweak
 * chains doubled on two longs, {@code P ^ T} into a scratch buffer, one ECB call from it back into the data (the JDK's
 * ECB is fastest in bulk and not in place), then {@code ^ T}. Not thread-safe; {@link #destroy} forgets the keys as
 * far as the JDK lets it.
 */
final class Xts {
    /** The most bytes one step passes through the block cipher (the scratch and tweak buffers' size). */
    static final int CHUNK = 64 * 1024;
    private static final VarHandle LONGS = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    private final Cipher data;
    private final Cipher dataDecrypt;
    private final Cipher tweak;
    private byte[] tweaks = new byte[0];
    private byte[] scratch = new byte[0];
    private byte[] encryptedIvs = new byte[0];

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
        check(iv, 1, len);
        run(data, iv, Math.max(16, len), buf, off, len);
    }

    /** Decrypts one data unit in place: see {@link #encrypt(byte[], byte[], int, int)}. */
    void decrypt(byte[] iv, byte[] buf, int off, int len) {
        check(iv, 1, len);
        run(dataDecrypt, iv, Math.max(16, len), buf, off, len);
    }

    /**
     * Encrypts {@code len} bytes (a multiple of 16) at {@code off} in place as consecutive data units of {@code unit}
     * bytes (the last may be shorter), unit {@code i} with the tweak IV at {@code ivs[16 i]}.
     */
    void encrypt(byte[] ivs, int unit, byte[] buf, int off, int len) {
        check(ivs, units(unit, len), len);
        run(data, ivs, unit, buf, off, len);
    }

    /** Decrypts consecutive data units in place: see {@link #encrypt(byte[], int, byte[], int, int)}. */
    void decrypt(byte[] ivs, int unit, byte[] buf, int off, int len) {
        check(ivs, units(unit, len), len);
        run(dataDecrypt, ivs, unit, buf, off, len);
    }

    private static int units(int unit, int len) {
        if (unit <= 0 || unit % 16 != 0) {
            throw new IllegalArgumentException("XTS data units here are multiples of 16 bytes, not " + unit);
        }
        return (int) (((long) len + unit - 1) / unit);
    }

    private static void check(byte[] ivs, int units, int len) {
        if (len % 16 != 0 || ivs.length < 16L * units || ivs.length % 16 != 0) {
            throw new IllegalArgumentException("XTS data units here are multiples of 16 bytes with a 16-byte tweak");
        }
    }

    private void run(Cipher c, byte[] ivs, int unit, byte[] buf, int off, int len) {
        int perStep = Math.max(1, CHUNK / unit);
        int stepBytes = (int) Math.min(len, (long) perStep * unit);
        if (scratch.length < stepBytes) {
            destroy();
            scratch = new byte[stepBytes];
            tweaks = new byte[stepBytes];
        }
        if (encryptedIvs.length < 16 * perStep) {
            encryptedIvs = new byte[16 * perStep];
        }
        try {
            for (int first = 0, done = 0; done < len; first += perStep) {
                int bytes = Math.min(stepBytes, len - done);
                int n = (bytes + unit - 1) / unit;
                tweak.doFinal(ivs, 16 * first, 16 * n, encryptedIvs, 0);
                int at = off + done;
                for (int k = 0; k < n; k++) {
                    long lo = (long) LONGS.get(encryptedIvs, 16 * k);
                    long hi = (long) LONGS.get(encryptedIvs, 16 * k + 8);
                    for (int j = k * unit, end = Math.min(j + unit, bytes); j < end; j += 16) {
                        LONGS.set(tweaks, j, lo);
                        LONGS.set(tweaks, j + 8, hi);
                        LONGS.set(scratch, j, (long) LONGS.get(buf, at + j) ^ lo);
                        LONGS.set(scratch, j + 8, (long) LONGS.get(buf, at + j + 8) ^ hi);
                        // times alpha: a 128-bit left shift, the bit shifted out folded back in as 0x87
                        long carry = hi >> 63;
                        hi = hi << 1 | lo >>> 63;
                        lo = lo << 1 ^ carry & 0x87;
                    }
                }
                if (c.doFinal(scratch, 0, bytes, buf, at) != bytes) {
                    throw new IllegalStateException("AES/ECB returned a short block");
                }
                for (int j = 0; j < bytes; j += 8) {
                    LONGS.set(buf, at + j, (long) LONGS.get(buf, at + j) ^ (long) LONGS.get(tweaks, j));
                }
                done += bytes;
            }
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("AES/ECB failed", e);
        }
    }

    /** Zeroes the tweak and scratch buffers; the JDK's ciphers hold their own key schedules until collected. */
    void destroy() {
        Arrays.fill(tweaks, (byte) 0);
        Arrays.fill(scratch, (byte) 0);
        Arrays.fill(encryptedIvs, (byte) 0);
    }
}
