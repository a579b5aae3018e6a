package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code resize} against {@code qemu-img resize} on copies of the same images: for every image kind, growing (also
 * with metadata, falloc and full preallocation), shrinking with {@code --shrink} (to a size inside data, unaligned to clusters) and
 * the refusals; the same stdout, stderr and exit code, the same file byte for byte, {@code qemu-img check} clean.
 */
class ResizeCommandTest {
    @TempDir
    Path dir;

    /** Each a resize command line's options and size; IMG stands for the image. */
    static final List<String> LINES = List.of("IMG +1G", "--shrink IMG 33M", "IMG --shrink -1536k", "IMG 10M",
            "--preallocation=metadata IMG +3000k", "--preallocation=metadata IMG -1M", "-q IMG +512",
            "--preallocation=full IMG +1M", "--preallocation=falloc IMG +3000k");
    /** The lines run on the other kinds (the machine is shared: each line costs two qemu-img runs). */
    static final List<String> KIND_LINES = List.of("IMG --shrink -1536k", "--preallocation=metadata IMG +3000k");

    @Test
    void sameBytesAsQemuImgOverImageKinds() throws IOException {
        Map<String, Path> kinds = ImageKinds.make(dir);
        for (Map.Entry<String, Path> k : kinds.entrySet()) {
            String name = k.getKey();
            for (String line : name.equals("plain") ? LINES : KIND_LINES) {
                run(k.getValue(), line, name);
            }
            if (name.equals("c512") || name.equals("extl2") || name.equals("chain")) {
                run(k.getValue(), "--preallocation=falloc IMG +1M", name); // new refcount structures; subclusters; a backing file
            }
        }
        Path raw = dir.resolve("r.raw");
        Qemu.img(dir, "create", "-q", "-f", "raw", raw.toString(), "10M");
        Qemu.io(dir, raw.toString(), "write -P 1 1M 1M");
        for (String line : List.of("-f raw IMG +64M", "-f raw --shrink IMG 1000", "-f raw IMG 1M", "IMG +1M",
                "-f raw --preallocation=falloc IMG +100k", "-f raw --preallocation=full IMG 11M",
                "-f raw --preallocation=metadata IMG 20M")) {
            run(raw, line, "raw");
        }
    }

    /** Runs {@code line} on two copies of {@code image} (the top of its chain), one per tool. */
    private void run(Path image, String line, String what) throws IOException {
        Path theirs = dir.resolve("theirs-" + image.getFileName());
        Path ours = dir.resolve("ours-" + image.getFileName());
        Files.copy(image, theirs, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        Files.copy(image, ours, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", Qemu.concat("resize", line.replace("IMG", theirs.toString()).split(" "))));
        Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, Qemu.concat("resize", line.replace("IMG", ours.toString()).split(" ")));
        String context = what + ": " + line;
        assertEquals(want.exit(), got.exit(), context + ": " + got);
        assertEquals(want.out(), got.out(), context);
        assertEquals(want.err().replace(theirs.toString(), "IMG"), got.err().replace(ours.toString(), "IMG"), context);
        assertEquals(-1, Files.mismatch(theirs, ours), context + ": first differing byte");
        if (!what.equals("raw") && want.exit() == 0) {
            assertEquals(0, Qemu.run(dir, "qemu-img", "check", ours.toString()).exit(), context);
        }
    }

    @Test
    void refusalsAreQemuImgs() throws IOException {
        Path v2 = dir.resolve("v2.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", v2.toString(), "8M");
        Qemu.img(dir, "snapshot", "-c", "s", v2.toString());
        Path img = dir.resolve("a.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", img.toString(), "8M");
        for (String line : List.of("V2 +1M", "IMG", "IMG 0", "IMG abc", "IMG -9M", "IMG 1E", "--shrink IMG 1000",
                "IMG 9223372036854775807", "--preallocation=bogus IMG +1M", "--preallocation=metadata IMG 8M",
                "IMG 1M 2M", "DIR/missing.qcow2 1M", "-f raw IMG 1M", "--bogus IMG +1M", "-f", "--shrink IMG 7M")) {
            run(img, line.replace("V2", v2.toString()).replace("DIR", dir.toString()), "refusal");
        }
    }
}
