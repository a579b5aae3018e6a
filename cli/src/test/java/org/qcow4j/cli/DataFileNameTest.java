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
 * External data file names, against qemu-img and qemu-io 7.2 (Debian's, with the fix of CVE-2024-4467): a relative
 * name is created and opened from the working directory, not from the image's directory as a backing file name is,
 * and a header's name is a file name as it is; qemu-img info does not open the data file, so a missing one does not
 * stop it; qcow2's {@code data-file.filename} option opens another file than the header names (iotest 061).
 *
 * <p>QEMU's tools run in the JVM's working directory, where the in-process qcow4j runs, so that a relative name means
 * the same file to both; the files themselves are under a temporary directory, named relative to that one.
 */
class DataFileNameTest {
    /** The working directory of both tools. */
    private static final Path CWD = Path.of("").toAbsolutePath();

    @TempDir
    Path tmp;

    /**
     * The directory images with relative data file names go in: deeper below the temporary directory than the working
     * directory is below the root, so that the relative name, taken from the image's directory, names no file.
     */
    private Path imageDir(String name) throws IOException {
        return Files.createDirectories(tmp.resolve(name).resolve("d/".repeat(CWD.getNameCount())));
    }

    /** {@code file}'s name relative to the working directory. */
    private static String relative(Path file) {
        return CWD.relativize(file.toAbsolutePath()).toString();
    }

    private static Qemu.Result qemu(String... cmd) {
        return Qemu.run(CWD, cmd);
    }

    /** A qemu-io result without its timing figures (the rest of the line after "ops; "). */
    private static Qemu.Result untimed(Qemu.Result r) {
        return new Qemu.Result(r.exit(), r.out().replaceAll("(?m)(ops; ).*$", "$1X"), r.err());
    }

    /** qemu-img info's output without the disk size (the files' allocation may differ). */
    private static Qemu.Result withoutDiskSize(Qemu.Result r) {
        return new Qemu.Result(r.exit(), r.out().replaceAll("(?m)^disk size: .*\n", "")
                .replaceAll("(?m)^ *\"actual-size\": .*\n", ""), r.err());
    }

    @Test
    void createMakesARelativeDataFileInTheWorkingDirectory() throws IOException {
        Path data = Files.createDirectories(tmp.resolve("data")).resolve("d.raw");
        Path theirs = imageDir("qemu").resolve("img.qcow2");
        Path ours = imageDir("ours").resolve("img.qcow2");
        String name = relative(data);
        Qemu.Result want = qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file=" + name + ",data_file_raw=on",
                theirs.toString(), "1M");
        assertEquals(0, want.exit(), want.err());
        assertTrue(Files.isRegularFile(data), "qemu-img made the data file from its working directory");
        Path theirData = Files.move(data, tmp.resolve("qemu/d.raw"));
        Qemu.Result got = Qemu.asQemuImg("create", "-q", "-f", "qcow2", "-o", "data_file=" + name + ",data_file_raw=on",
                ours.toString(), "1M");
        assertEquals(want, got);
        assertTrue(Files.isRegularFile(data), "qcow4j made the data file from its working directory");
        assertEquals(-1, Files.mismatch(theirs, ours), "the image files (the header names the data file as given)");
        assertEquals(-1, Files.mismatch(theirData, data), "the data files");
        assertEquals(1, countFiles(tmp.resolve("ours")), "nothing made beside the image");
    }

    private static long countFiles(Path dir) throws IOException {
        try (var files = Files.walk(dir)) {
            return files.filter(Files::isRegularFile).count();
        }
    }

    @Test
    void aRelativeNameInTheHeaderIsOpenedFromTheWorkingDirectory() throws IOException {
        Path data = tmp.resolve("d.raw");
        Path image = imageDir("sub").resolve("img.qcow2");
        Qemu.img(CWD, "create", "-q", "-f", "qcow2", "-o", "data_file=" + relative(data), image.toString(), "1M");
        Qemu.io(CWD, image.toString(), "write -P 7 64k 64k", "write -P 9 500k 3k");
        Path want = tmp.resolve("want.raw");
        Path got = tmp.resolve("got.raw");
        Qemu.img(CWD, "convert", "-O", "raw", image.toString(), want.toString());
        Qemu.asQemuImg("convert", "-O", "raw", image.toString(), got.toString()).ok();
        assertEquals(-1, Files.mismatch(want, got));
        assertEquals(untimed(qemu("qemu-io", "-c", "read -P 9 500k 3k", image.toString())),
                untimed(Qemu.asQemuIo("-c", "read -P 9 500k 3k", image.toString())));
        // and written through: the data file named from the working directory takes the guest data
        Qemu.asQemuIo("-c", "write -P 5 0 4k", image.toString()).ok();
        assertEquals(5, Files.readAllBytes(data)[4095]);
    }

    /**
     * The case of the report: the data file lies beside the image under the name the header gives, and QEMU looks
     * for it in the working directory, where it is not. Opening fails (in qemu-io, qemu-img check, map, convert) with
     * QEMU's message; qemu-img info shows the image.
     */
    @Test
    void aDataFileBesideTheImageIsNotFoundFromElsewhereButInfoShowsTheImage() throws IOException {
        Path sub = Files.createDirectories(tmp.resolve("sub"));
        String name = "q4j-datafile-" + Long.toHexString(new Random().nextLong() >>> 1) + ".raw";
        assertFalse(Files.exists(CWD.resolve(name)));
        Path image = sub.resolve("img.qcow2");
        Qemu.img(sub, "create", "-q", "-f", "qcow2", "-o", "data_file=" + name, image.toString(), "1M");
        Qemu.io(sub, image.toString(), "write -P 7 0 64k");
        assertTrue(Files.isRegularFile(sub.resolve(name)));
        String img = image.toString();

        Qemu.Result want = qemu("qemu-io", "-c", "read 0 512", img);
        assertEquals(1, want.exit(), want.out() + want.err());
        assertEquals("qemu-io: can't open device " + img + ": Could not open '" + name + "': No such file or directory\n",
                want.err());
        assertEquals(want, Qemu.asQemuIo("-c", "read 0 512", img));
        for (String[] cmd : new String[][] {{"check", img}, {"map", img}, {"convert", "-O", "raw", img,
            tmp.resolve("out.raw").toString()}, {"compare", img, img}, {"snapshot", "-l", img}}) {
            Qemu.Result w = qemu(Qemu.concat("qemu-img", cmd));
            assertTrue(w.exit() != 0 && w.err().contains("Could not open '" + name + "'"), w.err());
            assertEquals(w, Qemu.asQemuImg(cmd), String.join(" ", cmd));
        }

        for (String output : new String[] {"--output=human", "--output=json"}) {
            Qemu.Result w = withoutDiskSize(qemu("qemu-img", "info", output, img));
            assertEquals(0, w.exit(), w.err());
            assertTrue(w.out().contains(name), w.out());
            assertEquals(w, withoutDiskSize(Qemu.asQemuImg("info", output, img)), output);
        }
        // info does not open the data file at all, so a missing one is no different from one found
        Qemu.Result w = withoutDiskSize(Qemu.run(sub, "qemu-img", "info", "--backing-chain", "img.qcow2"));
        assertEquals(0, w.exit(), w.err());
        Qemu.Result g = withoutDiskSize(Qemu.asQemuImg("info", "--backing-chain", img));
        assertEquals(w.out().replace("image: img.qcow2", "image: " + img), g.out());
    }

    /** qcow2's data-file.filename option, as iotest 061 uses it: another file than the header's, or the only one. */
    @Test
    void theDataFileFilenameOptionOpensTheFileItNames() throws IOException {
        Path data = tmp.resolve("t.data");
        Path theirs = tmp.resolve("theirs.qcow2");
        Path ours = tmp.resolve("ours.qcow2");
        Qemu.img(CWD, "create", "-q", "-f", "qcow2", "-o", "data_file=" + data, theirs.toString(), "64M");
        Qemu.io(CWD, theirs.toString(), "write -P 3 0 64k");
        Qemu.img(CWD, "amend", "-o", "data_file=foo", theirs.toString());
        Files.copy(theirs, ours);
        assertIoAlike("read -P 3 0 4k", ours, theirs, data, false);
        assertIoAlike("read -P 3 0 4k", ours, theirs, data, true);
        assertInfoAlike(ours, theirs, data);

        // the header's name removed (an image with the data file bit and no name): only the option opens it
        String opts = "data-file.filename=" + data + ",file.filename=";
        Qemu.Result w = qemu("qemu-img", "amend", "-o", "data_file=", "--image-opts", opts + theirs);
        assertEquals(0, w.exit(), w.err());
        assertEquals(w, Qemu.asQemuImg("amend", "-o", "data_file=", "--image-opts", opts + ours));
        assertEquals(-1, Files.mismatch(theirs, ours), "the headers after amend");
        Qemu.Result refused = qemu("qemu-io", "-c", "read 0 4k", theirs.toString());
        assertEquals("qemu-io: can't open device " + theirs + ": 'data-file' is required for this image\n", refused.err());
        assertIoAlike("read -P 3 0 4k", ours, theirs, data, false);
        assertIoAlike("read -P 3 0 4k", ours, theirs, data, true);
        assertInfoAlike(ours, theirs, data);
        Qemu.Result check = qemu("qemu-img", "check", theirs.toString());
        assertEquals(check.err().replace(theirs.toString(), ours.toString()), Qemu.asQemuImg("check", ours.toString()).err());

        // on an image without a data file the option is refused
        Path plain = tmp.resolve("plain.qcow2");
        Qemu.img(CWD, "create", "-q", "-f", "qcow2", plain.toString(), "1M");
        String open = "open -o data-file.filename=" + data + ",file.filename=" + plain;
        Qemu.Result wp = qemu("qemu-io", "-c", open);
        assertTrue((wp.out() + wp.err()).contains("'data-file' can only be set for images with an external data file"),
                wp.out() + wp.err());
        assertEquals(wp, Qemu.asQemuIo("-c", open));
        // (after the file it names is opened: a missing one is the error then)
        String missing = "open -o data-file.filename=" + tmp.resolve("missing") + ",file.filename=" + plain;
        Qemu.Result wm = qemu("qemu-io", "-c", missing);
        assertTrue(wm.err().contains("Could not open '" + tmp.resolve("missing") + "'"), wm.err());
        assertEquals(wm, Qemu.asQemuIo("-c", missing));
        // info drops the data-file options unlooked at, whatever they say
        String opts2 = "data-file.driver=raw,data-file.file.filename=" + tmp.resolve("missing") + ",data-file.locking=off,"
                + "file.filename=" + plain;
        Qemu.Result wi = withoutDiskSize(qemu("qemu-img", "info", "--image-opts", opts2));
        assertEquals(0, wi.exit(), wi.err());
        assertEquals(wi, withoutDiskSize(Qemu.asQemuImg("info", "--image-opts", opts2)));
    }

    /** qemu-io on {@code theirs} and qcow4j's on {@code ours}, plainly or with the data-file.filename option. */
    private static void assertIoAlike(String command, Path ours, Path theirs, Path data, boolean option) {
        Qemu.Result w = option ? qemu("qemu-io", "-c", "open -o data-file.filename=" + data + ",file.filename=" + theirs,
                "-c", command) : qemu("qemu-io", "-c", command, theirs.toString());
        Qemu.Result g = option ? Qemu.asQemuIo("-c", "open -o data-file.filename=" + data + ",file.filename=" + ours,
                "-c", command) : Qemu.asQemuIo("-c", command, ours.toString());
        assertEquals(untimed(w).out(), untimed(g).out(), command);
        assertEquals(w.err().replace(theirs.toString(), ours.toString()), g.err(), command);
        assertEquals(w.exit(), g.exit(), command);
    }

    private static void assertInfoAlike(Path ours, Path theirs, Path data) {
        for (String output : new String[] {"--output=human", "--output=json"}) {
            Qemu.Result w = withoutDiskSize(qemu("qemu-img", "info", output, "--image-opts",
                    "data-file.filename=" + data + ",file.filename=" + theirs));
            Qemu.Result g = withoutDiskSize(Qemu.asQemuImg("info", output, "--image-opts",
                    "data-file.filename=" + data + ",file.filename=" + ours));
            assertEquals(0, w.exit(), w.err());
            assertEquals(w.out().replace(theirs.toString(), ours.toString()), g.out(), output);
            Qemu.Result wp = withoutDiskSize(qemu("qemu-img", "info", output, theirs.toString()));
            Qemu.Result gp = withoutDiskSize(Qemu.asQemuImg("info", output, ours.toString()));
            assertEquals(wp.out().replace(theirs.toString(), ours.toString()), gp.out(), output);
            assertEquals(wp.exit(), gp.exit(), output);
        }
    }

    @Test
    void convertAndAmendTakeARelativeNameFromTheWorkingDirectory() throws IOException {
        Path src = tmp.resolve("src.raw");
        byte[] bytes = new byte[1 << 20];
        new Random(7).nextBytes(bytes);
        java.util.Arrays.fill(bytes, 300_000, 700_000, (byte) 0);
        Files.write(src, bytes);
        Path data = Files.createDirectories(tmp.resolve("data")).resolve("c.raw");
        Path out = imageDir("sub").resolve("out.qcow2");
        Qemu.asQemuImg("convert", "-O", "qcow2", "-o", "data_file=" + relative(data), src.toString(), out.toString()).ok();
        assertTrue(Files.isRegularFile(data), "the data file made from the working directory");
        assertEquals(2, countFiles(tmp.resolve("sub")) + countFiles(tmp.resolve("data")));
        Path back = tmp.resolve("back.raw");
        Qemu.img(CWD, "convert", "-O", "raw", out.toString(), back.toString());
        assertEquals(-1, Files.mismatch(src, back), "qemu-img reads our image through the data file it names");

        // amend writes the name as given; QEMU and qcow4j then open it from the working directory
        Path moved = Files.move(data, tmp.resolve("moved.raw"));
        Path copy = out.resolveSibling("copy.qcow2");
        Files.copy(out, copy);
        Qemu.Result w = qemu("qemu-img", "amend", "-o", "data_file=" + relative(moved), "--image-opts",
                "data-file.filename=" + moved + ",file.filename=" + out);
        assertEquals(0, w.exit(), w.err());
        assertEquals(w, Qemu.asQemuImg("amend", "-o", "data_file=" + relative(moved), "--image-opts",
                "data-file.filename=" + moved + ",file.filename=" + copy));
        assertEquals(-1, Files.mismatch(out, copy), "the headers after amend");
        Files.delete(back);
        Qemu.asQemuImg("convert", "-O", "raw", copy.toString(), back.toString()).ok();
        assertEquals(-1, Files.mismatch(src, back));
    }
}
