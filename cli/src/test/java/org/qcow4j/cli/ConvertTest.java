package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** convert -O raw beyond single images: several inputs, progress, replacing outputs, failures. */
class ConvertTest {
    @TempDir
    Path dir;

    private String path(String name) {
        return dir.resolve(name).toString();
    }

    @Test
    void concatenatesSeveralInputsLikeQemuImg() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("a.qcow2"), "1M");
        Qemu.io(dir, path("a.qcow2"), "write -P 1 0 4k", "write -P 2 1020k 4k");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "compression_type=zstd", path("b.qcow2"), "1536k");
        Qemu.io(dir, path("b.qcow2"), "write -c -P 3 0 64k", "write -P 4 1400k 1k");
        Qemu.run(dir, "bash", "-c", "head -c 5000 /dev/urandom > c.raw").ok();
        Qemu.img(dir, "convert", "-O", "raw", path("a.qcow2"), path("b.qcow2"), path("c.raw"), path("want.raw"));
        Qemu.qcow4j("convert", "-m", "3", "-O", "raw", path("a.qcow2"), path("b.qcow2"), path("c.raw"), path("got.raw")).ok();
        assertEquals(-1L, Files.mismatch(dir.resolve("want.raw"), dir.resolve("got.raw")));
    }

    @Test
    void showsQemuImgProgressAndForcesOutputToDiskWhenAsked() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("a.qcow2"), "8M");
        Qemu.io(dir, path("a.qcow2"), "write -P 1 0 3M");
        Qemu.Result r = Qemu.qcow4j("convert", "-p", "-t", "writeback", "-O", "raw", path("a.qcow2"), path("out.raw")).ok();
        assertTrue(r.out().startsWith("    (0.00/100%)\r"), r.out());
        assertTrue(r.out().endsWith("    (100.00/100%)\r\n"), r.out());
        Qemu.img(dir, "compare", "-f", "qcow2", "-F", "raw", path("a.qcow2"), path("out.raw"));
        assertEquals("", Qemu.qcow4j("convert", "-p", "-q", "-O", "raw", path("a.qcow2"), path("out.raw")).ok().out());
    }

    /** -p prints the values qemu-img prints: the share of its data runs (2 MiB at most) done, 1% apart at least. */
    @Test
    void printsQemuImgsProgressValues() throws IOException {
        String[][] layouts = {
            {"write 0 1M", "write 2M 1M", "write 4M 1M", "write 32M 1M"}, // iotest 086
            {"write 0 5M", "write -z 8M 1M", "write 20M 64k"},
            {"write 0 64k", "write 1M 64k", "write 2M 64k", "write 3M 64k", "write 100M 3M"},
            {},
        };
        for (String[] writes : layouts) {
            Qemu.img(dir, "create", "-q", "-f", "qcow2", path("p.qcow2"), "128M");
            if (writes.length > 0) {
                Qemu.io(dir, path("p.qcow2"), writes);
            }
            for (String format : new String[] {"qcow2", "raw"}) {
                String want = Qemu.img(dir, "convert", "-p", "-O", format, path("p.qcow2"), path("want.img")).out();
                String got = Qemu.qcow4j("convert", "-p", "-O", format, path("p.qcow2"), path("got.img")).ok().out();
                assertEquals(want, got, String.join(", ", writes) + " to " + format);
            }
        }
    }

    /**
     * An input that cannot be opened fails the convert before the output is touched. (Once writing has started, the
     * old output is gone, as with qemu-img: OutputFile#writeReplacing; never a partly written one in its place.)
     */
    @Test
    void replacesAnExistingOutputOnlyOnSuccess() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("good.qcow2"), "1M");
        Qemu.io(dir, path("good.qcow2"), "write -P 0x61 0 1M");
        Files.writeString(dir.resolve("out.raw"), "keep me");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", "missing.qcow2", "-F", "qcow2", "-u", path("bad.qcow2"), "1M");

        Qemu.Result failed = Qemu.qcow4j("convert", "-O", "raw", path("good.qcow2"), path("bad.qcow2"), path("out.raw"));
        assertEquals(1, failed.exit());
        assertTrue(failed.err().contains("missing.qcow2"), failed.err());
        assertEquals("keep me", Files.readString(dir.resolve("out.raw")));

        Qemu.qcow4j("convert", "-O", "raw", path("good.qcow2"), path("out.raw")).ok();
        assertEquals(1 << 20, Files.size(dir.resolve("out.raw")));
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(), files.filter(p -> p.getFileName().toString().contains("qcow4j-tmp")).toList());
        }
    }

    @Test
    void refusesBadQcow2OutputOptionsWithOneLineAndLeavesNothing() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("in.qcow2"), "1M");
        String[][] cases = {
            {"-o", "bogus=1"},
            {"-o", "cluster_size=3000"},
            {"-o", "cluster_size=256"},
            {"-o", "refcount_bits=128"},
            {"-o", "compat=0.10,refcount_bits=8"},
            {"-o", "extended_l2=on,cluster_size=4k"},
            {"-o", "data_file=d.raw", "-c"},
            {"-B", "missing.qcow2"},
        };
        for (String[] c : cases) {
            List<String> args = Qemu.list("convert", "-O", "qcow2");
            args.addAll(List.of(c));
            args.addAll(List.of(path("in.qcow2"), path("out.qcow2")));
            Qemu.Result r = Qemu.qcow4j(args.toArray(String[]::new));
            String what = String.join(" ", c) + ": " + r.err();
            assertEquals(1, r.exit(), what);
            assertTrue(r.err().startsWith("qcow4j: "), what);
            assertFalse(r.err().contains("\tat ") || r.err().contains("Exception"), what);
            assertTrue(r.err().lines().count() <= 2, what); // usage errors add one "Try ... --help" line
            try (Stream<Path> files = Files.list(dir)) {
                assertEquals(List.of("in.qcow2"), files.map(p -> p.getFileName().toString()).sorted().toList(), what);
            }
        }
        Qemu.Result r = Qemu.qcow4j("convert", "-O", "qcow2", path("in.qcow2"), "/nonexistent-dir/out.qcow2");
        assertEquals("qcow4j: /nonexistent-dir/out.qcow2: cannot create: no such directory\n", r.err());
    }

    /** convert refuses what create refuses, in qemu-img's words for a conversion ("error while converting qcow2"). */
    @Test
    void refusesWhatTheQcow2DriverRefusesAsQemuImg() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", path("in.qcow2"), "1M");
        for (String opts : CreateTest.DRIVER_REFUSALS) {
            Qemu.Result want = Qemu.run(dir, "qemu-img", "convert", "-O", "qcow2", "-o", opts, path("in.qcow2"),
                    path("out.qcow2"));
            Qemu.Result got = Qemu.qcow4j("convert", "-O", "qcow2", "-o", opts, path("in.qcow2"), path("out.qcow2"));
            assertEquals(1, want.exit(), opts);
            assertEquals(1, got.exit(), opts);
            assertEquals(want.err().replace("qemu-img: ", "qcow4j: "), got.err(), opts);
            assertFalse(Files.exists(dir.resolve("out.qcow2")), opts);
        }
    }

    @Test
    void refusesABackingFileForSeveralInputsAsQemuImg() throws IOException {
        for (String name : new String[] {"a.qcow2", "b.qcow2", "base.qcow2"}) {
            Qemu.img(dir, "create", "-q", "-f", "qcow2", path(name), "1M");
        }
        for (List<String> backing : List.<List<String>>of(List.of("-B", path("base.qcow2")),
                List.of("-o", "backing_file=" + path("base.qcow2") + ",backing_fmt=qcow2"))) {
            List<String> args = Qemu.list("convert", "-O", "qcow2");
            args.addAll(backing);
            args.addAll(List.of(path("a.qcow2"), path("b.qcow2"), path("out.qcow2")));
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", args.toArray(String[]::new)));
            Qemu.Result got = Qemu.qcow4j(args.toArray(String[]::new));
            assertEquals(1, want.exit());
            assertEquals(1, got.exit());
            assertEquals(want.err().replace("qemu-img: ", "qcow4j: "), got.err());
            assertFalse(Files.exists(dir.resolve("out.qcow2")));
        }
    }

    @Test
    void refusesOutputFormatsItCannotWriteYet() {
        Qemu.Result r = Qemu.qcow4j("convert", "-O", "vmdk", path("in"), path("out"));
        assertEquals(1, r.exit());
        assertTrue(r.err().contains("output format 'vmdk'"), r.err());
        assertFalse(Files.exists(dir.resolve("out")));
    }
}
