package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Writes to LUKS images: the same qemu-io script run by qemu-io and by our qemu-io on twin copies of a
 * qemu-img-made encrypted image (data written by qemu-io, a compressed cluster among it) leaves byte-identical files:
 * copy-on-write in partial clusters and sectors, zero writes with and without unmap at unaligned ends, discards and
 * the rewrite of a compressed cluster, encrypted as QEMU encrypts them; {@code qemu-img check} finds them clean.
 */
class EncryptedWriteTest {
    @TempDir
    Path dir;

    private static final String[] SCRIPT = {"write -P 0x66 3000 5000", "write -P 0x67 2M 100", "write -z 4M 1000",
            "write -P 0x68 6M 1M", "write -P 0x69 7340031 1", "write -z 128k 64k", "discard 64k 64k",
            "write -z 5M 70000", "write -z -u 5500k 3333", "write -P 0x6a 1536 512", "flush"};

    @Test
    void ourWritesAreQemusByteForByte() throws IOException {
        String[] ciphers = {"", "encrypt.cipher-alg=aes-256,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv"};
        String[][] layouts = {{}, {"-o", "cluster_size=4096"}, {"-o", "extended_l2=on,cluster_size=128k"}};
        for (String cipher : ciphers) {
            for (String[] layout : layouts) {
                Path theirs = dir.resolve("theirs.qcow2");
                Path ours = dir.resolve("ours.qcow2");
                Files.deleteIfExists(theirs);
                Encrypted.create(dir, theirs, cipher, "8M", layout);
                Encrypted.io(dir, theirs, "write -P 0x5a 1000 70000", "write -c -P 0x11 2M 128k");
                Files.copy(theirs, ours, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                Encrypted.io(dir, theirs, SCRIPT);
                List<String> args = new ArrayList<>(List.of("--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(ours)));
                for (String c : SCRIPT) {
                    args.add("-c");
                    args.add(c);
                }
                Qemu.Result r = Qemu.asQemuIo(args.toArray(String[]::new)).ok();
                assertTrue(!r.err().contains("error") && !r.out().contains("error"), r.err() + r.out());
                String what = cipher + " " + String.join(" ", layout);
                assertArrayEquals(Files.readAllBytes(theirs), Files.readAllBytes(ours), what);
                Qemu.Result check = Qemu.run(dir, "qemu-img", "check", "--object", Encrypted.OBJECT, "--image-opts",
                        Encrypted.opts(ours));
                assertEquals(0, check.exit(), what + ": " + check.out() + check.err());
            }
        }
    }

    @Test
    void checkAndRepairCountTheLuksHeaderAsQemuDoes() throws IOException {
        Path img = dir.resolve("enc.qcow2");
        Encrypted.create(dir, img, "", "4M");
        Encrypted.fill(dir, img);
        String[][] checks = {{"check", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img)},
                {"check", "--output=json", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img)},
                {"check", img.toString()},
                {"check", "--object", "secret,id=sec0,data=x", "--image-opts", Encrypted.opts(img)},
                {"map", "--output=json", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img)}};
        for (String[] c : checks) {
            assertEquals(Qemu.run(dir, Qemu.concat("qemu-img", c)), Qemu.asQemuImg(c), String.join(" ", c));
        }
        byte[] before = Files.readAllBytes(img);
        Qemu.asQemuImg("check", "-r", "all", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img)).ok();
        assertArrayEquals(before, Files.readAllBytes(img), "a clean image's repair changes nothing");
        Encrypted.io(dir, img, "read -P 0x5a 1000 70000");
    }

    @Test
    void legacyAesImagesAreNotWritten() throws IOException {
        Path img = dir.resolve("aes.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "--object", Encrypted.OBJECT, "-o",
                "encrypt.format=aes,encrypt.key-secret=sec0", img.toString(), "1M");
        byte[] before = Files.readAllBytes(img);
        Qemu.Result r = Qemu.qcow4j("io", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img), "-c",
                "write 0 512");
        assertEquals(1, r.exit(), r.err());
        assertTrue(r.err().contains("AES-CBC encrypted qcow2 images is no longer supported"), r.err());
        assertArrayEquals(before, Files.readAllBytes(img));
    }
}
