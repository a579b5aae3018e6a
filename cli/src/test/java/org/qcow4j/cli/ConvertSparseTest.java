package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * convert's {@code -S} (which zero runs stay sparse) and {@code -n} (into an existing image), against qemu-img 7.2
 * on the cases of its iotest 122: the same map, the same file bytes for {@code -n}, the same messages.
 */
class ConvertSparseTest {
    @TempDir
    Path dir;

    private String path(String name) {
        return dir.resolve(name).toString();
    }

    private String map(String image) {
        return Qemu.img(dir, "map", "--output=json", path(image)).out().replaceAll("\"offset\": \\d+", "OFFSET");
    }

    /** 1 KiB clusters, data sectors scattered among written zeros: what -S keeps depends on its size. */
    @Test
    void sparseSizeDecidesWhichZeroRunsAreWrittenAsQemuImgDecides() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=1k", path("t.qcow2"), "64M");
        Qemu.io(dir, path("t.qcow2"), "write -P 0 0 64k", "write 0 1k", "write 8k 1k", "write 17k 1k",
                "write -P 0 65k 1k");
        for (String sparse : List.of("4k", "8k", "12k", "64k", "0")) {
            for (boolean compress : new boolean[] {false, true}) {
                List<String> args = Qemu.list("convert", "-O", "qcow2", "-o", "cluster_size=1k", "-S", sparse);
                if (compress) {
                    args.add("-c");
                }
                args.addAll(List.of(path("t.qcow2"), path("want.qcow2")));
                Qemu.img(dir, args.toArray(String[]::new));
                args.set(args.size() - 1, path("got.qcow2"));
                Qemu.qcow4j(args.toArray(String[]::new)).ok();
                String what = "-S " + sparse + (compress ? " -c" : "");
                if (sparse.equals("0") && !compress) {
                    // Fully allocated both; qcow4j's L2 tables sit elsewhere among the data, so only the totals agree.
                    List<String> lines = map("got.qcow2").lines().toList();
                    assertTrue(lines.stream().allMatch(l -> l.contains("\"present\": true, \"zero\": false, \"data\": true")),
                            what);
                    assertEquals(64L << 20, lines.stream().mapToLong(l -> Long.parseLong(
                            l.replaceAll(".*\"length\": (\\d+),.*", "$1"))).sum(), what);
                } else {
                    assertEquals(map("want.qcow2"), map("got.qcow2"), what);
                }
                Qemu.img(dir, "compare", path("want.qcow2"), path("got.qcow2"));
            }
        }
    }

    @Test
    void sparseZeroAllocatesEveryClusterAndEveryRawByte() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("b.qcow2"), "64M");
        Qemu.io(dir, path("b.qcow2"), "write -P 0x11 0 32M");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", path("b.qcow2"), "-F", "qcow2", path("t.qcow2"), "64M");
        Qemu.io(dir, path("t.qcow2"), "write -P 0x22 0 3M");
        String whole = "[{ \"start\": 0, \"length\": 67108864, \"depth\": 0, \"present\": true, \"zero\": false, "
                + "\"data\": true%s}]\n";
        Qemu.qcow4j("convert", "-O", "qcow2", "-S", "0", path("t.qcow2"), path("full.qcow2")).ok();
        assertEquals(String.format(whole, ", OFFSET"), map("full.qcow2"));
        Qemu.qcow4j("convert", "-O", "qcow2", "-c", "-S", "0", path("t.qcow2"), path("fullc.qcow2")).ok();
        assertEquals(String.format(whole, ""), map("fullc.qcow2"));
        Qemu.qcow4j("convert", "-O", "raw", "-S", "0", path("t.qcow2"), path("full.raw")).ok();
        for (String out : List.of("full.qcow2", "fullc.qcow2", "full.raw")) {
            Qemu.img(dir, "compare", path("t.qcow2"), path(out));
        }
        long blocks = Long.parseLong(Qemu.run(dir, "stat", "-c", "%b", path("full.raw")).ok().out().trim());
        assertEquals(64 << 20, blocks * 512, "every byte of the raw output allocated");
    }

    /** -n into images of both versions, with and without a backing file, after old data: qemu-img's very file. */
    @Test
    void writesIntoAnExistingImageByteForByteAsQemuImg() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("src.qcow2"), "64M");
        Qemu.io(dir, path("src.qcow2"), "write -P 7 1M 100k", "write -z 5M 1M");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("base.qcow2"), "64M");
        Qemu.io(dir, path("base.qcow2"), "write -P 9 0 64M");
        for (String compat : List.of("1.1", "0.10")) {
            for (boolean backed : new boolean[] {false, true}) {
                for (String sparse : List.of("4k", "0")) {
                    for (String tool : List.of("want", "got")) {
                        List<String> create = Qemu.list("create", "-q", "-f", "qcow2", "-o", "compat=" + compat);
                        if (backed) {
                            create.addAll(List.of("-b", path("base.qcow2"), "-F", "qcow2"));
                        }
                        create.addAll(List.of(path(tool + ".qcow2"), "64M"));
                        Qemu.img(dir, create.toArray(String[]::new));
                        Qemu.io(dir, path(tool + ".qcow2"), "write -P 3 0 10M");
                        String[] convert = {"convert", "-O", "qcow2", "-S", sparse, "-n", path("src.qcow2"),
                            path(tool + ".qcow2")};
                        if (tool.equals("want")) {
                            Qemu.img(dir, convert);
                        } else {
                            Qemu.qcow4j(convert).ok();
                        }
                    }
                    assertEquals(-1L, Files.mismatch(dir.resolve("want.qcow2"), dir.resolve("got.qcow2")),
                            "compat " + compat + (backed ? " with backing file" : "") + " -S " + sparse);
                }
            }
        }
        // --target-is-zero: the zero ranges are left as they are (qemu-img's file again).
        for (String tool : List.of("want", "got")) {
            Qemu.img(dir, "create", "-q", "-f", "qcow2", path(tool + ".qcow2"), "64M");
            String[] convert = {"convert", "-O", "qcow2", "-n", "--target-is-zero", path("src.qcow2"), path(tool + ".qcow2")};
            if (tool.equals("want")) {
                Qemu.img(dir, convert);
            } else {
                Qemu.qcow4j(convert).ok();
            }
        }
        assertEquals(-1L, Files.mismatch(dir.resolve("want.qcow2"), dir.resolve("got.qcow2")), "--target-is-zero");
        // Without -O the target is raw, as qemu-img opens it.
        Files.write(dir.resolve("t.raw"), new byte[64 << 20]);
        Qemu.qcow4j("convert", "-n", path("src.qcow2"), path("t.raw")).ok();
        Qemu.img(dir, "compare", "-F", "raw", path("src.qcow2"), path("t.raw"));
    }

    @Test
    void refusesAsQemuImgRefuses() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("t.qcow2"), "64M");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("small.qcow2"), "1M");
        String[][] cases = {
            {"convert", "-O", "qcow2", "-o", "preallocation=metadata", "-n", path("t.qcow2"), path("small.qcow2")},
            {"convert", "--target-is-zero", path("t.qcow2"), path("x.qcow2")},
            {"convert", "-n", "-O", "qcow2", path("t.qcow2"), path("missing.qcow2")},
            {"convert", "-n", "-O", "qcow2", path("t.qcow2"), path("small.qcow2")},
            {"convert", "-S", "1000", path("t.qcow2"), path("x.raw")},
            {"convert", "-S", "1x", path("t.qcow2"), path("x.raw")},
            {"convert", "-S", "32M", path("t.qcow2"), path("x.raw")},
        };
        for (String[] c : cases) {
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", c));
            Qemu.Result got = Qemu.qcow4j(c);
            assertEquals(1, want.exit(), String.join(" ", c));
            assertEquals(want.exit(), got.exit(), String.join(" ", c));
            assertEquals(want.err().replace("qemu-img:", "qcow4j:"), got.err(), String.join(" ", c));
        }
        assertTrue(Files.notExists(dir.resolve("x.raw")) && Files.notExists(dir.resolve("x.qcow2")));
    }
}
