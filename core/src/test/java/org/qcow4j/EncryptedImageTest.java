package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.testing.Processes;

/**
 * The library's encrypted images: created with {@link EncryptionOptions}, opened with a {@link Passphrase}, written
 * and read back through the API; qemu-io reads what we wrote with the same secret; without the passphrase only a
 * metadata open succeeds.
 */
class EncryptedImageTest {
    @TempDir
    Path dir;

    @Test
    void createWriteReadAndQemuAgrees() throws Exception {
        Path img = dir.resolve("lib.qcow2");
        Passphrase pass = Passphrase.of("s3cret \u00e9".toCharArray());
        Images.create(img, CreateOptions.defaults(8 << 20).withEncryption(new EncryptionOptions(pass, "aes-256", "cbc",
                "essiv", null, "sha256", 10)));
        byte[] data = new byte[200_000];
        new Random(3).nextBytes(data);
        try (WritableImage w = Images.openWritable(img, OpenOptions.defaults().withPassphrase(pass))) {
            w.write(ByteBuffer.wrap(data), 12345);
            w.writeZeroes(1 << 20, 70_000, true);
            w.write(ByteBuffer.wrap(data, 0, 3), (6 << 20) + 7);
        }
        try (DiskImage r = Images.open(img, OpenOptions.defaults().withPassphrase(pass))) {
            ByteBuffer b = ByteBuffer.allocate(data.length);
            r.read(b, 12345);
            assertArrayEquals(data, b.array());
            assertEquals("luks", r.qcow2().orElseThrow().encryption().orElseThrow().format());
        }
        String secret = "secret,id=s,data=s3cret \u00e9";
        Processes.Result io = Processes.run(dir, "qemu-io", "--object", secret, "--image-opts",
                "driver=qcow2,file.filename=" + img + ",encrypt.key-secret=s", "-c", "read -P 0 0 12345",
                "-c", "read -P 0 " + (1 << 20) + " 70000", "-c", "read -P 0 " + (6 << 20) + " 7");
        assertEquals(0, io.exit(), io.err());
        assertFalse(io.out().contains("Pattern verification failed"), io.out());
        Processes.Result check = Processes.run(dir, "qemu-img", "check", "--object", secret, "--image-opts",
                "driver=qcow2,file.filename=" + img + ",encrypt.key-secret=s");
        assertEquals(0, check.exit(), check.out() + check.err());
        assertTrue(pass.toString().equals("Passphrase[hidden]"));
    }

    @Test
    void withoutThePassphraseOnlyMetadataOpens() throws Exception {
        Path img = dir.resolve("lib.qcow2");
        Passphrase pass = Passphrase.of(new byte[] {'a', 'b'});
        Images.create(img, CreateOptions.defaults(1 << 20).withEncryption(new EncryptionOptions(pass, "aes-128", "xts",
                "plain64", null, "sha1", 10)));
        try (WritableImage w = Images.openWritable(img, OpenOptions.defaults().withPassphrase(pass))) {
            w.write(ByteBuffer.wrap(new byte[4096]), 0);
        }
        QcowException e = assertThrows(QcowException.class, () -> Images.open(img));
        assertEquals("Parameter 'encrypt.key-secret' is required for cipher", e.qemuWords());
        assertThrows(QcowException.class, () -> Images.openWritable(img));
        QcowException wrong = assertThrows(QcowException.class,
                () -> Images.open(img, OpenOptions.defaults().withPassphrase(Passphrase.of(new byte[] {'a'}))));
        assertTrue(wrong.getMessage().endsWith("Invalid password, cannot unlock any keyslot"), wrong.getMessage());
        try (DiskImage meta = Images.open(img, OpenOptions.defaults().withoutBacking())) {
            EncryptionInfo info = meta.qcow2().orElseThrow().encryption().orElseThrow();
            assertEquals("aes-128", info.cipherAlg());
            assertEquals("sha1", info.hashAlg());
            assertThrows(QcowException.class, () -> meta.read(ByteBuffer.allocate(512), 0)); // encrypted data
            meta.read(ByteBuffer.allocate(512), 1 << 19); // unallocated: zeros, no key needed
        }
        assertTrue(Files.size(img) > 0);
    }
}
