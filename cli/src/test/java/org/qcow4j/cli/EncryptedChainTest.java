package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What qemu-iotests 188, 189 and 198 ask of encrypted images, against QEMU's tools: an encrypted overlay over an
 * encrypted base, each with its own secret ({@code backing.encrypt.key-secret}), created over the base without its
 * secret, written, read and committed; {@code info --image-opts} naming a secret no {@code --object} defines, with
 * qemu-img's {@code json:} name; a LUKS convert with {@code preallocation=metadata}; {@code create -f luks}.
 */
class EncryptedChainTest {
    @TempDir
    Path dir;

    private static final String SEC1 = "secret,id=sec1,data=furby";

    @Test
    void overlayOverEncryptedBaseWrittenAndCommitted() throws IOException {
        Path base = dir.resolve("base.qcow2");
        Path top = dir.resolve("top.qcow2");
        Encrypted.create(dir, base, "", "4M");
        Encrypted.io(dir, base, "write -P 0xa 0 4M");
        Qemu.asQemuImg("create", "-q", "-f", "qcow2", "--object", SEC1, "-o",
                "encrypt.format=luks,encrypt.key-secret=sec1,encrypt.iter-time=10", "-b", base.toString(), "-F", "qcow2",
                top.toString()).ok();
        String spec = "driver=qcow2,file.filename=" + top + ",encrypt.key-secret=sec1,backing.driver=qcow2,"
                + "backing.file.filename=" + base + ",backing.encrypt.key-secret=sec0";
        Qemu.asQemuIo("--object", Encrypted.OBJECT, "--object", SEC1, "-c", "write -P 0xe 0 1024", "--image-opts", spec).ok();
        Qemu.Result r = Qemu.run(dir, "qemu-io", "--object", Encrypted.OBJECT, "--object", SEC1, "-c",
                "read -P 0xe 0 1024", "-c", "read -P 0xa 1024 64512", "-c", "read -P 0xa 64k 3M", "--image-opts", spec);
        assertEquals(0, r.exit(), r.err());
        assertTrue(!r.out().contains("failed"), r.out());
        Qemu.asQemuImg("commit", "-q", "--object", Encrypted.OBJECT, "--object", SEC1, "--image-opts", spec).ok();
        Qemu.Result b = Qemu.run(dir, "qemu-io", "--object", Encrypted.OBJECT, "-c", "read -P 0xe 0 1024", "-c",
                "read -P 0xa 1024 64512", "--image-opts", Encrypted.opts(base));
        assertTrue(!b.out().contains("failed") && b.exit() == 0, b.out() + b.err());
        assertEquals(0, Qemu.run(dir, "qemu-img", "check", "--object", Encrypted.OBJECT, "--image-opts",
                Encrypted.opts(base)).exit());
    }

    @Test
    void infoOfImageOptsNeedsNoSecretAndShowsQemusName() throws IOException {
        Path img = dir.resolve("enc.qcow2");
        Encrypted.create(dir, img, "", "1M");
        for (String output : new String[] {"human", "json"}) {
            String[] args = {"info", "--output=" + output, "--image-opts", Encrypted.opts(img)};
            Qemu.Result theirs = Qemu.run(dir, Qemu.concat("qemu-img", args));
            Qemu.Result ours = Qemu.asQemuImg(args);
            assertEquals(theirs.exit(), ours.exit());
            assertEquals(theirs.out().replaceAll("disk size: .*\n", "").replaceAll("\"actual-size\": \\d+", ""),
                    ours.out().replaceAll("disk size: .*\n", "").replaceAll("\"actual-size\": \\d+", ""));
        }
    }

    @Test
    void preallocatedLuksConvertReadsAsItsSource() throws IOException {
        Path src = dir.resolve("src.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", src.toString(), "2M");
        Qemu.io(dir, src.toString(), "write -P 0x3 64k 64k");
        Path out = dir.resolve("out.qcow2");
        Qemu.asQemuImg("convert", "-O", "qcow2", "--object", Encrypted.OBJECT, "-o",
                "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,preallocation=metadata",
                src.toString(), out.toString()).ok();
        Qemu.Result cmp = Qemu.run(dir, "qemu-img", "compare", "--object", Encrypted.OBJECT, "--image-opts",
                "driver=qcow2,file.filename=" + src, Encrypted.opts(out));
        assertEquals("Images are identical.\n", cmp.out(), cmp.err());
    }

    @Test
    void luksFilesWeCreateOpenInQemu() throws IOException {
        Path f = dir.resolve("t.luks");
        Qemu.Result ours = Qemu.asQemuImg("create", "-f", "luks", "--object", Encrypted.OBJECT, "-o", "key-secret=sec0",
                "-o", "iter-time=10", f.toString(), "1M").ok();
        assertEquals("Formatting '" + f + "', fmt=luks size=1048576 key-secret=sec0 iter-time=10\n", ours.out());
        assertEquals(2068480 + 1048576, Files.size(f));
        Qemu.Result io = Qemu.run(dir, "qemu-io", "--object", Encrypted.OBJECT, "--image-opts",
                "driver=luks,file.filename=" + f + ",key-secret=sec0", "-c", "write -P 7 0 1M", "-c", "read -P 7 0 1M");
        assertEquals(0, io.exit(), io.err());
        assertTrue(!io.out().contains("failed"), io.out());
        Qemu.Result missing = Qemu.asQemuImg("create", "-q", "-f", "luks", dir.resolve("u.luks").toString(), "1M");
        assertEquals(Qemu.run(dir, "qemu-img", "create", "-q", "-f", "luks", dir.resolve("v.luks").toString(), "1M")
                .err().replace("v.luks", "u.luks"), missing.err());
    }
}
