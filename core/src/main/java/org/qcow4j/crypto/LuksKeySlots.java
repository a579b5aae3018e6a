package org.qcow4j.crypto;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.qcow4j.ImageOperationException;
import org.qcow4j.QcowException;

/**
 * Key slot changes of a LUKS header in place, as QEMU 7.2's {@code qcrypto_block_luks_amend_options} makes them
 * ({@code qemu-img amend -o encrypt.state=active|inactive,...}): its checks in its order and words, and its order of
 * writes. Adding a key writes the slot's key material first and then the header that marks it active (a crash leaves
 * the slot inactive, the image as before); erasing writes the header that marks the slot inactive first and then
 * overwrites the material with random bytes {@link #ERASE_ITERATIONS} times. Each write is forced before the next.
 */
public final class LuksKeySlots {
    /** QEMU's QCRYPTO_BLOCK_LUKS_ERASE_ITERATIONS. */
    static final int ERASE_ITERATIONS = 40;
    /** QEMU's QCRYPTO_BLOCK_LUKS_DEFAULT_ITER_TIME_MS. */
    static final long DEFAULT_ITER_TIME_MS = 2000;
    /** QEMU's QCRYPTO_BLOCK_LUKS_MIN_SLOT_KEY_ITERS. */
    static final long MIN_SLOT_KEY_ITERS = 1000;

    private LuksKeySlots() {
    }

    /** The LUKS header region: reads and forced writes at offsets from its start. */
    public interface Region extends Luks.RegionReader {
        /** Writes {@code data} at {@code offset} of the region and forces it to disk. */
        void write(long offset, byte[] data) throws IOException;
    }

    /** A secret named by {@code --object secret,id=ID}: its bytes, or null when no such object was given. */
    public record Secret(String id, byte[] value) {
        @Override
        public String toString() {
            return "Secret[" + id + "]"; // never the value
        }
    }

    /**
     * QEMU's QCryptoBlockAmendOptionsLUKS as qemu-img amend's {@code -o encrypt.*} gives them (null: not given).
     *
     * @param state      "active" or "inactive" (required; anything else refused in QEMU's words)
     * @param keyslot    the slot to change
     * @param oldSecret  erasing: the slots holding this password
     * @param newSecret  activating: the password to put in a slot
     * @param iterTimeMs activating: PBKDF2's time (QEMU's default 2000 ms)
     */
    public record Change(String state, Long keyslot, Secret oldSecret, Secret newSecret, Long iterTimeMs) {
    }

    /**
     * Applies {@code c} to the header {@code h} of {@code region}, the image unlocked with {@code openSecret} (QEMU's
     * {@code luks->secret}); returns the header as written. {@code force} is qemu-img's {@code --force}.
     */
    public static LuksHeader amend(LuksHeader h, Region region, Change c, byte[] openSecret, boolean force, String file)
            throws IOException {
        if (c.state() == null) {
            throw refused(file, "Parameter 'state' is missing");
        }
        return switch (c.state()) {
            case "active" -> add(h, region, c, openSecret, force, file);
            case "inactive" -> erase(h, region, c, force, file);
            default -> throw refused(file, "Parameter 'state' does not accept value '" + c.state() + "'");
        };
    }

    /** qcrypto_block_luks_amend_add_keyslot. */
    private static LuksHeader add(LuksHeader h, Region region, Change c, byte[] openSecret, boolean force, String file)
            throws IOException {
        long iterTime = c.iterTimeMs() == null ? DEFAULT_ITER_TIME_MS : c.iterTimeMs();
        if (c.newSecret() == null) {
            throw refused(file, "'new-secret' is required to activate a keyslot");
        }
        if (c.oldSecret() != null) {
            throw refused(file, "'old-secret' must not be given when activating keyslots");
        }
        int slot;
        if (c.keyslot() != null) {
            long k = c.keyslot();
            if (k < 0 || k >= LuksHeader.NUM_KEY_SLOTS) {
                // QEMU prints the int with %u
                throw refused(file, "Invalid keyslot " + Integer.toUnsignedString((int) k) + " specified, must be between 0 and "
                        + (LuksHeader.NUM_KEY_SLOTS - 1));
            }
            slot = (int) k;
        } else {
            slot = -1;
            for (int i = 0; i < LuksHeader.NUM_KEY_SLOTS && slot < 0; i++) {
                if (!h.slots().get(i).active()) {
                    slot = i;
                }
            }
            if (slot < 0) {
                throw refused(file, "Can't add a keyslot - all keyslots are in use");
            }
        }
        if (!force && h.slots().get(slot).active()) {
            throw refused(file, "Refusing to overwrite active keyslot " + slot + " - please erase it first");
        }
        byte[] master = findKey(h, region, openSecret);
        if (master == null) {
            throw new ImageOperationException(file, "Invalid password, cannot unlock any keyslot",
                    "Invalid password, cannot unlock any keyslot\nFailed to retrieve the master key");
        }
        try {
            byte[] password = secret(c.newSecret(), file);
            return storeKey(h, region, slot, password, master, iterTime, file);
        } finally {
            Arrays.fill(master, (byte) 0);
        }
    }

    /** qcrypto_block_luks_store_key: the slot's material written, then the header naming it active. */
    private static LuksHeader storeKey(LuksHeader h, Region region, int slotIndex, byte[] password, byte[] master,
                                       long iterTime, String file) throws IOException {
        LuksHeader.KeySlot old = h.slots().get(slotIndex);
        CipherSpec spec = h.spec();
        SecureRandom random = new SecureRandom();
        byte[] salt = new byte[LuksHeader.SALT_LEN];
        random.nextBytes(salt);
        long window = Math.max(25, Math.min(500, iterTime < 0 ? 500 : iterTime));
        long iters = Pbkdf2.countIterations(spec.hash(), password, salt, h.keyBytes(), window);
        // QEMU computes in unsigned 64 bits: a negative iter-time is a huge one
        if (Long.compareUnsigned(iters, Long.divideUnsigned(-1L, iterTime == 0 ? 1 : iterTime)) > 0 && iterTime != 0) {
            throw new ImageOperationException(file, "PBKDF iterations " + iters + " too large to scale",
                    "PBKDF iterations " + iters + " too large to scale: Numerical result out of range\n"
                            + "Failed to write to keyslot " + slotIndex);
        }
        iters = Long.divideUnsigned(iters * iterTime, 1000);
        if (Long.compareUnsigned(iters, 0xffffffffL) > 0) {
            throw new ImageOperationException(file, "PBKDF iterations " + Long.toUnsignedString(iters) + " larger than "
                    + 0xffffffffL, "PBKDF iterations " + Long.toUnsignedString(iters) + " larger than 4294967295: "
                    + "Numerical result out of range\nFailed to write to keyslot " + slotIndex);
        }
        iters = Math.max(iters, MIN_SLOT_KEY_ITERS);
        byte[] slotKey = Pbkdf2.derive(spec.hash(), password, salt, iters, h.keyBytes());
        byte[] split = AfSplit.split(spec.hash(), master, old.stripes(), random);
        try {
            try (DiskCipher cipher = new DiskCipher(spec, slotKey)) {
                cipher.encrypt(0, split, 0, split.length);
            }
            region.write(old.keyOffsetSectors() * LuksHeader.SECTOR_SIZE, split);
        } finally {
            Arrays.fill(slotKey, (byte) 0);
            Arrays.fill(split, (byte) 0);
            Arrays.fill(password, (byte) 0);
        }
        LuksHeader updated = withSlot(h, slotIndex,
                new LuksHeader.KeySlot(true, iters, salt, old.keyOffsetSectors(), old.stripes()));
        region.write(0, updated.encode());
        return updated;
    }

    /** qcrypto_block_luks_amend_erase_keyslots. */
    private static LuksHeader erase(LuksHeader h, Region region, Change c, boolean force, String file)
            throws IOException {
        if (c.newSecret() != null) {
            throw refused(file, "'new-secret' must not be given when erasing keyslots");
        }
        if (c.iterTimeMs() != null) {
            throw refused(file, "'iter-time' must not be given when erasing keyslots");
        }
        byte[] oldPassword = c.oldSecret() == null ? null : secret(c.oldSecret(), file);
        try {
            if (c.keyslot() != null) {
                long k = c.keyslot();
                if (k < 0 || k >= LuksHeader.NUM_KEY_SLOTS) {
                    throw refused(file, "Invalid keyslot " + (int) k + " specified, must be between 0 and "
                            + (LuksHeader.NUM_KEY_SLOTS - 1));
                }
                int slot = (int) k;
                if (oldPassword != null && !loadKey(h, slot, region, oldPassword)) {
                    throw refused(file, "Given keyslot " + slot
                            + " doesn't contain the given old password for erase operation");
                }
                if (!force && !h.slots().get(slot).active()) {
                    throw refused(file, "Given keyslot " + slot + " is already erased (inactive) ");
                }
                if (!force && activeSlots(h) == 1) {
                    throw refused(file, "Attempt to erase the only active keyslot " + slot + " which will erase all the "
                            + "data in the image irreversibly - refusing operation");
                }
                return eraseKey(h, region, slot);
            } else if (oldPassword != null) {
                List<Integer> matching = new ArrayList<>();
                for (int i = 0; i < LuksHeader.NUM_KEY_SLOTS; i++) {
                    if (loadKey(h, i, region, oldPassword)) {
                        matching.add(i);
                    }
                }
                if (matching.isEmpty()) {
                    throw refused(file, "No keyslots match given (old) password for erase operation");
                }
                if (!force && matching.size() == activeSlots(h)) {
                    throw refused(file, "All the active keyslots match the (old) password that was given and erasing "
                            + "them will erase all the data in the image irreversibly - refusing operation");
                }
                for (int i : matching) {
                    h = eraseKey(h, region, i);
                }
                return h;
            } else {
                throw refused(file, "To erase keyslot(s), either explicit keyslot index or the password currently "
                        + "contained in them must be given");
            }
        } finally {
            if (oldPassword != null) {
                Arrays.fill(oldPassword, (byte) 0);
            }
        }
    }

    /** qcrypto_block_luks_erase_key: the header first (slot inactive, salt and iterations zeroed), then the material. */
    private static LuksHeader eraseKey(LuksHeader h, Region region, int slotIndex) throws IOException {
        LuksHeader.KeySlot old = h.slots().get(slotIndex);
        LuksHeader updated = withSlot(h, slotIndex, new LuksHeader.KeySlot(false, 0, new byte[LuksHeader.SALT_LEN],
                old.keyOffsetSectors(), old.stripes()));
        region.write(0, updated.encode());
        byte[] garbage = new byte[h.keyBytes() * old.stripes()];
        SecureRandom random = new SecureRandom();
        for (int i = 0; i < ERASE_ITERATIONS; i++) {
            random.nextBytes(garbage);
            region.write(old.keyOffsetSectors() * LuksHeader.SECTOR_SIZE, garbage);
        }
        return updated;
    }

    private static LuksHeader withSlot(LuksHeader h, int index, LuksHeader.KeySlot slot) {
        List<LuksHeader.KeySlot> slots = new ArrayList<>(h.slots());
        slots.set(index, slot);
        return new LuksHeader(h.spec(), h.cipherName(), h.cipherMode(), h.hashSpec(), h.payloadOffsetSectors(),
                h.keyBytes(), h.mkDigest(), h.mkDigestSalt(), h.mkDigestIterations(), h.uuid(), List.copyOf(slots));
    }

    private static int activeSlots(LuksHeader h) {
        int n = 0;
        for (LuksHeader.KeySlot s : h.slots()) {
            n += s.active() ? 1 : 0;
        }
        return n;
    }

    /** qcrypto_block_luks_find_key: the master key from the first active slot {@code password} opens, or null. */
    private static byte[] findKey(LuksHeader h, Region region, byte[] password) throws IOException {
        for (int i = 0; i < LuksHeader.NUM_KEY_SLOTS; i++) {
            byte[] master = slotKey(h, i, region, password);
            if (master != null) {
                return master;
            }
        }
        return null;
    }

    /** qcrypto_block_luks_load_key: whether slot {@code i} is active and {@code password} opens it. */
    private static boolean loadKey(LuksHeader h, int i, Region region, byte[] password) throws IOException {
        byte[] master = slotKey(h, i, region, password);
        if (master == null) {
            return false;
        }
        Arrays.fill(master, (byte) 0);
        return true;
    }

    private static byte[] slotKey(LuksHeader h, int i, Region region, byte[] password) throws IOException {
        LuksHeader.KeySlot slot = h.slots().get(i);
        if (!slot.active()) {
            return null;
        }
        byte[] material = new byte[h.keyBytes() * slot.stripes()];
        ByteBuffer b = region.read(slot.keyOffsetSectors() * LuksHeader.SECTOR_SIZE, material.length);
        b.get(material);
        try {
            return Luks.openSlot(h, slot, material, password);
        } finally {
            Arrays.fill(material, (byte) 0);
        }
    }

    private static byte[] secret(Secret s, String file) throws QcowException {
        if (s.value() == null) {
            throw refused(file, "No secret with id '" + s.id() + "'");
        }
        return s.value().clone();
    }

    private static ImageOperationException refused(String file, String qemu) {
        return new ImageOperationException(file, qemu, qemu);
    }
}
