package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import org.qcow4j.FormatException;
import org.qcow4j.Passphrase;
import org.qcow4j.QcowException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.crypto.DiskCipher;
import org.qcow4j.crypto.LegacyAes;
import org.qcow4j.crypto.Luks;
import org.qcow4j.crypto.LuksHeader;
import org.qcow4j.format.CryptoExtension;
import org.qcow4j.format.Header;
import org.qcow4j.io.FileStorage;

/**
 * An encrypted image's payload cipher (QEMU's {@code s->crypto}) and how its sectors are numbered: by host offset for
 * LUKS, by guest offset for legacy AES ({@code s->crypt_physical_offset}), 512 bytes each, as
 * {@code qcow2_co_encdec} does. Opened without a passphrase ({@link #locked}) it holds the LUKS header for
 * {@code info} and refuses to decrypt.
 */
final class Encryption implements AutoCloseable {
    /** QEMU's words when a passphrase is needed and none was given. */
    static final String KEY_SECRET_REQUIRED = "Parameter 'encrypt.key-secret' is required for cipher";
    /** The unit of encryption, and so of every request to an encrypted image. */
    static final int SECTOR = DiskCipher.SECTOR_SIZE;

    private final String filename;
    private final int method;
    private final LuksHeader luks;
    private final DiskCipher cipher;

    private Encryption(String filename, int method, LuksHeader luks, DiskCipher cipher) {
        this.filename = filename;
        this.method = method;
        this.luks = luks;
        this.cipher = cipher;
    }

    /**
     * The encryption of the image whose header is {@code h} (null if it has none), unlocked with {@code passphrase};
     * without one, {@code metadataOnly} opens leave it locked and others are refused in QEMU's words.
     */
    static Encryption open(FileStorage storage, Header h, String filename, Passphrase passphrase, boolean metadataOnly)
            throws IOException {
        if (h.cryptMethod() == Header.CRYPT_NONE) {
            return null;
        }
        LuksHeader luks = null;
        CryptoExtension region = h.crypto();
        if (h.cryptMethod() == Header.CRYPT_LUKS) {
            if (region.length() < LuksHeader.SIZE) {
                throw new FormatException(filename, "encryption header length", region.length(), "too short for a LUKS"
                        + " header (" + LuksHeader.SIZE + " bytes)", "Request for data outside of extension header");
            }
            luks = LuksHeader.parse(storage.read(region.offset(), LuksHeader.SIZE), region.length(), filename);
        }
        if (passphrase == null) {
            if (metadataOnly) {
                return new Encryption(filename, h.cryptMethod(), luks, null);
            }
            throw new QcowException(filename, "encrypted image: a passphrase is needed (encrypt.key-secret)", null,
                    KEY_SECRET_REQUIRED);
        }
        byte[] pass = passphrase.bytes();
        try {
            DiskCipher cipher = luks == null ? LegacyAes.cipher(pass)
                    : Luks.unlock(luks, (off, len) -> storage.read(region.offset() + off, len), pass, filename);
            return new Encryption(filename, h.cryptMethod(), luks, cipher);
        } finally {
            Arrays.fill(pass, (byte) 0);
        }
    }

    /**
     * A new LUKS header (key slot 0 holding the passphrase) as QEMU's qcrypto_block_luks_create makes it, for the
     * options of a new image; the caller closes its cipher.
     */
    static Luks.Created create(org.qcow4j.EncryptionOptions o, String filename) throws QcowException {
        org.qcow4j.crypto.CipherSpec spec;
        try {
            spec = org.qcow4j.crypto.CipherSpec.of(o.cipherAlg(), o.cipherMode(), o.ivgenAlg(), o.ivgenHashAlg(),
                    o.hashAlg());
        } catch (IllegalArgumentException e) {
            throw new QcowException(filename, e.getMessage(), null, e.getMessage());
        } catch (UnsupportedOperationException e) {
            throw new UnsupportedFeatureException(filename, "LUKS " + e.getMessage());
        }
        byte[] pass = o.passphrase().bytes();
        try {
            return Luks.create(spec, pass, o.iterTimeMs(), 0, new java.security.SecureRandom());
        } finally {
            Arrays.fill(pass, (byte) 0);
        }
    }

    /**
     * The length of the LUKS header region a new image with options {@code o} gets, the cipher options checked as
     * {@link #create} checks them (IllegalArgumentException: QEMU's words; unsupported ciphers by name).
     */
    static long regionLength(org.qcow4j.EncryptionOptions o, String filename) throws UnsupportedFeatureException {
        try {
            return Luks.regionLength(org.qcow4j.crypto.CipherSpec.of(o.cipherAlg(), o.cipherMode(), o.ivgenAlg(),
                    o.ivgenHashAlg(), o.hashAlg()));
        } catch (UnsupportedOperationException e) {
            // the length needs only the key size: a 128-bit block cipher the JDK lacks measures as AES of its key size
            String alg = o.cipherAlg() == null ? "" : o.cipherAlg();
            String aes = switch (alg) {
                case "serpent-128", "twofish-128" -> "aes-128";
                case "serpent-192", "twofish-192" -> "aes-192";
                case "serpent-256", "twofish-256" -> "aes-256";
                default -> null;
            };
            if (aes != null) {
                return Luks.regionLength(org.qcow4j.crypto.CipherSpec.of(aes, o.cipherMode(), o.ivgenAlg(),
                        o.ivgenHashAlg(), o.hashAlg()));
            }
            throw new UnsupportedFeatureException(filename, "LUKS " + e.getMessage());
        }
    }

    /** What qemu-img info shows of it. */
    org.qcow4j.EncryptionInfo info() {
        if (luks == null) {
            return org.qcow4j.EncryptionInfo.aes();
        }
        java.util.List<org.qcow4j.EncryptionInfo.KeySlot> slots = new java.util.ArrayList<>();
        for (LuksHeader.KeySlot s : luks.slots()) {
            slots.add(new org.qcow4j.EncryptionInfo.KeySlot(s.active(), s.iterations(),
                    s.keyOffsetSectors() * LuksHeader.SECTOR_SIZE, s.stripes()));
        }
        var spec = luks.spec();
        return new org.qcow4j.EncryptionInfo("luks", spec.cipherAlgName(), spec.mode().qemuName(), spec.ivAlg().qemuName(),
                spec.ivHash() == null ? null : spec.ivHash().qemuName(), spec.hash().qemuName(), luks.uuid(),
                luks.payloadOffset(), luks.mkDigestIterations(), java.util.List.copyOf(slots));
    }

    /** The LUKS header, or null for legacy AES. */
    LuksHeader luks() {
        return luks;
    }

    int method() {
        return method;
    }

    /** Whether the sectors are numbered by host offset (LUKS) rather than guest offset (legacy AES). */
    private boolean physical() {
        return method == Header.CRYPT_LUKS;
    }

    private DiskCipher cipher() throws QcowException {
        if (cipher == null) {
            throw new QcowException(filename, "encrypted image opened without a passphrase (encrypt.key-secret)", null,
                    KEY_SECRET_REQUIRED);
        }
        return cipher;
    }

    /**
     * Reads {@code dst.remaining()} guest bytes at guest offset {@code guest} from host offset {@code host} of
     * {@code data}, decrypted: the whole sectors around them are read and decrypted, a MiB at a time.
     */
    void read(FileStorage data, ByteBuffer dst, long host, long guest) throws IOException {
        DiskCipher c = cipher();
        int lead = (int) (host & 511);
        if ((guest & 511) != lead) {
            throw new IllegalStateException("host and guest offsets differ within a sector");
        }
        byte[] buf = null;
        while (dst.hasRemaining()) {
            int n = Math.min(dst.remaining(), (1 << 20) - lead);
            int total = (lead + n + 511) & ~511;
            if (buf == null || buf.length < total) {
                buf = new byte[total];
            }
            data.readFully(ByteBuffer.wrap(buf, 0, total), host - lead);
            c.decrypt(physical() ? host - lead : guest - lead, buf, 0, total);
            dst.put(buf, lead, n);
            host += n;
            guest += n;
            lead = 0;
        }
        if (buf != null) {
            Arrays.fill(buf, (byte) 0);
        }
    }

    /** The guest data {@code data} (whole sectors) encrypted to be written at host offset {@code host} (LUKS only). */
    ByteBuffer encrypted(ByteBuffer data, long host) throws QcowException {
        if (method != Header.CRYPT_LUKS) {
            throw refuseLegacyWrite(filename);
        }
        byte[] buf = new byte[data.remaining()];
        data.get(data.position(), buf);
        cipher().encrypt(host, buf, 0, buf.length);
        return ByteBuffer.wrap(buf);
    }

    /** Legacy AES images are read only, so that they get converted; QEMU's system emulators refuse them entirely. */
    static UnsupportedFeatureException refuseLegacyWrite(String filename) {
        return new UnsupportedFeatureException(filename, "writing to an image with legacy AES encryption (crypt_method 1;"
                + " convert it to LUKS or plain)",
                "Use of AES-CBC encrypted qcow2 images is no longer supported in system emulators");
    }

    @Override
    public void close() {
        if (cipher != null) {
            cipher.close();
        }
    }
}
