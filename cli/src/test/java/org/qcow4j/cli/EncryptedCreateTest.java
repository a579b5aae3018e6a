package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * LUKS images made by us ({@code create} and {@code convert -O qcow2 -o encrypt.format=luks,...}) open in QEMU with
 * the same secret: {@code qemu-img compare} finds them equal to their source, {@code qemu-img check} clean, and
 * {@code qemu-img info} shows the cipher asked for; {@code info} of encrypted images is qemu-img's; refusals of
 * create are qemu-img's words.
 */
class EncryptedCreateTest {
    @TempDir
    Path dir;

    private static final String[] SETS = {"", "encrypt.cipher-alg=aes-128,encrypt.cipher-mode=xts,encrypt.hash-alg=sha1",
            "encrypt.cipher-alg=aes-256,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.hash-alg=sha512",
            "encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain64"};

    private static String o(String set) {
        return "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10" + (set.isEmpty() ? "" : "," + set);
    }

    @Test
    void createdImagesOpenInQemuAndTakeOurWrites() throws IOException {
        for (String set : SETS) {
            Path img = dir.resolve("new.qcow2");
            Files.deleteIfExists(img);
            Qemu.qcow4j("create", "-q", "-f", "qcow2", "--object", Encrypted.OBJECT, "-o", o(set), img.toString(), "4M").ok();
            Qemu.Result info = Qemu.img(dir, "info", "--output=json", img.toString());
            assertTrue(info.out().contains("\"encrypted\": true"), info.out());
            for (String part : set.split(",")) {
                if (part.startsWith("encrypt.cipher-alg=")) {
                    assertTrue(info.out().contains("\"cipher-alg\": \"" + part.substring(19) + "\""), info.out());
                }
            }
            Qemu.Result r = Qemu.run(dir, "qemu-io", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img),
                    "-c", "read -P 0 0 4M");
            assertTrue(r.out().contains("read 4194304/4194304"), set + ": " + r.out() + r.err());
            Qemu.asQemuIo("--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img), "-c", "write -P 0x41 1000 100k",
                    "-c", "write -z 2M 64k").ok();
            Encrypted.io(dir, img, "read -P 0x41 1000 100k", "read -P 0 0 1000", "read -P 0 2M 2M");
            assertEquals(0, Qemu.run(dir, "qemu-img", "check", "--object", Encrypted.OBJECT, "--image-opts",
                    Encrypted.opts(img)).exit(), set);
        }
    }

    @Test
    void convertToAndFromLuks() throws IOException {
        Path src = dir.resolve("src.raw");
        byte[] data = new byte[3 << 20];
        new Random(7).nextBytes(data);
        java.util.Arrays.fill(data, 1 << 20, 2 << 20, (byte) 0);
        Files.write(src, data);
        for (String set : SETS) {
            {
                boolean compressed = false;
                Path out = dir.resolve("out.qcow2");
                Files.deleteIfExists(out);
                Qemu.qcow4j("convert", "--object", Encrypted.OBJECT, "-O", "qcow2", "-o", o(set), src.toString(),
                        out.toString()).ok();
                Qemu.Result cmp = Qemu.run(dir, "qemu-img", "compare", "--object", Encrypted.OBJECT, "--image-opts",
                        "driver=raw,file.filename=" + src, Encrypted.opts(out));
                assertEquals(0, cmp.exit(), set + " " + compressed + ": " + cmp.out() + cmp.err());
                assertEquals(0, Qemu.run(dir, "qemu-img", "check", "--object", Encrypted.OBJECT, "--image-opts",
                        Encrypted.opts(out)).exit());
                // and back: to a plain qcow2
                Path plain = dir.resolve("plain.qcow2");
                Files.deleteIfExists(plain);
                Qemu.qcow4j("convert", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(out), "-O", "qcow2",
                        plain.toString()).ok();
                assertEquals(0, Qemu.run(dir, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", src.toString(),
                        plain.toString()).exit());
            }
        }
    }

    @Test
    void compressedConvertToLuksIsRefusedAsQemuRefusesIt() throws IOException {
        Path src = dir.resolve("src.raw");
        Files.write(src, new byte[1 << 20]);
        String[] args = {"convert", "-c", "--object", Encrypted.OBJECT, "-O", "qcow2", "-o", o(""), src.toString(),
                dir.resolve("c.qcow2").toString()};
        assertEquals(Qemu.run(dir, Qemu.concat("qemu-img", args)), Qemu.asQemuImg(args));
        assertFalse(Files.exists(dir.resolve("c.qcow2")));
    }

    @Test
    void infoIsQemuImgs() throws Exception {
        // qemu-img's creates in parallel: each spends a second or more in QEMU's PBKDF calibration
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(
                Math.max(1, Runtime.getRuntime().availableProcessors()));
        java.util.List<java.util.concurrent.Future<?>> made = new java.util.ArrayList<>();
        try {
            for (int i = 0; i < Encrypted.CIPHERS.size(); i++) {
                Path img = dir.resolve("i" + i + ".qcow2");
                String set = Encrypted.CIPHERS.get(i);
                made.add(pool.submit(() -> {
                    Encrypted.create(dir, img, set, "1M");
                    return null;
                }));
            }
            for (java.util.concurrent.Future<?> f : made) {
                f.get();
            }
        } finally {
            pool.shutdown();
        }
        int i = 0;
        for (String set : Encrypted.CIPHERS) {
            Path img = dir.resolve("i" + i++ + ".qcow2");
            for (String output : new String[] {"human", "json"}) {
                Qemu.Result theirs = Qemu.img(dir, "info", "--output=" + output, img.toString());
                Qemu.Result ours = Qemu.asQemuImg("info", "--output=" + output, img.toString());
                assertEquals(theirs, ours, set + " " + output);
            }
        }
        Path aes = dir.resolve("aes.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "--object", Encrypted.OBJECT, "-o",
                "encrypt.format=aes,encrypt.key-secret=sec0", aes.toString(), "1M");
        assertEquals(Qemu.img(dir, "info", "--output=json", aes.toString()), Qemu.asQemuImg("info", "--output=json",
                aes.toString()));
    }

    @Test
    void refusalsAreQemuImgs() {
        Path img = dir.resolve("z.qcow2");
        String[][] cases = {{"-o", "encrypt.format=luks"}, {"-o", "encrypt.format=luks,encrypt.key-secret=nope"},
                {"--object", Encrypted.OBJECT, "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-alg=foo"},
                {"--object", Encrypted.OBJECT, "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.hash-alg=md4"}};
        for (String[] c : cases) {
            String[] args = Qemu.concat("create", Qemu.concat("-q", Qemu.concat("-f", Qemu.concat("qcow2", c))));
            String[] full = java.util.Arrays.copyOf(args, args.length + 2);
            full[args.length] = img.toString();
            full[args.length + 1] = "1M";
            Qemu.Result theirs = Qemu.run(dir, Qemu.concat("qemu-img", full));
            Qemu.Result ours = Qemu.asQemuImg(full);
            assertEquals(theirs, ours, String.join(" ", c));
            assertFalse(Files.exists(img));
        }
    }
}
