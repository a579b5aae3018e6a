package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Damaged and hostile LUKS headers in qcow2 images: each is refused with one line and exit 1, in seconds (never the
 * hours PBKDF2 would take over an absurd iteration count, nor an allocation the size of an absurd stripe count), with
 * qemu-img's words where qemu-img refuses it too.
 */
class EncryptedDamageTest {
    @TempDir
    Path dir;
    private Path pristine;
    private long luks;

    @BeforeEach
    void makeImage() throws IOException {
        pristine = dir.resolve("pristine.qcow2");
        Encrypted.create(dir, pristine, "", "1M");
        Encrypted.io(dir, pristine, "write -P 0x5a 0 64k");
        luks = cryptoExtensionField(pristine, 0);
    }

    /** Field {@code at} (0: offset, 8: length) of the full disk encryption header pointer (extension 0x0537be77). */
    private static long cryptoExtensionField(Path img, int at) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "r")) {
            f.seek(100);
            long pos = f.readInt();
            while (true) {
                f.seek(pos);
                int type = f.readInt();
                int len = f.readInt();
                if (type == 0x0537be77) {
                    f.seek(pos + 8 + at);
                    return f.readLong();
                }
                if (type == 0) {
                    throw new AssertionError("no encryption header extension");
                }
                pos += 8 + ((len + 7) & ~7);
            }
        }
    }

    private Path damaged(String name, Consumer<RandomAccessFile> damage) throws IOException {
        Path img = dir.resolve(name + ".qcow2");
        Files.copy(pristine, img);
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            damage.accept(f);
        }
        return img;
    }

    private static void putInt(RandomAccessFile f, long at, int v) {
        try {
            f.seek(at);
            f.writeInt(v);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static void putLong(RandomAccessFile f, long at, long v) {
        try {
            f.seek(at);
            f.writeLong(v);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /** Our convert refuses {@code img} in one line holding {@code expected}, at once; returns the line. */
    private String refused(Path img, String expected) {
        Path out = dir.resolve("out.raw");
        long t0 = System.nanoTime();
        Qemu.Result r = Qemu.qcow4j("convert", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img), "-O",
                "raw", out.toString());
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(1, r.exit(), r.err());
        assertEquals(1, r.err().lines().count(), r.err());
        assertTrue(r.err().contains(expected), () -> "expected '" + expected + "' in " + r.err());
        assertTrue(r.err().contains(img.toString()), r.err());
        assertTrue(ms < 10_000, "took " + ms + " ms");
        assertFalse(Files.exists(out));
        return r.err();
    }

    /** qemu-img and our drop-in refuse {@code img} with the same words. */
    private void sameAsQemuImg(Path img) {
        String[] args = {"convert", "--object", Encrypted.OBJECT, "--image-opts", Encrypted.opts(img), "-O", "raw",
                dir.resolve("out.raw").toString()};
        Qemu.Result theirs = Qemu.run(dir, Qemu.concat("qemu-img", args));
        assertEquals(theirs, Qemu.asQemuImg(args));
    }

    @Test
    void damagedKeySlotDoesNotUnlock() throws IOException {
        Path img = damaged("slot", f -> putLong(f, luks + 4096 + 1000, 0x0123456789abcdefL));
        refused(img, "Invalid password, cannot unlock any keyslot");
        sameAsQemuImg(img);
    }

    @Test
    void headerOutsideTheFile() throws IOException {
        long length = Files.size(pristine);
        Path img = damaged("outside", f -> {
            try {
                f.seek(100);
                long pos = f.readInt(); // the first extension is the pointer: QEMU writes no backing format here
                putLong(f, pos + 8, (length + (1 << 20)) & ~0xffffL);
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        assertEquals(0x0537be77, readInt(img, readInt(img, 100)));
        refused(img, "lies outside the file");
        Path shortRegion = damaged("short", f -> {
            try {
                f.seek(100);
                long pos = f.readInt();
                putLong(f, pos + 16, 100000); // the key material of slot 0 runs past the region
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        refused(shortRegion, "key material ends at byte");
    }

    private static int readInt(Path img, long at) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "r")) {
            f.seek(at);
            return f.readInt();
        }
    }

    @Test
    void absurdIterationsAreRefusedInsteadOfComputed() throws IOException {
        refused(damaged("slotiter", f -> putInt(f, luks + 208 + 4, -1)),
                "LUKS key slot 0 iterations = 4294967295: more PBKDF2 iterations than qcow4j's limit");
        refused(damaged("mkiter", f -> putInt(f, luks + 164, 2_000_000_000)),
                "LUKS mk_digest_iter = 2000000000: more PBKDF2 iterations than qcow4j's limit");
    }

    @Test
    void absurdStripesKeyBytesAndOffsetsAreQemusRefusals() throws IOException {
        Path stripes = damaged("stripes", f -> putInt(f, luks + 208 + 44, Integer.MAX_VALUE));
        refused(stripes, "LUKS key slot 0 stripes = 2147483647");
        sameAsQemuImg(stripes);
        Path keyBytes = damaged("keybytes", f -> putInt(f, luks + 108, 1 << 28));
        refused(keyBytes, "LUKS key");
        sameAsQemuImg(keyBytes);
        Path payload = damaged("payload", f -> putInt(f, luks + 104, 1));
        refused(payload, "payload overlaps the header");
        sameAsQemuImg(payload);
        Path magic = damaged("magic", f -> putInt(f, luks, 0x4c554b53 ^ 1));
        refused(magic, "not a LUKS header");
        sameAsQemuImg(magic);
    }
}
