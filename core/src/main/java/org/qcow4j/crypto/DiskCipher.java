package org.qcow4j.crypto;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.security.GeneralSecurityException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinTask;
import javax.crypto.Cipher;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * Encrypts and decrypts a disk payload in 512-byte sectors as QEMU's {@code do_qcrypto_block_cipher_encdec}: each
 * sector is one unit of the cipher, its IV made by the IV generator from the sector number (the byte offset / 512).
 * Which offset numbers the sectors is the caller's: the host offset for qcow2's LUKS, the guest offset for legacy
 * AES, 0 for LUKS key material. Thread-safe: each thread borrows its own ciphers from a pool. {@link #close} zeroes
 * the key; the object never prints it.
 */
public final class DiskCipher implements AutoCloseable {
    public static final int SECTOR_SIZE = 512;
    private static final VarHandle LONGS = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    private final CipherSpec spec;
    private final byte[] key;
    private final ConcurrentLinkedQueue<Engine> engines = new ConcurrentLinkedQueue<>();
    private volatile boolean closed;

    /** @param key the master key (copied; zero your own copy) */
    public DiskCipher(CipherSpec spec, byte[] key) {
        if (key.length != spec.masterKeyBytes()) {
            throw new IllegalArgumentException("key of " + key.length + " bytes for " + spec.cipherAlgName() + "-"
                    + spec.luksModeSpec());
        }
        this.spec = spec;
        this.key = key.clone();
        engines.offer(new Engine()); // refuses an impossible spec (ESSIV key size) at once
    }

    public CipherSpec spec() {
        return spec;
    }

    /** Encrypts {@code len} bytes (whole sectors) in place; the first is sector {@code offset / 512}. */
    public void encrypt(long offset, byte[] buf, int off, int len) {
        run(true, offset, buf, off, len);
    }

    /** Below this many bytes {@link #encryptInParallel} encrypts on the calling thread alone. */
    private static final int PARALLEL_MIN = 256 * 1024;

    /**
     * {@link #encrypt}, split into pieces of whole sectors (at least 128 KiB) that the common fork-join pool's threads
     * encrypt while the calling thread does one itself; returns when all are done. For a writer that encrypts what
     * others read for it (convert into an encrypted image).
     */
    public void encryptInParallel(long offset, byte[] buf, int off, int len) {
        int threads = Math.min(Runtime.getRuntime().availableProcessors(), ForkJoinPool.getCommonPoolParallelism() + 1);
        if (len < PARALLEL_MIN || threads < 2 || len % SECTOR_SIZE != 0) {
            encrypt(offset, buf, off, len);
            return;
        }
        int pieces = Math.min(threads, len / (PARALLEL_MIN / 2));
        int piece = (len / pieces + SECTOR_SIZE - 1) / SECTOR_SIZE * SECTOR_SIZE;
        List<ForkJoinTask<?>> others = new ArrayList<>();
        for (int at = piece; at < len; at += piece) {
            int from = at;
            int n = Math.min(piece, len - at);
            others.add(ForkJoinPool.commonPool().submit(() -> encrypt(offset + from, buf, off + from, n)));
        }
        RuntimeException failure = null;
        try {
            encrypt(offset, buf, off, Math.min(piece, len));
        } catch (RuntimeException e) {
            failure = e;
        }
        for (ForkJoinTask<?> t : others) {
            try {
                t.join();
            } catch (RuntimeException e) {
                if (failure == null) {
                    failure = e;
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /** Decrypts whole sectors in place: see {@link #encrypt}. */
    public void decrypt(long offset, byte[] buf, int off, int len) {
        run(false, offset, buf, off, len);
    }

    private void run(boolean encrypt, long offset, byte[] buf, int off, int len) {
        if (offset % SECTOR_SIZE != 0 || len % SECTOR_SIZE != 0 && len % 16 != 0) {
            throw new IllegalArgumentException("unaligned encryption request: " + len + " bytes at " + offset);
        }
        if (closed) {
            throw new IllegalStateException("the disk cipher is closed");
        }
        Engine e = engines.poll();
        if (e == null) {
            e = new Engine();
        }
        try {
            long sector = offset / SECTOR_SIZE;
            if (spec.mode() == CipherSpec.Mode.XTS) {
                e.xts(encrypt, sector, buf, off, len);
            } else {
                for (int at = 0; at < len; at += SECTOR_SIZE, sector++) {
                    e.sector(encrypt, sector, buf, off + at, Math.min(SECTOR_SIZE, len - at));
                }
            }
        } finally {
            engines.offer(e);
        }
    }

    @Override
    public void close() {
        closed = true;
        Arrays.fill(key, (byte) 0);
        Engine e;
        while ((e = engines.poll()) != null) {
            e.destroy();
        }
    }

    @Override
    public String toString() {
        return "DiskCipher[" + spec.cipherAlgName() + "-" + spec.luksModeSpec() + "]";
    }

    /** One thread's ciphers. */
    private final class Engine {
        private final Xts xts;
        private final Cipher cbcEncrypt;
        private final Cipher cbcDecrypt;
        private final SecretKeySpec aesKey;
        private final Cipher essiv;
        private final byte[] iv = new byte[16];
        /** XTS: the IVs of one {@link Xts#CHUNK} of sectors (ESSIV: before and after its cipher). */
        private final byte[] ivs;
        private final byte[] essivIvs;

        Engine() {
            try {
                if (spec.mode() == CipherSpec.Mode.XTS) {
                    xts = new Xts(key);
                    aesKey = null;
                    cbcEncrypt = cbcDecrypt = null;
                } else {
                    xts = null;
                    aesKey = new SecretKeySpec(key, "AES");
                    String t = spec.mode() == CipherSpec.Mode.CBC ? "AES/CBC/NoPadding" : "AES/ECB/NoPadding";
                    cbcEncrypt = Cipher.getInstance(t);
                    cbcDecrypt = Cipher.getInstance(t);
                    if (spec.mode() == CipherSpec.Mode.ECB) {
                        cbcEncrypt.init(Cipher.ENCRYPT_MODE, aesKey);
                        cbcDecrypt.init(Cipher.DECRYPT_MODE, aesKey);
                    }
                }
                if (spec.ivAlg() == CipherSpec.IvAlg.ESSIV) {
                    essiv = essivCipher(spec, key);
                } else {
                    essiv = null;
                }
                int chunkIvs = spec.mode() == CipherSpec.Mode.XTS ? 16 * (Xts.CHUNK / SECTOR_SIZE) : 0;
                ivs = new byte[chunkIvs];
                essivIvs = new byte[essiv == null ? 0 : chunkIvs];
            } catch (GeneralSecurityException e) {
                throw new IllegalStateException("the JDK's AES failed", e);
            }
        }

        /** QEMU's qcrypto_ivgen_essiv_init: an AES key (the digest's length) hashed from the whole master key. */
        private static Cipher essivCipher(CipherSpec spec, byte[] key) throws GeneralSecurityException {
            Hash h = spec.ivHash() == null ? Hash.SHA256 : spec.ivHash();
            Integer n = CipherSpec.essivKeyBytes(spec.aesKeyBytes(), h);
            if (n == null) {
                throw new IllegalArgumentException("No AES cipher with key size " + h.length() + " available");
            }
            byte[] salt = h.newDigest().digest(key);
            try {
                Cipher c = Cipher.getInstance("AES/ECB/NoPadding");
                c.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(salt, 0, n, "AES"));
                return c;
            } finally {
                Arrays.fill(salt, (byte) 0);
            }
        }

        /** The IV of sector {@code n} (QEMU's crypto/ivgen-plain.c, ivgen-plain64.c, ivgen-essiv.c). */
        private void iv(long n) throws GeneralSecurityException {
            Arrays.fill(iv, (byte) 0);
            int bytes = spec.ivAlg() == CipherSpec.IvAlg.PLAIN ? 4 : 8;
            for (int i = 0; i < bytes; i++) {
                iv[i] = (byte) (n >>> (8 * i));
            }
            if (essiv != null) {
                essiv.doFinal(iv, 0, 16, iv, 0);
            }
        }

        /**
         * XTS over many sectors from sector {@code n}: their IVs made {@link Xts#CHUNK} bytes' worth at a time, each
         * step's sectors then encrypted or decrypted in one {@link Xts} call.
         */
        void xts(boolean encrypt, long n, byte[] buf, int off, int len) {
            try {
                for (int at = 0; at < len; at += Xts.CHUNK) {
                    int bytes = Math.min(Xts.CHUNK, len - at);
                    int sectors = (bytes + SECTOR_SIZE - 1) / SECTOR_SIZE;
                    long first = n + at / SECTOR_SIZE;
                    boolean plain = spec.ivAlg() == CipherSpec.IvAlg.PLAIN;
                    for (int k = 0; k < sectors; k++) {
                        long s = first + k;
                        LONGS.set(ivs, 16 * k, plain ? s & 0xffffffffL : s);
                        LONGS.set(ivs, 16 * k + 8, 0L);
                    }
                    if (essiv != null) {
                        essiv.doFinal(ivs, 0, 16 * sectors, essivIvs, 0);
                        System.arraycopy(essivIvs, 0, ivs, 0, 16 * sectors);
                    }
                    if (encrypt) {
                        xts.encrypt(ivs, SECTOR_SIZE, buf, off + at, bytes);
                    } else {
                        xts.decrypt(ivs, SECTOR_SIZE, buf, off + at, bytes);
                    }
                }
            } catch (GeneralSecurityException e) {
                throw new IllegalStateException("the JDK's AES failed", e);
            }
        }

        void sector(boolean encrypt, long n, byte[] buf, int off, int len) {
            try {
                if (spec.mode() != CipherSpec.Mode.ECB) {
                    iv(n);
                }
                switch (spec.mode()) {
                    case XTS -> {
                        if (encrypt) {
                            xts.encrypt(iv, buf, off, len);
                        } else {
                            xts.decrypt(iv, buf, off, len);
                        }
                    }
                    case CBC -> {
                        Cipher c = encrypt ? cbcEncrypt : cbcDecrypt;
                        c.init(encrypt ? Cipher.ENCRYPT_MODE : Cipher.DECRYPT_MODE, aesKey, new IvParameterSpec(iv));
                        c.doFinal(buf, off, len, buf, off);
                    }
                    case ECB -> (encrypt ? cbcEncrypt : cbcDecrypt).doFinal(buf, off, len, buf, off);
                }
            } catch (GeneralSecurityException e) {
                throw new IllegalStateException("the JDK's AES failed", e);
            }
        }

        void destroy() {
            if (xts != null) {
                xts.destroy();
            }
            Arrays.fill(iv, (byte) 0);
            Arrays.fill(ivs, (byte) 0);
            Arrays.fill(essivIvs, (byte) 0);
        }
    }
}
