package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * LUKS-encrypted qcow2 images made by qemu-img and written by qemu-io, in each cipher set of {@link Encrypted}: our
 * {@code convert -O raw} equals qemu-img's; without a secret or with a wrong one both refuse in the same words.
 */
class EncryptedReadTest {
    @TempDir
    Path dir;

    @Test
    void convertToRawEqualsQemuImgsForEveryCipher() throws IOException {
        int i = 0;
        for (String cipher : Encrypted.CIPHERS) {
            Path img = dir.resolve("enc" + i + ".qcow2");
            Encrypted.create(dir, img, cipher, "4M");
            Encrypted.fill(dir, img);
            Path theirs = dir.resolve("theirs" + i + ".raw");
            Path ours = dir.resolve("ours" + i + ".raw");
            Qemu.img(dir, "convert", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img), "-O", "raw",
                    theirs.toString());
            Qemu.qcow4j("convert", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img), "-O", "raw",
                    ours.toString()).ok();
            assertArrayEquals(Files.readAllBytes(theirs), Files.readAllBytes(ours), cipher);
            i++;
        }
    }

    @Test
    void legacyAesImagesConvertAsQemuImgConvertsThem() throws IOException {
        Path img = dir.resolve("aes.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "--object", Encrypted.OBJECT, "-o",
                "encrypt.format=aes,encrypt.key-secret=sec0", img.toString(), "4M");
        Encrypted.fill(dir, img);
        Path theirs = dir.resolve("theirs.raw");
        Path ours = dir.resolve("ours.raw");
        Qemu.img(dir, "convert", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img), "-O", "raw",
                theirs.toString());
        Qemu.qcow4j("convert", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img), "-O", "raw",
                ours.toString()).ok();
        assertArrayEquals(Files.readAllBytes(theirs), Files.readAllBytes(ours));
        // to LUKS, as the issue asks of old images
        Path luks = dir.resolve("luks.qcow2");
        Qemu.qcow4j("convert", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img), "-O", "qcow2", "-o",
                "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", luks.toString()).ok();
        assertEquals(0, Qemu.run(dir, "qemu-img", "compare", "--object", Encrypted.OBJECT, "--image-opts",
                "driver=raw,file.filename=" + theirs, Encrypted.opts(luks)).exit());
    }

    @Test
    void jsonAndSecretFromAFileOrBase64() throws IOException {
        Path img = dir.resolve("enc.qcow2");
        Encrypted.create(dir, img, "", "1M");
        Encrypted.io(dir, img, "write -P 0x42 4k 8k");
        Path theirs = dir.resolve("theirs.raw");
        Qemu.img(dir, "convert", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img), "-O", "raw",
                theirs.toString());
        Files.writeString(dir.resolve("pass"), Encrypted.PASS);
        String json = "json:{\"driver\":\"qcow2\",\"file\":{\"filename\":\"" + img + "\"},\"encrypt.key-secret\":\"sec0\"}";
        String[][] ways = {
                {"--object", "secret,id=sec0,file=" + dir.resolve("pass"), "--image-opts", Encrypted.opts(img)},
                {"--object", "secret,id=sec0,format=base64,data=MTIzNDU2", "--image-opts", Encrypted.opts(img)},
                {"--object", Encrypted.OBJECT, json}};
        for (String[] way : ways) {
            Path ours = dir.resolve("ours.raw");
            Qemu.qcow4j(withOutput(way, ours)).ok();
            assertArrayEquals(Files.readAllBytes(theirs), Files.readAllBytes(ours), String.join(" ", way));
        }
    }

    private static String[] withOutput(String[] way, Path out) {
        String[] a = new String[way.length + 4];
        a[0] = "convert";
        a[1] = "-O";
        a[2] = "raw";
        System.arraycopy(way, 0, a, 3, way.length);
        a[a.length - 1] = out.toString();
        return a;
    }

    @Test
    void withoutTheSecretOrWithAWrongOneBothToolsRefuseInTheSameWords() throws IOException {
        Path img = dir.resolve("enc.qcow2");
        Encrypted.create(dir, img, "", "1M");
        Path out = dir.resolve("out.raw");
        String[][] cases = {
                {"convert", "-O", "raw", img.toString(), out.toString()},
                {"convert", "--object", "secret,id=sec0,data=wrong", "--image-opts", Encrypted.opts(img), "-O", "raw",
                        out.toString()},
                {"convert", "--image-opts", Encrypted.opts(img), "-O", "raw", out.toString()},
                {"map", img.toString()}};
        for (String[] c : cases) {
            Qemu.Result theirs = Qemu.run(dir, Qemu.concat("qemu-img", c));
            Qemu.Result ours = Qemu.asQemuImg(c);
            assertEquals(theirs.err(), ours.err(), String.join(" ", c));
            assertEquals(theirs.exit(), ours.exit(), String.join(" ", c));
            assertFalse(Files.exists(out));
        }
        Qemu.Result r = Qemu.qcow4j("convert", "--object", "secret,id=sec0,data=wrong", "--image-opts",
                Encrypted.opts(img), "-O", "raw", out.toString());
        assertEquals("qcow4j: " + img + ": Invalid password, cannot unlock any keyslot\n", r.err());
        assertTrue(Qemu.qcow4j("info", img.toString()).exit() == 0, "info reads no data: it needs no secret");
    }
}
