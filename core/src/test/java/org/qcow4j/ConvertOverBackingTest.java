package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.qcow4j.format.Header;
import org.qcow4j.testing.Processes;

/**
 * {@code convert -B}: the new image's backing file may be shorter than the input. Past its end the new image reads
 * zeros (as any overlay reads beyond a shorter backing file), so only the input's data there is written. Judged
 * against {@code qemu-img convert -B} on the same input: the same guest bytes, the same ranges allocated in the
 * new image itself, and {@code qemu-img check} and {@code compare} satisfied.
 */
class ConvertOverBackingTest {
    @TempDir
    Path dir;

    private Processes.Result ok(String... cmd) {
        Processes.Result r = Processes.run(dir, cmd);
        assertEquals(0, r.exit(), () -> String.join(" ", cmd) + ": " + r.out() + r.err());
        return r;
    }

    /** The part of a qemu-img map (human output) the new image holds itself, without host offsets. */
    private String ownRanges(String image) {
        return ok("qemu-img", "map", image).out().lines().skip(1).map(l -> l.split("\\s+"))
                .filter(f -> f[3].equals(image)).map(f -> f[0] + " " + f[1]).collect(Collectors.joining("\n"));
    }

    private void convertWithQcow4j(String input, String base, int version, String output) throws IOException {
        CreateOptions o = new CreateOptions(0, version, 16, 4, Header.COMPRESSION_ZLIB, false, false, null, false,
                CreateOptions.Preallocation.OFF, base, "qcow2");
        try (DiskImage in = Images.open(dir.resolve(input)); DiskImage b = Images.open(dir.resolve(base))) {
            Images.convert(List.of(in), dir.resolve(output), ConvertOptions.qcow2(o).withBacking(b).withThreads(2));
        }
    }

    /** Converts {@code top.qcow2} with both tools and compares everything QEMU can tell about the results. */
    private void assertLikeQemuImg(int version) throws IOException {
        String compat = version == 2 ? "0.10" : "1.1";
        convertWithQcow4j("top.qcow2", "base.qcow2", version, "got.qcow2");
        ok("qemu-img", "convert", "-O", "qcow2", "-B", "base.qcow2", "-o", "compat=" + compat, "-o",
                "backing_fmt=qcow2", "top.qcow2", "want.qcow2");

        String check = ok("qemu-img", "check", "got.qcow2").out(); // exit 0: no corruption, no leak
        assertTrue(check.startsWith("No errors were found on the image.\n"), check);
        assertEquals("Images are identical.\n", ok("qemu-img", "compare", "top.qcow2", "got.qcow2").out());
        ok("qemu-img", "convert", "-O", "raw", "got.qcow2", "got.raw");
        ok("qemu-img", "convert", "-O", "raw", "want.qcow2", "want.raw");
        assertEquals(Files.size(dir.resolve("want.raw")), Files.size(dir.resolve("got.raw")));
        assertEquals(-1L, Files.mismatch(dir.resolve("want.raw"), dir.resolve("got.raw")));
        assertEquals(ownRanges("want.qcow2"), ownRanges("got.qcow2"));
        String info = ok("qemu-img", "info", "got.qcow2").out();
        assertTrue(info.contains("backing file: base.qcow2\n") && info.contains("compat: " + compat + "\n"), info);
    }

    /** iotest 122, "Converting to an overlay larger than its backing file". */
    @ParameterizedTest
    @ValueSource(ints = {2, 3})
    void overlayLargerThanItsBackingFileLikeIotest122(int version) throws IOException {
        ok("qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "256M");
        ok("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", "768M");
        ok("qemu-io", "-c", "write -P 0x11 255M 1M", "base.qcow2");
        ok("qemu-io", "-c", "write -P 0x22 600M 1M", "top.qcow2");
        assertLikeQemuImg(version);
        assertEquals("0x25800000 0x100000", ownRanges("got.qcow2"));
    }

    /** A backing file ending inside a cluster; data across its end, zeros past it, data far past it. */
    @ParameterizedTest
    @ValueSource(ints = {2, 3})
    void backingFileEndingInsideAClusterLikeQemuImg(int version) throws IOException {
        long baseSize = (1 << 20) + 1536;
        ok("qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", Long.toString(baseSize));
        ok("qemu-io", "-c", "write -P 0x11 0 " + baseSize, "base.qcow2");
        ok("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", "4M");
        ok("qemu-io", "-c", "write -z 64k 64k", "-c", "write -P 0x33 960k 128k", "-c", "write -z 2M 64k",
                "-c", "write -P 0x44 3M 4k", "top.qcow2");
        assertLikeQemuImg(version);
    }

    @Test
    void concatenatingOntoABackingFileIsRefusedAsQemuImgRefusesIt() throws IOException {
        ok("qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "1M");
        ok("qemu-img", "create", "-q", "-f", "qcow2", "a.qcow2", "1M");
        ok("qemu-img", "create", "-q", "-f", "qcow2", "b.qcow2", "1M");
        String msg = "Having a backing file for the target makes no sense when concatenating multiple input images";
        assertTrue(Processes.run(dir, "qemu-img", "convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2",
                "a.qcow2", "b.qcow2", "want.qcow2").err().contains(msg));
        CreateOptions o = CreateOptions.defaults(0).withBacking("base.qcow2", "qcow2");
        try (DiskImage a = Images.open(dir.resolve("a.qcow2")); DiskImage b = Images.open(dir.resolve("b.qcow2"));
             DiskImage base = Images.open(dir.resolve("base.qcow2"))) {
            QcowException e = assertThrows(QcowException.class, () -> Images.convert(List.of(a, b),
                    dir.resolve("got.qcow2"), ConvertOptions.qcow2(o).withBacking(base)));
            assertTrue(e.getMessage().endsWith(msg), e.getMessage());
        }
        assertFalse(Files.exists(dir.resolve("got.qcow2")));
    }
}
