package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.Images;

/**
 * Images qcow4j writes, judged by QEMU: {@code qemu-img check} finds no leak and no corruption, {@code qemu-img
 * compare} finds them equal to their source, {@code qemu-img info} shows the options asked for.
 */
class WriteCompatibilityTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    static Path root;

    /** qemu-img check --output=json must say: no errors, no leaks, no corruptions. */
    static void assertClean(Path dir, String image) throws IOException {
        Qemu.Result r = Qemu.run(dir, "qemu-img", "check", "--output=json", image);
        JsonNode j = JSON.readTree(r.out());
        assertEquals(0, r.exit(), () -> "qemu-img check " + image + ": " + r.out() + r.err());
        assertEquals(0, j.path("check-errors").asInt(), r.out());
        assertEquals(0, j.path("leaks").asInt(), r.out());
        assertEquals(0, j.path("corruptions").asInt(), r.out());
    }

    static void assertSameContent(Path dir, String a, String b) {
        assertEquals("Images are identical.\n", Qemu.img(dir, "compare", a, b).out());
    }

    @TestFactory
    Stream<DynamicTest> convertsEveryReadVariantToQcow2() {
        return CompatibilityTest.variants().stream().flatMap(v -> Stream.of(
                DynamicTest.dynamicTest(v.name() + " plain", () -> convert(v, "plain")),
                DynamicTest.dynamicTest(v.name() + " -c zlib", () -> convert(v, "zlib")),
                DynamicTest.dynamicTest(v.name() + " -c zstd", () -> convert(v, "zstd"))));
    }

    private static void convert(CompatibilityTest.Variant v, String mode) throws IOException {
        Path parent = Files.createDirectories(root.resolve(mode));
        String src = v.build(parent);
        Path dir = Path.of(src).getParent();
        String out = dir.resolve("out.qcow2").toString();
        List<String> args = Qemu.list("convert", "-O", "qcow2");
        if (!mode.equals("plain")) {
            args.addAll(List.of("-c", "-o", "compression_type=" + mode));
        }
        args.addAll(List.of(src, out));
        Qemu.qcow4j(args.toArray(String[]::new)).ok();
        assertClean(dir, out);
        assertSameContent(dir, src, out);
        JsonNode info = JSON.readTree(Qemu.img(dir, "info", "--output=json", out).out());
        assertEquals(mode.equals("zstd") ? "zstd" : "zlib", info.at("/format-specific/data/compression-type").asText());
    }

    /** One source, every output option. */
    @TestFactory
    Stream<DynamicTest> honoursEveryOutputOption() throws IOException {
        Path dir = Files.createDirectories(root.resolve("options"));
        Qemu.run(dir, "bash", "-c", "truncate -s 5M src.raw; head -c 1M /dev/urandom | dd of=src.raw bs=64k seek=3 "
                + "conv=notrunc status=none; yes qcow4j | head -c 2M | dd of=src.raw bs=64k seek=40 conv=notrunc status=none").ok();
        String src = dir.resolve("src.raw").toString();
        return Stream.of("cluster_size=512", "cluster_size=4k", "cluster_size=2M", "refcount_bits=1", "refcount_bits=2",
                        "refcount_bits=8", "refcount_bits=64", "compat=0.10", "extended_l2=on", "lazy_refcounts=on",
                        "cluster_size=512,refcount_bits=1", "extended_l2=on,cluster_size=16k,refcount_bits=4",
                        "data_file=DIR/out.data", "data_file=DIR/out.data,data_file_raw=on", "preallocation=metadata",
                        "preallocation=full", "compat=0.10,cluster_size=4k")
                // a data file named absolutely: a relative name is taken from the working directory, not dir
                .map(opts -> opts.replace("DIR", dir.toString()))
                .flatMap(opts -> Stream.of(false, true)
                        .filter(c -> !(c && opts.startsWith("data_file")))
                        .map(c -> DynamicTest.dynamicTest(opts + (c ? " -c" : ""), () -> {
                            String out = dir.resolve("out.qcow2").toString();
                            List<String> args = Qemu.list("convert", "-O", "qcow2", "-o", opts);
                            if (c) {
                                args.add("-c");
                            }
                            args.addAll(List.of(src, out));
                            Qemu.qcow4j(args.toArray(String[]::new)).ok();
                            assertClean(dir, out);
                            assertSameContent(dir, src, out);
                            String info = Qemu.img(dir, "info", out).out();
                            for (String kv : opts.split(",")) {
                                assertTrue(showsOption(info, kv), () -> opts + " not shown by qemu-img info:\n" + info);
                            }
                        })));
    }

    private static boolean showsOption(String info, String kv) {
        String[] p = kv.split("=");
        return switch (p[0]) {
            case "cluster_size" -> info.contains("cluster_size: " + CliSizes.parse(p[1]));
            case "refcount_bits" -> info.contains("refcount bits: " + p[1]);
            case "compat" -> info.contains("compat: " + p[1]);
            case "extended_l2" -> info.contains("extended l2: true");
            case "lazy_refcounts" -> info.contains("lazy refcounts: true");
            case "data_file" -> info.contains("data file: " + p[1]);
            case "data_file_raw" -> info.contains("data file raw: true");
            default -> true; // preallocation: not shown by qemu-img info; the content check covers it
        };
    }

    /** Sizes in the option strings above. */
    private static final class CliSizes {
        static long parse(String s) throws IllegalArgumentException {
            try {
                return ImageOptions.size(s);
            } catch (CommandLine.UsageException e) {
                throw new IllegalArgumentException(e);
            }
        }
    }

    @Test
    void backingFileGetsOnlyWhatDiffers() throws IOException {
        Path dir = Files.createDirectories(root.resolve("backing"));
        Qemu.run(dir, "bash", "-c", """
                set -e
                qemu-img create -q -f qcow2 base.qcow2 4M
                qemu-io -c 'write -P 1 0 4M' base.qcow2 >/dev/null
                qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 4M
                qemu-io -c 'write -P 2 64k 64k' -c 'write -z 1M 128k' -c 'write -P 1 2M 64k' top.qcow2 >/dev/null
                """).ok();
        for (String compat : new String[] {"1.1", "0.10"}) {
            String out = dir.resolve("new-" + compat + ".qcow2").toString();
            Qemu.qcow4j("convert", "-O", "qcow2", "-o", "compat=" + compat, "-B", "base.qcow2", "-F", "qcow2",
                    dir.resolve("top.qcow2").toString(), out).ok();
            assertClean(dir, out);
            assertSameContent(dir, dir.resolve("top.qcow2").toString(), out);
            JsonNode info = JSON.readTree(Qemu.img(dir, "info", "--output=json", out).out());
            assertEquals("base.qcow2", info.path("backing-filename").asText());
            // Only 64k of new data and 128k of zeros differ from the base (the 2M write repeats the base's bytes).
            String map = Qemu.img(dir, "map", "--output=json", out).out();
            long own = 0;
            for (JsonNode e : JSON.readTree(map)) {
                if (e.path("depth").asInt() == 0 && e.path("present").asBoolean()) {
                    own += e.path("length").asLong();
                }
            }
            assertEquals(192 * 1024, own, map);
        }
    }
}
