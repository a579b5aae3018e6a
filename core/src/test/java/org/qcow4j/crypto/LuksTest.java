package org.qcow4j.crypto;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.Random;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import org.junit.jupiter.api.Test;
import org.qcow4j.FormatException;
import org.qcow4j.QcowException;

/** PBKDF2, the AF splitter, LUKS1 headers made, parsed and unlocked, and the bounds on hostile headers. */
class LuksTest {
    private static final HexFormat HEX = HexFormat.of();
    private static final byte[] PASS = "123456".getBytes(StandardCharsets.UTF_8);

    @Test
    void pbkdf2MatchesRfc6070() {
        byte[] p = "password".getBytes(StandardCharsets.US_ASCII);
        byte[] s = "salt".getBytes(StandardCharsets.US_ASCII);
        assertEquals("0c60c80f961f0e71f3a9b524af6012062fe037a6", HEX.formatHex(Pbkdf2.derive(Hash.SHA1, p, s, 1, 20)));
        assertEquals("ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957", HEX.formatHex(Pbkdf2.derive(Hash.SHA1, p, s, 2, 20)));
        assertEquals("4b007901b765489abead49d926f721d065a429c1", HEX.formatHex(Pbkdf2.derive(Hash.SHA1, p, s, 4096, 20)));
    }

    @Test
    void pbkdf2MatchesTheJdksForEveryHashAndLength() throws Exception {
        byte[] salt = new byte[32];
        new Random(1).nextBytes(salt);
        for (Hash h : new Hash[] {Hash.SHA1, Hash.SHA256, Hash.SHA512}) {
            for (int len : new int[] {16, 20, 32, 64, 100}) {
                SecretKeyFactory f = SecretKeyFactory.getInstance("PBKDF2With" + h.hmacAlgorithm());
                byte[] jdk = f.generateSecret(new PBEKeySpec("pass word".toCharArray(), salt, 1000, len * 8)).getEncoded();
                assertArrayEquals(jdk, Pbkdf2.derive(h, "pass word".getBytes(StandardCharsets.UTF_8), salt, 1000, len),
                        h + " " + len);
            }
        }
    }

    @Test
    void afSplitMergesBack() {
        SecureRandom r = new SecureRandom();
        for (Hash h : new Hash[] {Hash.SHA1, Hash.SHA256, Hash.SHA512}) {
            for (int n : new int[] {16, 24, 32, 48, 64}) {
                byte[] key = new byte[n];
                r.nextBytes(key);
                byte[] split = AfSplit.split(h, key, 4000, r);
                assertEquals(n * 4000, split.length);
                assertArrayEquals(key, AfSplit.merge(h, split, n, 4000));
                split[5] ^= 1;
                assertTrue(!java.util.Arrays.equals(key, AfSplit.merge(h, split, n, 4000)));
            }
        }
    }

    private static Luks.Created create(CipherSpec spec) {
        return Luks.create(spec, PASS, 0, 1000, new SecureRandom());
    }

    private static DiskCipher unlock(byte[] region, byte[] pass) throws Exception {
        return unlock(region, pass, LuksHeader.MAX_ITERATIONS);
    }

    private static DiskCipher unlock(byte[] region, byte[] pass, long maxIterations) throws Exception {
        LuksHeader h = LuksHeader.parse(ByteBuffer.wrap(region), region.length, "x.qcow2", maxIterations);
        return Luks.unlock(h, (off, len) -> ByteBuffer.wrap(region, (int) off, len), pass, "x.qcow2");
    }

    @Test
    void createdHeadersUnlockWithTheirPassphraseOnly() throws Exception {
        CipherSpec[] specs = {CipherSpec.DEFAULT,
                new CipherSpec(16, CipherSpec.Mode.XTS, CipherSpec.IvAlg.PLAIN64, null, Hash.SHA1),
                new CipherSpec(32, CipherSpec.Mode.CBC, CipherSpec.IvAlg.ESSIV, Hash.SHA256, Hash.SHA512),
                new CipherSpec(16, CipherSpec.Mode.CBC, CipherSpec.IvAlg.PLAIN, null, Hash.SHA256)};
        for (CipherSpec spec : specs) {
            Luks.Created c = create(spec);
            LuksHeader h = LuksHeader.parse(ByteBuffer.wrap(c.region()), c.region().length, "x");
            assertEquals(spec, h.spec());
            assertEquals(c.region().length, h.payloadOffset());
            byte[] data = new byte[4096];
            new Random(2).nextBytes(data);
            byte[] enc = data.clone();
            c.cipher().encrypt(1 << 20, enc, 0, enc.length);
            try (DiskCipher d = unlock(c.region(), PASS)) {
                d.decrypt(1 << 20, enc, 0, enc.length);
            }
            assertArrayEquals(data, enc, spec.toString());
            QcowException e = assertThrows(QcowException.class, () -> unlock(c.region(), "1234567".getBytes()));
            assertEquals("x.qcow2: Invalid password, cannot unlock any keyslot", e.getMessage());
            c.cipher().close();
        }
    }

    @Test
    void defaultsAreQemus() {
        Luks.Created c = create(CipherSpec.DEFAULT);
        LuksHeader h = c.header();
        assertEquals("aes", h.cipherName());
        assertEquals("xts-plain64", h.cipherMode());
        assertEquals("sha256", h.hashSpec());
        assertEquals(64, h.keyBytes());
        assertEquals(2068480, h.payloadOffset()); // as qemu-img create lays it out
        assertEquals(4096 / 512, h.slots().get(0).keyOffsetSectors());
        assertEquals(262144 / 512, h.slots().get(1).keyOffsetSectors());
        assertTrue(h.slots().get(0).active());
        assertTrue(!h.toString().contains(HEX.formatHex(h.mkDigest())));
    }

    private static FormatException damaged(int at, int value) {
        byte[] region = create(CipherSpec.DEFAULT).region();
        ByteBuffer.wrap(region).order(ByteOrder.BIG_ENDIAN).putInt(at, value);
        return assertThrows(FormatException.class, () -> unlock(region, PASS));
    }

    @Test
    void absurdIterationsAndStripesAreRefusedAtOnce() {
        long t0 = System.nanoTime();
        FormatException e = damaged(208 + 4, -1);
        assertEquals("x.qcow2: LUKS key slot 0 iterations = 4294967295: more PBKDF2 iterations than qcow4j's limit of "
                + LuksHeader.MAX_ITERATIONS, e.getMessage());
        e = damaged(164, 0x7fffffff);
        assertTrue(e.getMessage().contains("LUKS mk_digest_iter = 2147483647"), e.getMessage());
        e = damaged(208 + 44, 400000000);
        assertEquals("Keyslot 0 is corrupted (stripes 400000000 != 4000)", e.qemuWords());
        e = damaged(108, 1 << 30);
        assertTrue(e.getMessage().startsWith("x.qcow2: LUKS key"), e.getMessage());
        e = damaged(208 + 40, 100000);
        assertEquals("Keyslot 0 is overlapping with the encrypted payload", e.qemuWords());
        e = damaged(208, 0x12345);
        assertEquals("Keyslot 0 state (active/disable) is corrupted", e.qemuWords());
        assertTrue(System.nanoTime() - t0 < 10_000_000_000L);
    }

    @Test
    void keyMaterialOutsideTheRegionIsRefused() {
        byte[] region = create(CipherSpec.DEFAULT).region();
        FormatException e = assertThrows(FormatException.class,
                () -> LuksHeader.parse(ByteBuffer.wrap(region), 100000, "x.qcow2"));
        assertEquals("Request for data outside of extension header", e.qemuWords());
    }

    @Test
    void damagedKeyMaterialDoesNotUnlock() {
        byte[] region = create(CipherSpec.DEFAULT).region();
        region[4096 + 1000] ^= 1;
        assertThrows(QcowException.class, () -> unlock(region, PASS));
    }

    @Test
    void foreignCiphersAreRefusedByName() {
        byte[] region = create(CipherSpec.DEFAULT).region();
        byte[] serpent = "serpent\0".getBytes(StandardCharsets.US_ASCII);
        System.arraycopy(serpent, 0, region, 8, serpent.length);
        QcowException e = assertThrows(QcowException.class, () -> unlock(region, PASS));
        assertTrue(e.getMessage().contains("serpent"), e.getMessage());
    }

    /**
     * 150 headers with 1 to 4 random bytes damaged. The iteration limit is 2^20 here, not 2^26: three of these damages
     * raise an iteration count to 2^24 or 2^25 (legal, and half a minute of PBKDF2 between them); the limit itself is
     * {@link #absurdIterationsAndStripesAreRefusedAtOnce}'s.
     */
    @Test
    void randomlyDamagedHeadersUnlockOrAreRefusedQuickly() {
        Luks.Created c = Luks.create(CipherSpec.DEFAULT, PASS, 0, 1000, new SecureRandom());
        Random r = new Random(42);
        int refused = 0;
        long t0 = System.nanoTime();
        for (int i = 0; i < 150; i++) {
            byte[] region = c.region().clone();
            for (int flips = 1 + r.nextInt(4); flips > 0; flips--) {
                int at = r.nextInt(LuksHeader.SIZE);
                region[at] = r.nextInt(4) == 0 ? (byte) 0xff : (byte) (region[at] ^ (1 << r.nextInt(8)));
            }
            try (DiskCipher d = unlock(region, PASS, 1 << 20)) {
                assertTrue(d != null);
            } catch (QcowException e) {
                assertTrue(e.getMessage().startsWith("x.qcow2: "), e.getMessage());
                refused++;
            } catch (Exception e) {
                throw new AssertionError("not a QcowException for damage #" + i, e);
            }
        }
        assertTrue(refused > 50, "refused " + refused);
        assertTrue(System.nanoTime() - t0 < 120_000_000_000L, "too slow");
    }

    @Test
    void legacyAesIsCbcWithThePassphraseAsKey() throws Exception {
        // AES-128-CBC, key "123456" zero-padded, IV = sector number little-endian
        byte[] data = new byte[512];
        try (DiskCipher c = LegacyAes.cipher(PASS)) {
            c.encrypt(512 * 3, data, 0, 512);
        }
        javax.crypto.Cipher jdk = javax.crypto.Cipher.getInstance("AES/CBC/NoPadding");
        byte[] key = java.util.Arrays.copyOf(PASS, 16);
        byte[] iv = new byte[16];
        iv[0] = 3;
        jdk.init(javax.crypto.Cipher.ENCRYPT_MODE, new javax.crypto.spec.SecretKeySpec(key, "AES"),
                new javax.crypto.spec.IvParameterSpec(iv));
        assertArrayEquals(jdk.doFinal(new byte[512]), data);
    }
}
