package org.qcow4j.crypto;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.security.GeneralSecurityException;
import java.util.Arrays;
import javax.crypto.Mac;
import javax.crypto.SecretKey;

/**
 * PBKDF2 (RFC 8018 5.2) over the JDK's HMAC, for any password bytes: the JDK's own PBKDF2 takes only characters,
 * and LUKS also hashes the binary master key with it. {@link #countIterations} is QEMU's
 * {@code qcrypto_pbkdf2_count_iters}: how many iterations take a second of this thread's CPU time.
 */
final class Pbkdf2 {
    private Pbkdf2() {
    }

    /** A raw HMAC key that may be empty (the JDK's SecretKeySpec refuses an empty one; an empty passphrase is valid). */
    private record RawKey(byte[] bytes, String algorithm) implements SecretKey {
        @Override
        public String getAlgorithm() {
            return algorithm;
        }

        @Override
        public String getFormat() {
            return "RAW";
        }

        @Override
        public byte[] getEncoded() {
            return bytes.clone();
        }

        @Override
        public String toString() {
            return "RawKey[" + algorithm + "]"; // never the key
        }
    }

    static byte[] derive(Hash hash, byte[] password, byte[] salt, long iterations, int outLength) {
        if (iterations < 1) {
            throw new IllegalArgumentException("PBKDF2 needs at least one iteration");
        }
        Mac mac;
        try {
            mac = Mac.getInstance(hash.hmacAlgorithm());
            mac.init(new RawKey(password, hash.hmacAlgorithm()));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("the JDK has no " + hash.hmacAlgorithm(), e);
        }
        int hlen = hash.length();
        byte[] out = new byte[outLength];
        byte[] u = new byte[hlen];
        byte[] t = new byte[hlen];
        try {
            for (int block = 1, at = 0; at < outLength; block++, at += hlen) {
                mac.update(salt);
                mac.update(new byte[] {(byte) (block >>> 24), (byte) (block >>> 16), (byte) (block >>> 8), (byte) block});
                mac.doFinal(u, 0);
                System.arraycopy(u, 0, t, 0, hlen);
                for (long i = 1; i < iterations; i++) {
                    mac.update(u);
                    mac.doFinal(u, 0);
                    for (int k = 0; k < hlen; k++) {
                        t[k] ^= u[k];
                    }
                }
                System.arraycopy(t, 0, out, at, Math.min(hlen, outLength - at));
            }
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        } finally {
            Arrays.fill(u, (byte) 0);
            Arrays.fill(t, (byte) 0);
        }
        return out;
    }

    /**
     * QEMU's {@code qcrypto_pbkdf2_count_iters} over a shorter window when little time is asked for: starting at 2^15,
     * runs PBKDF2 until a run takes more than {@code windowMs} of thread CPU time (ten times more iterations after a
     * run under a fifth of it, else scaled to twice the window), then scales the count to one second. QEMU's window is
     * 500 ms whatever the iteration time; {@link Luks#create} passes QEMU's for the default 2 s but no more than the
     * iteration time asked for (at least 25 ms), so that {@code iter-time=10} does not spend a second measuring.
     */
    static long countIterations(Hash hash, byte[] key, byte[] salt, int outLength, long windowMs) {
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        boolean cpu = mx.isCurrentThreadCpuTimeSupported();
        long window = windowMs * 1_000_000;
        long iterations = 1 << 15;
        long delta;
        while (true) {
            long start = cpu ? mx.getCurrentThreadCpuTime() : System.nanoTime();
            Arrays.fill(derive(hash, key, salt, iterations, outLength), (byte) 0);
            long end = cpu ? mx.getCurrentThreadCpuTime() : System.nanoTime();
            delta = Math.max(1, end - start);
            if (delta > window) {
                break;
            } else if (delta < window / 5) {
                iterations *= 10;
            } else {
                iterations = iterations * 2 * window / delta;
            }
        }
        return iterations * 1_000_000_000L / delta;
    }
}
