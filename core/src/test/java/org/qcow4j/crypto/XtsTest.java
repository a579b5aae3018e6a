package org.qcow4j.crypto;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.HexFormat;
import org.junit.jupiter.api.Test;

/** {@link Xts} on the IEEE 1619-2007 vectors (as QEMU's tests/unit/test-crypto-xts.c carries them). */
class XtsTest {
    private static final HexFormat HEX = HexFormat.of();

    /** Vector 4: a 512-byte data unit, bytes 00..ff twice, keys from e and pi. */
    private static final String VECTOR4_CT =
            "27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89c"
            + "c78cf7f5e543445f8333d8fa7f56000005279fa5d8b5e4ad40e736ddb4d35412"
            + "328063fd2aab53e5ea1e0a9f332500a5df9487d07a5c92cc512c8866c7e860ce"
            + "93fdf166a24912b422976146ae20ce846bb7dc9ba94a767aaef20c0d61ad0265"
            + "5ea92dc4c4e41a8952c651d33174be51a10c421110e6d81588ede82103a252d8"
            + "a750e8768defffed9122810aaeb99f9172af82b604dc4b8e51bcb08235a6f434"
            + "1332e4ca60482a4ba1a03b3e65008fc5da76b70bf1690db4eae29c5f1badd03c"
            + "5ccf2a55d705ddcd86d449511ceb7ec30bf12b1fa35b913f9f747a8afd1b130e"
            + "94bff94effd01a91735ca1726acd0b197c4e5b03393697e126826fb6bbde8ecc"
            + "1e08298516e2c9ed03ff3c1b7860f6de76d4cecd94c8119855ef5297ca67e9f3"
            + "e7ff72b1e99785ca0a7e7720c5b36dc6d72cac9574c8cbbc2f801e23e56fd344"
            + "b07f22154beba0f08ce8891e643ed995c94d9a69c9f1b5f499027a78572aeebd"
            + "74d20cc39881c213ee770b1010e4bea718846977ae119f7a023ab58cca0ad752"
            + "afe656bb3c17256a9f6e9bf19fdd5a38fc82bbe872c5539edb609ef4f79c203e"
            + "bb140f2e583cb2ad15b4aa5b655016a8449277dbd477ef2c8d6c017db738b18d"
            + "eb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568";

    private static void check(String key1, String key2, long seq, String pt, String ct) {
        byte[] key = HEX.parseHex(key1 + key2);
        byte[] iv = new byte[16];
        for (int i = 0; i < 8; i++) {
            iv[i] = (byte) (seq >>> (8 * i));
        }
        byte[] buf = HEX.parseHex(pt);
        Xts xts = new Xts(key);
        xts.encrypt(iv, buf, 0, buf.length);
        assertArrayEquals(HEX.parseHex(ct), buf);
        xts.decrypt(iv, buf, 0, buf.length);
        assertArrayEquals(HEX.parseHex(pt), buf);
    }

    @Test
    void vector1() {
        check("00".repeat(16), "00".repeat(16), 0, "00".repeat(32),
                "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e");
    }

    @Test
    void vector2() {
        check("11".repeat(16), "22".repeat(16), 0x3333333333L, "44".repeat(32),
                "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0");
    }

    @Test
    void vector5() {
        check("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0", "bfbebdbcbbbab9b8b7b6b5b4b3b2b1b0", 0x123456789aL, "44".repeat(32),
                "b01f86f8edc18637 06fa8a4253e34f28af319de38334870f4dd1f94cbe9832f1".replace(" ", ""));
    }

    @Test
    void vector4WholeSector() {
        StringBuilder pt = new StringBuilder();
        for (int i = 0; i < 512; i++) {
            pt.append(String.format("%02x", i & 0xff));
        }
        check("27182818284590452353602874713526", "31415926535897932384626433832795", 0, pt.toString(), VECTOR4_CT);
    }

    @Test
    void partialBlocksAreRefused() {
        Xts xts = new Xts(new byte[32]);
        assertThrows(IllegalArgumentException.class, () -> xts.encrypt(new byte[16], new byte[17], 0, 17));
    }

    /** XTS as the standard states it, one block at a time, each tweak doubled byte by byte (the test's reference). */
    private static void reference(boolean encrypt, byte[] key, byte[] iv, byte[] buf, int off, int len) throws Exception {
        int half = key.length / 2;
        javax.crypto.Cipher k1 = javax.crypto.Cipher.getInstance("AES/ECB/NoPadding");
        k1.init(encrypt ? javax.crypto.Cipher.ENCRYPT_MODE : javax.crypto.Cipher.DECRYPT_MODE,
                new javax.crypto.spec.SecretKeySpec(key, 0, half, "AES"));
        javax.crypto.Cipher k2 = javax.crypto.Cipher.getInstance("AES/ECB/NoPadding");
        k2.init(javax.crypto.Cipher.ENCRYPT_MODE, new javax.crypto.spec.SecretKeySpec(key, half, half, "AES"));
        byte[] t = k2.doFinal(iv);
        for (int j = 0; j < len; j += 16) {
            byte[] block = new byte[16];
            for (int i = 0; i < 16; i++) {
                block[i] = (byte) (buf[off + j + i] ^ t[i]);
            }
            block = k1.doFinal(block);
            for (int i = 0; i < 16; i++) {
                buf[off + j + i] = (byte) (block[i] ^ t[i]);
            }
            int carry = 0;
            for (int i = 0; i < 16; i++) {
                int b = t[i] & 0xff;
                t[i] = (byte) (b << 1 | carry);
                carry = b >>> 7;
            }
            if (carry != 0) {
                t[0] ^= (byte) 0x87;
            }
        }
    }

    /**
     * {@link DiskCipher}'s XTS, which does many sectors per call (more than {@link Xts#CHUNK}, a last unit shorter than
     * a sector), equals the reference sector by sector for plain64 (sector numbers past 2^32), plain (which keeps
     * their low 32 bits) and ESSIV IVs, both ways.
     */
    @Test
    void manySectorsAtOnceEqualTheReferenceSectorBySector() throws Exception {
        java.util.Random r = new java.util.Random(5);
        CipherSpec[] specs = {new CipherSpec(32, CipherSpec.Mode.XTS, CipherSpec.IvAlg.PLAIN64, null, Hash.SHA256),
                new CipherSpec(16, CipherSpec.Mode.XTS, CipherSpec.IvAlg.PLAIN, null, Hash.SHA1),
                new CipherSpec(24, CipherSpec.Mode.XTS, CipherSpec.IvAlg.ESSIV, Hash.SHA256, Hash.SHA256)};
        for (CipherSpec spec : specs) {
            byte[] key = new byte[spec.masterKeyBytes()];
            r.nextBytes(key);
            byte[] plain = new byte[Xts.CHUNK * 2 + 512 * 3 + 48];
            r.nextBytes(plain);
            long offset = (5L << 32) * 512 - 512 * 7; // the sector numbers cross 2^32 + 5 * 2^32
            byte[] ours = plain.clone();
            try (DiskCipher c = new DiskCipher(spec, key)) {
                c.encrypt(offset, ours, 0, ours.length);
                byte[] expected = plain.clone();
                javax.crypto.Cipher essiv = null;
                if (spec.ivAlg() == CipherSpec.IvAlg.ESSIV) {
                    essiv = javax.crypto.Cipher.getInstance("AES/ECB/NoPadding");
                    byte[] salt = java.security.MessageDigest.getInstance("SHA-256").digest(key);
                    essiv.init(javax.crypto.Cipher.ENCRYPT_MODE, new javax.crypto.spec.SecretKeySpec(salt, "AES"));
                }
                for (int at = 0; at < expected.length; at += 512) {
                    long sector = offset / 512 + at / 512;
                    byte[] iv = new byte[16];
                    int n = spec.ivAlg() == CipherSpec.IvAlg.PLAIN ? 4 : 8;
                    for (int i = 0; i < n; i++) {
                        iv[i] = (byte) (sector >>> (8 * i));
                    }
                    if (essiv != null) {
                        iv = essiv.doFinal(iv);
                    }
                    reference(true, key, iv, expected, at, Math.min(512, expected.length - at));
                }
                assertArrayEquals(expected, ours, spec.toString());
                c.decrypt(offset, ours, 0, ours.length);
                assertArrayEquals(plain, ours, spec.toString());
            }
        }
    }
}
