package org.qcow4j.crypto;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.FormatException;
import org.qcow4j.UnsupportedFeatureException;

/**
 * The LUKS1 partition header (cryptsetup's on-disk-format.pdf 1.2.1, QEMU's QCryptoBlockLUKSHeader), 592 bytes,
 * big-endian:
 * <pre>
 *   0 magic "LUKS\xba\xbe"   6 version u16 (1)       8 cipher_name[32]      40 cipher_mode[32] ("xts-plain64")
 *  72 hash_spec[32]        104 payload_offset u32 (sectors)                108 key_bytes u32
 * 112 mk_digest[20]        132 mk_digest_salt[32]  164 mk_digest_iter u32  168 uuid[40]
 * 208 8 key slots of 48 bytes: active u32 (0x00AC71F3 | 0x0000DEAD), iterations u32, salt[32],
 *     key_material_offset u32 (sectors), stripes u32 (4000)
 * </pre>
 * {@link #parse} makes QEMU's checks ({@code qcrypto_block_luks_check_header} and {@code _parse_header}, in its
 * order and words) and bounds what an untrusted header can make the reader compute: PBKDF2 iteration counts above
 * {@link #MAX_ITERATIONS} and key material outside the region the image gives the header are refused before any
 * work is done.
 */
public record LuksHeader(CipherSpec spec, String cipherName, String cipherMode, String hashSpec, long payloadOffsetSectors,
                         int keyBytes, byte[] mkDigest, byte[] mkDigestSalt, long mkDigestIterations, String uuid,
                         List<KeySlot> slots) {
    public static final int SIZE = 592;
    public static final byte[] MAGIC = {'L', 'U', 'K', 'S', (byte) 0xba, (byte) 0xbe};
    public static final int VERSION = 1;
    public static final int NUM_KEY_SLOTS = 8;
    public static final int STRIPES = 4000;
    public static final int SALT_LEN = 32;
    public static final int DIGEST_LEN = 20;
    public static final int SECTOR_SIZE = 512;
    /** Where key material may start: after the header's first 4 KiB (QEMU's QCRYPTO_BLOCK_LUKS_KEY_SLOT_OFFSET). */
    public static final int KEY_SLOT_OFFSET = 4096;
    public static final int KEY_SLOT_ENABLED = 0x00AC71F3;
    public static final int KEY_SLOT_DISABLED = 0x0000DEAD;
    /**
     * The most PBKDF2 iterations a header may ask of one key slot or of the master key digest: 2^26, about half a
     * minute of HMAC-SHA256 on one core of a 2020s machine. QEMU's own headers ask for a second or two (its default
     * iter-time is 2 s); a header asking for billions is hostile, and a wrong passphrase would spend that on every
     * slot.
     */
    public static final long MAX_ITERATIONS = 1L << 26;

    /** One key slot: a copy of the master key, split with {@link #STRIPES} stripes and encrypted with a passphrase. */
    public record KeySlot(boolean active, long iterations, byte[] salt, long keyOffsetSectors, int stripes) {
        @Override
        public String toString() {
            return "KeySlot[active=" + active + ", iterations=" + iterations + ", keyOffsetSectors=" + keyOffsetSectors
                    + ", stripes=" + stripes + "]";
        }
    }

    /** Bytes of key material a slot takes, rounded up as QEMU's qcrypto_block_luks_splitkeylen_sectors (in sectors). */
    static long splitKeySectors(long keyBytes, long stripes) {
        // QEMU multiplies two 32-bit fields in 32 bits: an absurd key size wraps, and its checks see what is left
        long sectors = (((keyBytes * stripes) & 0xffffffffL) + SECTOR_SIZE - 1) / SECTOR_SIZE;
        long headerSectors = KEY_SLOT_OFFSET / SECTOR_SIZE;
        return (sectors + headerSectors - 1) / headerSectors * headerSectors;
    }

    /** Where the payload starts, in bytes from the header. */
    public long payloadOffset() {
        return payloadOffsetSectors * SECTOR_SIZE;
    }

    /**
     * Parses and checks the header in {@code b} (at least {@link #SIZE} bytes) that lies in a region of
     * {@code regionLength} bytes.
     *
     * @param file  the image file, for messages
     * @param where how the region is named in messages ("LUKS header")
     */
    public static LuksHeader parse(ByteBuffer b, long regionLength, String file) throws FormatException,
            UnsupportedFeatureException {
        return parse(b, regionLength, file, MAX_ITERATIONS);
    }

    /** {@link #parse} with another iteration limit than {@link #MAX_ITERATIONS} (tests: fuzzing at a bearable cost). */
    static LuksHeader parse(ByteBuffer b, long regionLength, String file, long maxIterations) throws FormatException,
            UnsupportedFeatureException {
        b = b.duplicate().order(ByteOrder.BIG_ENDIAN);
        if (b.remaining() < SIZE) {
            throw new FormatException(file, "LUKS header", b.remaining() + " bytes", "shorter than " + SIZE + " bytes");
        }
        int base = b.position();
        byte[] magic = new byte[6];
        b.get(base, magic);
        if (!java.util.Arrays.equals(magic, MAGIC)) {
            throw new FormatException(file, "LUKS magic", hex(magic), "not a LUKS header", "Volume is not in LUKS format");
        }
        int version = b.getShort(base + 6) & 0xffff;
        if (version != VERSION) {
            throw new FormatException(file, "LUKS version", version, "only LUKS version 1 is supported",
                    "LUKS version " + version + " is not supported");
        }
        String cipherName = cString(b, base + 8, 32, file, "cipher_name", "cipher name");
        String cipherMode = cString(b, base + 40, 32, file, "cipher_mode", "cipher mode");
        String hashSpec = cString(b, base + 72, 32, file, "hash_spec", "hash spec");
        long payload = Integer.toUnsignedLong(b.getInt(base + 104));
        long keyBytes = Integer.toUnsignedLong(b.getInt(base + 108));
        byte[] digest = new byte[DIGEST_LEN];
        b.get(base + 112, digest);
        byte[] mkSalt = new byte[SALT_LEN];
        b.get(base + 132, mkSalt);
        long mkIter = Integer.toUnsignedLong(b.getInt(base + 164));
        String uuid = cString(b, base + 168, 40, file, "uuid", null);
        long headerSectors = KEY_SLOT_OFFSET / SECTOR_SIZE;
        if (payload < headerSectors) {
            throw new FormatException(file, "LUKS payload_offset", payload, "payload overlaps the header",
                    "LUKS payload is overlapping with the header");
        }
        if (mkIter == 0) {
            throw new FormatException(file, "LUKS mk_digest_iter", 0, "iteration count is zero",
                    "LUKS key iteration count is zero");
        }
        List<KeySlot> slots = new ArrayList<>();
        for (int i = 0; i < NUM_KEY_SLOTS; i++) {
            int at = base + 208 + 48 * i;
            int state = b.getInt(at);
            long iterations = Integer.toUnsignedLong(b.getInt(at + 4));
            byte[] salt = new byte[SALT_LEN];
            b.get(at + 8, salt);
            long offset = Integer.toUnsignedLong(b.getInt(at + 40));
            long stripes = Integer.toUnsignedLong(b.getInt(at + 44));
            String field = "LUKS key slot " + i;
            if (stripes != STRIPES) {
                throw new FormatException(file, field + " stripes", stripes, "must be " + STRIPES,
                        "Keyslot " + i + " is corrupted (stripes " + (int) stripes + " != " + STRIPES + ")");
            }
            if (state != KEY_SLOT_ENABLED && state != KEY_SLOT_DISABLED) {
                throw new FormatException(file, field + " active", FormatException.hex(Integer.toUnsignedLong(state)),
                        "neither enabled (0x00ac71f3) nor disabled (0xdead)",
                        "Keyslot " + i + " state (active/disable) is corrupted");
            }
            boolean active = state == KEY_SLOT_ENABLED;
            if (active && iterations == 0) {
                throw new FormatException(file, field + " iterations", 0, "iteration count is zero",
                        "Keyslot " + i + " iteration count is zero");
            }
            if (offset < headerSectors) {
                throw new FormatException(file, field + " key_material_offset", offset, "key material overlaps the header",
                        "Keyslot " + i + " is overlapping with the LUKS header");
            }
            if (offset + splitKeySectors(keyBytes, stripes) > payload) {
                throw new FormatException(file, field + " key_material_offset", offset, "key material overlaps the payload"
                        + " (at sector " + payload + ")", "Keyslot " + i + " is overlapping with the encrypted payload");
            }
            slots.add(new KeySlot(active, iterations, salt, offset, (int) stripes));
        }
        for (int i = 0; i < NUM_KEY_SLOTS; i++) {
            for (int j = i + 1; j < NUM_KEY_SLOTS; j++) {
                long s1 = slots.get(i).keyOffsetSectors();
                long s2 = slots.get(j).keyOffsetSectors();
                long len = splitKeySectors(keyBytes, STRIPES);
                if (s1 + len > s2 && s2 + len > s1) {
                    throw new FormatException(file, "LUKS key slot " + j + " key_material_offset", s2, "overlaps key slot "
                            + i, "Keyslots " + i + " and " + j + " are overlapping in the header");
                }
            }
        }
        CipherSpec spec = parseSpec(file, cipherName, cipherMode, hashSpec, keyBytes);
        // Bounds beyond QEMU's: what a header may make us compute and read.
        if (mkIter > maxIterations) {
            throw new FormatException(file, "LUKS mk_digest_iter", mkIter, "more PBKDF2 iterations than qcow4j's limit of "
                    + maxIterations);
        }
        for (int i = 0; i < NUM_KEY_SLOTS; i++) {
            KeySlot s = slots.get(i);
            if (!s.active()) {
                continue;
            }
            if (s.iterations() > maxIterations) {
                throw new FormatException(file, "LUKS key slot " + i + " iterations", s.iterations(),
                        "more PBKDF2 iterations than qcow4j's limit of " + maxIterations);
            }
            long end = s.keyOffsetSectors() * SECTOR_SIZE + keyBytes * STRIPES;
            if (end > regionLength) {
                throw new FormatException(file, "LUKS key slot " + i + " key_material_offset", s.keyOffsetSectors(),
                        "key material ends at byte " + end + " of a LUKS header region of " + regionLength + " bytes",
                        "Request for data outside of extension header");
            }
        }
        return new LuksHeader(spec, cipherName, cipherMode, hashSpec, payload, (int) keyBytes, digest, mkSalt, mkIter, uuid,
                List.copyOf(slots));
    }

    /** QEMU's qcrypto_block_luks_parse_header: "xts-plain64", "cbc-essiv:sha256"; the names looked up in its words. */
    private static CipherSpec parseSpec(String file, String cipherName, String cipherMode, String hashSpec, long keyBytes)
            throws FormatException, UnsupportedFeatureException {
        int dash = cipherMode.indexOf('-');
        if (dash < 0) {
            throw new FormatException(file, "LUKS cipher_mode", "'" + cipherMode + "'", "not <mode>-<ivgen>[:<hash>]",
                    "Unexpected cipher mode string format '" + cipherMode + "'");
        }
        String modeName = cipherMode.substring(0, dash);
        String ivName = cipherMode.substring(dash + 1);
        Hash ivHash = null;
        int colon = ivName.indexOf(':');
        if (colon >= 0) {
            String ivHashName = ivName.substring(colon + 1);
            ivName = ivName.substring(0, colon);
            ivHash = hash(file, "LUKS cipher_mode", ivHashName);
        }
        CipherSpec.Mode mode = switch (modeName) {
            case "ecb" -> CipherSpec.Mode.ECB;
            case "cbc" -> CipherSpec.Mode.CBC;
            case "xts" -> CipherSpec.Mode.XTS;
            case "ctr" -> throw new UnsupportedFeatureException(file, "LUKS cipher mode 'ctr'");
            default -> throw new FormatException(file, "LUKS cipher_mode", "'" + cipherMode + "'", "unknown cipher mode",
                    "Cipher mode '" + modeName + "' not supported");
        };
        long aesBytes = mode == CipherSpec.Mode.XTS ? keyBytes / 2 : keyBytes;
        switch (cipherName) {
            case "aes" -> {
                if (aesBytes != 16 && aesBytes != 24 && aesBytes != 32 || mode == CipherSpec.Mode.XTS && keyBytes % 2 != 0) {
                    throw new FormatException(file, "LUKS key_bytes", keyBytes, "no AES key of that size",
                            "Algorithm 'aes' with key size " + (int) aesBytes + " bytes not supported");
                }
            }
            case "serpent", "twofish", "cast5", "sm4" ->
                    throw new UnsupportedFeatureException(file, "LUKS cipher '" + cipherName + "' (the JDK has only AES)");
            default -> throw new FormatException(file, "LUKS cipher_name", "'" + cipherName + "'", "unknown cipher",
                    "Algorithm '" + cipherName + "' not supported");
        }
        Hash hash = hash(file, "LUKS hash_spec", hashSpec);
        CipherSpec.IvAlg iv = switch (ivName) {
            case "plain" -> CipherSpec.IvAlg.PLAIN;
            case "plain64" -> CipherSpec.IvAlg.PLAIN64;
            case "essiv" -> CipherSpec.IvAlg.ESSIV;
            default -> throw new FormatException(file, "LUKS cipher_mode", "'" + cipherMode + "'", "unknown IV generator",
                    "IV generator '" + ivName + "' not supported");
        };
        if (iv == CipherSpec.IvAlg.ESSIV) {
            if (ivHash == null) {
                throw new FormatException(file, "LUKS cipher_mode", "'" + cipherMode + "'", "essiv without a hash",
                        "Missing IV generator hash specification");
            }
            if (CipherSpec.essivKeyBytes((int) aesBytes, ivHash) == null) {
                throw new FormatException(file, "LUKS cipher_mode", "'" + cipherMode + "'", "no AES key of the hash's size",
                        "No AES cipher with key size " + ivHash.length() + " available");
            }
        }
        return new CipherSpec((int) aesBytes, mode, iv, ivHash, hash);
    }

    private static Hash hash(String file, String field, String name) throws FormatException {
        Hash h = Hash.byName(name);
        if (h == null) {
            throw new FormatException(file, field, "'" + name + "'", "unknown hash algorithm",
                    "Hash algorithm '" + name + "' not supported");
        }
        return h;
    }

    private static String cString(ByteBuffer b, int at, int len, String file, String field, String qemuName)
            throws FormatException {
        byte[] raw = new byte[len];
        b.get(at, raw);
        int nul = 0;
        while (nul < len && raw[nul] != 0) {
            nul++;
        }
        if (nul == len && qemuName != null) {
            throw new FormatException(file, "LUKS " + field, "'" + new String(raw, StandardCharsets.ISO_8859_1) + "'",
                    "not NUL terminated", "LUKS header " + qemuName + " is not NUL terminated");
        }
        return new String(raw, 0, nul, StandardCharsets.ISO_8859_1);
    }

    private static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder("0x");
        for (byte x : bytes) {
            sb.append(String.format("%02x", x & 0xff));
        }
        return sb.toString();
    }

    /** The 592 bytes of this header, as QEMU's qcrypto_block_luks_store_header writes them. */
    public byte[] encode() {
        ByteBuffer b = ByteBuffer.allocate(SIZE).order(ByteOrder.BIG_ENDIAN);
        b.put(MAGIC).putShort((short) VERSION);
        putString(b, 8, cipherName, 32);
        putString(b, 40, cipherMode, 32);
        putString(b, 72, hashSpec, 32);
        b.putInt(104, (int) payloadOffsetSectors).putInt(108, keyBytes);
        b.put(112, mkDigest).put(132, mkDigestSalt).putInt(164, (int) mkDigestIterations);
        putString(b, 168, uuid, 40);
        for (int i = 0; i < NUM_KEY_SLOTS; i++) {
            KeySlot s = slots.get(i);
            int at = 208 + 48 * i;
            b.putInt(at, s.active() ? KEY_SLOT_ENABLED : KEY_SLOT_DISABLED).putInt(at + 4, (int) s.iterations())
                    .put(at + 8, s.salt()).putInt(at + 40, (int) s.keyOffsetSectors()).putInt(at + 44, s.stripes());
        }
        return b.array();
    }

    private static void putString(ByteBuffer b, int at, String s, int len) {
        byte[] bytes = s.getBytes(StandardCharsets.ISO_8859_1);
        b.put(at, bytes, 0, Math.min(bytes.length, len - 1));
    }

    @Override
    public String toString() {
        return "LuksHeader[" + cipherName + "-" + cipherMode + ", " + hashSpec + ", payload " + payloadOffsetSectors
                + " sectors, key " + keyBytes + " bytes, uuid " + uuid + "]"; // digests and salts left out
    }
}
