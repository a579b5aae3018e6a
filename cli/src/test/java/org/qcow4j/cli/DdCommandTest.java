package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code dd} against {@code qemu-img dd} from the same inputs: every image kind copied into qcow2 and raw outputs
 * with block sizes, counts and skips; the outputs byte for byte the same, the same stdout, stderr and exit code;
 * the refusals of operands and formats.
 */
class DdCommandTest {
    @TempDir
    Path dir;

    @Test
    void sameOutputFilesAsQemuImgOverImageKinds() throws IOException {
        Map<String, Path> kinds = ImageKinds.make(dir);
        for (Map.Entry<String, Path> k : kinds.entrySet()) {
            boolean big = k.getKey().equals("sparse4t");
            for (String line : List.of(big ? "-O qcow2 bs=1M skip=2097151 count=3" : "-O qcow2 bs=64k",
                    big ? "bs=512k skip=4194303 count=5" : "bs=1M skip=3 count=20", "-O qcow2 bs=3000 count=7 skip=1")) {
                run(line + " if=" + k.getValue(), k.getKey());
            }
        }
    }

    @Test
    void refusalsAreQemuImgs() throws IOException {
        Path in = dir.resolve("in.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", in.toString(), "3M");
        Qemu.io(dir, in.toString(), "write -P 1 0 100k");
        for (String line : List.of("bs=0", "bs=abc", "bs=3G", "count=-1", "skip=x", "foo=1", "junk", "bs=1M skip=5",
                "-O qcow2 bs=1M skip=5", "-O bogus", "-f raw", "if=" + dir.resolve("missing"))) {
            run(line + (line.startsWith("if=") ? "" : " if=" + in), "refusal");
        }
        run("if=" + in, "no output");
    }

    /** Runs {@code qemu-img dd LINE of=OUT} and ours with other outputs; compares everything. */
    private void run(String line, String what) throws IOException {
        Path theirs = dir.resolve("theirs.out");
        Path ours = dir.resolve("ours.out");
        Files.deleteIfExists(theirs);
        Files.deleteIfExists(ours);
        boolean withOutput = !what.equals("no output");
        String[] want = Qemu.concat("dd", (line + (withOutput ? " of=" + theirs : "")).split(" "));
        String[] got = Qemu.concat("dd", (line + (withOutput ? " of=" + ours : "")).split(" "));
        Qemu.Result w = Qemu.run(dir, Qemu.concat("qemu-img", want));
        Qemu.Result g = SnapshotCommandTest.run(Program.QEMU_IMG, got);
        String context = what + ": " + line;
        assertEquals(w.exit(), g.exit(), context + ": " + g);
        assertEquals(w.out(), g.out(), context);
        assertEquals(w.err().replace(theirs.toString(), "OUT"), g.err().replace(ours.toString(), "OUT"), context);
        assertEquals(Files.exists(theirs), Files.exists(ours), context);
        if (Files.exists(theirs)) {
            assertArrayEquals(Files.readAllBytes(theirs), Files.readAllBytes(ours), context);
        }
    }
}
