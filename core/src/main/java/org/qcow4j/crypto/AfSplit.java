package org.qcow4j.crypto;

import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Arrays;

/**
 * The LUKS1 anti-forensic splitter (QEMU's crypto/afsplit.c): a key of {@code n} bytes is spread over
 * {@code stripes} blocks of {@code n} bytes, all but the last random, the last the key XORed with the diffusion of
 * the others. The diffusion hashes a block in digest-sized pieces, piece {@code i} replaced by
 * {@code H(be32(i) || piece)} (the last piece cut to its length).
 */
final class AfSplit {
    private AfSplit() {
    }

    static byte[] split(Hash hash, byte[] key, int stripes, SecureRandom random) {
        int n = key.length;
        byte[] out = new byte[n * stripes];
        byte[] block = new byte[n];
        MessageDigest md = hash.newDigest();
        int i;
        for (i = 0; i < stripes - 1; i++) {
            byte[] r = new byte[n];
            random.nextBytes(r);
            System.arraycopy(r, 0, out, i * n, n);
            Arrays.fill(r, (byte) 0);
            xor(out, i * n, block, n);
            diffuse(md, block);
        }
        for (int k = 0; k < n; k++) {
            out[i * n + k] = (byte) (key[k] ^ block[k]);
        }
        Arrays.fill(block, (byte) 0);
        return out;
    }

    static byte[] merge(Hash hash, byte[] in, int keyLength, int stripes) {
        int n = keyLength;
        byte[] block = new byte[n];
        MessageDigest md = hash.newDigest();
        int i;
        for (i = 0; i < stripes - 1; i++) {
            xor(in, i * n, block, n);
            diffuse(md, block);
        }
        byte[] key = new byte[n];
        for (int k = 0; k < n; k++) {
            key[k] = (byte) (in[i * n + k] ^ block[k]);
        }
        Arrays.fill(block, (byte) 0);
        return key;
    }

    /** {@code block ^= src[at..at+n)}. */
    private static void xor(byte[] src, int at, byte[] block, int n) {
        for (int k = 0; k < n; k++) {
            block[k] ^= src[at + k];
        }
    }

    private static void diffuse(MessageDigest md, byte[] block) {
        int d = md.getDigestLength();
        int count = (block.length + d - 1) / d;
        for (int i = 0; i < count; i++) {
            int len = Math.min(d, block.length - i * d);
            md.update(new byte[] {(byte) (i >>> 24), (byte) (i >>> 16), (byte) (i >>> 8), (byte) i});
            md.update(block, i * d, len);
            byte[] h = md.digest();
            System.arraycopy(h, 0, block, i * d, len);
            Arrays.fill(h, (byte) 0);
        }
    }
}
