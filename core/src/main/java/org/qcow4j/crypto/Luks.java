package org.qcow4j.crypto;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import org.qcow4j.QcowException;

/**
 * LUKS1 key slots as QEMU's crypto/block-luks.c uses them: {@link #unlock} finds the master key with a passphrase
 * ({@code qcrypto_block_luks_find_key}), {@link #create} makes a new header with the passphrase in slot 0
 * ({@code qcrypto_block_luks_create}). A slot holds the master key split by {@link AfSplit} and encrypted, sector
 * by sector from sector 0, with a key PBKDF2 derives from the passphrase; the master key is right when its PBKDF2
 * digest matches the header's.
 */
public final class Luks {
    private Luks() {
    }

    /** Reads {@code length} bytes at {@code offset} of the LUKS header region. */
    @FunctionalInterface
    public interface RegionReader {
        ByteBuffer read(long offset, int length) throws IOException;
    }

    /**
     * The payload cipher with the master key the passphrase unlocks, trying the active slots in order.
     *
     * @throws QcowException "Invalid password, cannot unlock any keyslot" if no slot opens with it
     */
    public static DiskCipher unlock(LuksHeader h, RegionReader region, byte[] passphrase, String file) throws IOException {
        for (LuksHeader.KeySlot slot : h.slots()) {
            if (!slot.active()) {
                continue;
            }
            byte[] material = new byte[h.keyBytes() * slot.stripes()];
            region.read(slot.keyOffsetSectors() * LuksHeader.SECTOR_SIZE, material.length).get(material);
            byte[] master = openSlot(h, slot, material, passphrase);
            Arrays.fill(material, (byte) 0);
            if (master != null) {
                try {
                    return new DiskCipher(h.spec(), master);
                } finally {
                    Arrays.fill(master, (byte) 0);
                }
            }
        }
        throw new QcowException(file, "Invalid password, cannot unlock any keyslot", null,
                "Invalid password, cannot unlock any keyslot");
    }

    /** The master key in {@code slot} if {@code passphrase} opens it (its digest matches the header's), else null. */
    static byte[] openSlot(LuksHeader h, LuksHeader.KeySlot slot, byte[] material, byte[] passphrase) {
        CipherSpec spec = h.spec();
        byte[] slotKey = Pbkdf2.derive(spec.hash(), passphrase, slot.salt(), slot.iterations(), h.keyBytes());
        try (DiskCipher c = new DiskCipher(spec, slotKey)) {
            c.decrypt(0, material, 0, material.length);
        } finally {
            Arrays.fill(slotKey, (byte) 0);
        }
        byte[] master = AfSplit.merge(spec.hash(), material, h.keyBytes(), slot.stripes());
        byte[] digest = Pbkdf2.derive(spec.hash(), master, h.mkDigestSalt(), h.mkDigestIterations(), LuksHeader.DIGEST_LEN);
        boolean ok = MessageDigest.isEqual(digest, h.mkDigest());
        if (!ok) {
            Arrays.fill(master, (byte) 0);
        }
        return ok ? master : null;
    }

    /**
     * The bytes of the header region {@link #create} makes for {@code spec} (its payload offset): what QEMU's
     * qcrypto_block_calculate_payload_offset finds by a create it throws away, without the PBKDF2 work.
     */
    public static long regionLength(CipherSpec spec) {
        long headerSectors = LuksHeader.KEY_SLOT_OFFSET / LuksHeader.SECTOR_SIZE;
        long splitSectors = LuksHeader.splitKeySectors(spec.masterKeyBytes(), LuksHeader.STRIPES);
        return (headerSectors + LuksHeader.NUM_KEY_SLOTS * splitSectors) * LuksHeader.SECTOR_SIZE;
    }

    /** A new LUKS header region and the cipher of its payload (close it when done). */
    public record Created(byte[] region, LuksHeader header, DiskCipher cipher) {
        @Override
        public String toString() {
            return "Created[" + header + "]";
        }
    }

    /**
     * QEMU's qcrypto_block_luks_create: a random master key; its digest iterations are what a second of this thread's
     * PBKDF2 computes (measured over up to 500 ms, as QEMU, or over the iteration time if shorter, at least 25 ms), scaled to {@code iterTimeMs} and divided by 8, at least 1000; slot 0's iterations the same
     * benchmark (of the passphrase) scaled to {@code iterTimeMs}, at least 1000; key material laid out after the 4 KiB
     * header, each slot rounded up to 4 KiB; the region is the header and all eight slots' space (the payload offset).
     *
     * @param fixedIterations if positive, both iteration counts (tests; no benchmark)
     */
    public static Created create(CipherSpec spec, byte[] passphrase, long iterTimeMs, long fixedIterations,
                                 SecureRandom random) {
        int keyLen = spec.masterKeyBytes();
        byte[] mkSalt = new byte[LuksHeader.SALT_LEN];
        random.nextBytes(mkSalt);
        byte[] master = new byte[keyLen];
        random.nextBytes(master);
        try {
            DiskCipher payload = new DiskCipher(spec, master);
            long window = Math.max(25, Math.min(500, iterTimeMs));
            long mkIter = fixedIterations > 0 ? fixedIterations : Math.max(1000,
                    Pbkdf2.countIterations(spec.hash(), master, mkSalt, LuksHeader.DIGEST_LEN, window) * iterTimeMs / 1000 / 8);
            byte[] digest = Pbkdf2.derive(spec.hash(), master, mkSalt, mkIter, LuksHeader.DIGEST_LEN);
            long headerSectors = LuksHeader.KEY_SLOT_OFFSET / LuksHeader.SECTOR_SIZE;
            long splitSectors = LuksHeader.splitKeySectors(keyLen, LuksHeader.STRIPES);
            long payloadSectors = headerSectors + LuksHeader.NUM_KEY_SLOTS * splitSectors;
            byte[] region = new byte[(int) (payloadSectors * LuksHeader.SECTOR_SIZE)];

            byte[] salt = new byte[LuksHeader.SALT_LEN];
            random.nextBytes(salt);
            long iters = fixedIterations > 0 ? fixedIterations : Math.max(1000,
                    Pbkdf2.countIterations(spec.hash(), passphrase, salt, keyLen, window) * iterTimeMs / 1000);
            if (iters > 0xffffffffL || mkIter > 0xffffffffL) {
                throw new IllegalArgumentException("PBKDF iterations " + Math.max(iters, mkIter) + " larger than 4294967295");
            }
            byte[] slotKey = Pbkdf2.derive(spec.hash(), passphrase, salt, iters, keyLen);
            byte[] split = AfSplit.split(spec.hash(), master, LuksHeader.STRIPES, random);
            try (DiskCipher c = new DiskCipher(spec, slotKey)) {
                c.encrypt(0, split, 0, split.length);
            } finally {
                Arrays.fill(slotKey, (byte) 0);
            }
            System.arraycopy(split, 0, region, (int) (headerSectors * LuksHeader.SECTOR_SIZE), split.length);
            Arrays.fill(split, (byte) 0);

            List<LuksHeader.KeySlot> slots = new ArrayList<>();
            for (int i = 0; i < LuksHeader.NUM_KEY_SLOTS; i++) {
                slots.add(i == 0 ? new LuksHeader.KeySlot(true, iters, salt, headerSectors, LuksHeader.STRIPES)
                        : new LuksHeader.KeySlot(false, 0, new byte[LuksHeader.SALT_LEN], headerSectors + i * splitSectors,
                        LuksHeader.STRIPES));
            }
            byte[] uuidBytes = new byte[16];
            random.nextBytes(uuidBytes);
            uuidBytes[6] = (byte) (uuidBytes[6] & 0x0f | 0x40);
            uuidBytes[8] = (byte) (uuidBytes[8] & 0x3f | 0x80);
            ByteBuffer u = ByteBuffer.wrap(uuidBytes);
            String uuid = new UUID(u.getLong(), u.getLong()).toString();
            LuksHeader h = new LuksHeader(spec, "aes", spec.luksModeSpec(), spec.hash().qemuName(), payloadSectors, keyLen,
                    digest, mkSalt, mkIter, uuid, List.copyOf(slots));
            System.arraycopy(h.encode(), 0, region, 0, LuksHeader.SIZE);
            return new Created(region, h, payload);
        } finally {
            Arrays.fill(master, (byte) 0);
        }
    }
}
