package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code compare} against {@code qemu-img compare} on the same files: every image kind against itself converted
 * (identical), against a copy with one sector changed (where qemu-img finds the mismatch), against its raw conversion
 * in strict mode (the block status differs) and against images of other sizes; refusals and errors. Same stdout,
 * stderr and exit code under the qemu-img name.
 */
class CompareCommandTest {
    @TempDir
    Path dir;

    @Test
    void sameOutputAsQemuImgOverImageKinds() {
        Map<String, Path> kinds = ImageKinds.make(dir);
        List<String> lines = new ArrayList<>();
        for (Map.Entry<String, Path> k : kinds.entrySet()) {
            String name = k.getKey();
            String img = k.getValue().toString();
            boolean big = name.equals("sparse4t");
            String copy = dir.resolve(name + "-copy.qcow2").toString();
            Qemu.img(dir, "convert", "-O", "qcow2", img, copy);
            Qemu.io(dir, copy, "write -P 99 " + (big ? "3T" : "2560k") + " 1k");
            lines.add(img + " " + copy);
            lines.add("-s " + img + " " + copy);
            lines.add("-p " + copy + " " + img);
            if (!big) {
                String raw = dir.resolve(name + ".raw").toString();
                Qemu.img(dir, "convert", "-O", "raw", img, raw);
                lines.add(img + " " + raw);
                lines.add("-s " + img + " " + raw);
                if (name.equals("plain")) {
                    lines.add("-f raw -F qcow2 " + raw + " " + img);
                    lines.add("-q " + img + " " + copy);
                }
            }
        }
        // different sizes: a longer image whose tail is zeros, data, or unallocated
        String small = dir.resolve("small.qcow2").toString();
        String large = dir.resolve("large.qcow2").toString();
        String largeData = dir.resolve("large-data.qcow2").toString();
        Qemu.img(dir, "create", "-q", "-f", "qcow2", small, "10M");
        Qemu.io(dir, small, "write -P 1 0 1M");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", large, "30M");
        Qemu.io(dir, large, "write -P 1 0 1M", "write -z 20M 1M");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", largeData, "30M");
        Qemu.io(dir, largeData, "write -P 1 0 1M", "write -P 0 12M 1M", "write -P 5 25M 3k");
        for (String line : List.of("S L", "L S", "-s S L", "S D", "-p D S", "-q D S", "L D")) {
            lines.add(line.replace("S", small).replace("L", large).replace("D", largeData));
        }
        for (String line : lines) {
            String[] args = Qemu.concat("compare", line.split(" "));
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", args));
            Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, args);
            assertEquals(want, got, line);
        }
    }

    @Test
    void refusalsAndErrorsAreQemuImgs() {
        String a = dir.resolve("a.qcow2").toString();
        Qemu.img(dir, "create", "-q", "-f", "qcow2", a, "1M");
        for (String line : List.of("A", "", "A A A", "A DIR/missing", "DIR/missing A", "-T bogus A A", "-f nosuchfmt A A",
                "-f raw -F qcow2 A A", "-x A A", "-f", "--image-opts -f qcow2 A A", "-U A A", "--object bogus A A")) {
            String[] args = Qemu.concat("compare", line.isEmpty() ? new String[0]
                    : line.replace("A", a).replace("DIR", dir.toString()).split(" "));
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", args));
            Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, args);
            assertEquals(want, got, line);
        }
    }

    @Test
    void sparseFourTebibytesCompareAtOnce() {
        String a = dir.resolve("a.qcow2").toString();
        String b = dir.resolve("b.qcow2").toString();
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", a, "4T");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", b, "4T");
        Qemu.io(dir, a, "write -P 1 1T 1M");
        Qemu.io(dir, b, "write -P 1 1T 1M");
        long start = System.nanoTime();
        Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, "compare", a, b);
        double seconds = (System.nanoTime() - start) / 1e9;
        assertEquals(new Qemu.Result(0, "Images are identical.\n", ""), got);
        assertTrue(seconds < 5, "compare of 4 TiB sparse images took " + seconds + " s");
    }
}
