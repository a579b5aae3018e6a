package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * qcow4j invoked as qemu-img or qemu-io (through a link of that name) acts as that program: the same usage
 * messages, prefixes, help and exit codes as QEMU 7.2's tools, compared here with the real ones.
 */
class DropInTest {
    @TempDir
    static Path dir;
    static String image;

    @BeforeAll
    static void image() throws IOException {
        image = dir.resolve("a.qcow2").toString();
        Qemu.img(dir, "create", "-f", "qcow2", image, "1M");
        // an overlay over an overlay whose backing file is gone: two "Could not open backing file: " in QEMU's message
        Qemu.img(dir, "create", "-f", "qcow2", dir.resolve("gone.qcow2").toString(), "1M");
        Qemu.img(dir, "create", "-f", "qcow2", "-b", "gone.qcow2", "-F", "qcow2", dir.resolve("mid.qcow2").toString());
        Qemu.img(dir, "create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", dir.resolve("orphan.qcow2").toString());
        Files.delete(dir.resolve("gone.qcow2"));
        // a virtual size whose L1 table would pass INT_MAX entries: QEMU's "Image is too big"
        Path big = dir.resolve("big.qcow2");
        Qemu.img(dir, "create", "-f", "qcow2", big.toString(), "4G");
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(big,
                java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(java.nio.ByteBuffer.allocate(8).putLong(0, 1L << 60), 24);
        }
        // a file whose name holds a colon, as a backing file through QEMU's file: protocol
        Qemu.img(dir, "create", "-f", "qcow2", "file:" + dir.resolve("c:1.qcow2"), "1M");
        Qemu.img(dir, "create", "-f", "qcow2", "-F", "qcow2", "-b", "file:" + dir.resolve("c:1.qcow2"),
                dir.resolve("colon.qcow2").toString());
        // incompatible feature bits 61-63, unknown to both: QEMU's "Unsupported qcow2 feature(s)" sentence
        Path feat = dir.resolve("feat.qcow2");
        Qemu.img(dir, "create", "-f", "qcow2", feat.toString(), "1M");
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(feat,
                java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(java.nio.ByteBuffer.allocate(8).putLong(0, 0xe000000000000000L), 72);
        }
    }

    /** A relative name that would read as a protocol name is shown as QEMU shows it (qemu-img info file:a:3). */
    @Test
    void namesWithAColonAreShownAsQemuShowsThem() {
        assertEquals("./a:3.qcow2", ImageArgs.qemuFilename("a:3.qcow2"));
        assertEquals("./d:1/a.qcow2", ImageArgs.qemuFilename("d:1/a.qcow2"));
        assertEquals("/tmp/a:3.qcow2", ImageArgs.qemuFilename("/tmp/a:3.qcow2"));
        assertEquals("d/a:3.qcow2", ImageArgs.qemuFilename("d/a:3.qcow2"));
        assertEquals("a.qcow2", ImageArgs.qemuFilename("a.qcow2"));
    }

    @Test
    void theProgramIsTheNameInvokedBy() {
        assertEquals(Program.QEMU_IMG, Program.invokedAs("/usr/local/bin/qemu-img"));
        assertEquals(Program.QEMU_IO, Program.invokedAs("qemu-io"));
        assertEquals(Program.QCOW4J, Program.invokedAs("/opt/q/qcow4j"));
        assertEquals(Program.QCOW4J, Program.invokedAs(null));
        assertEquals(Program.QCOW4J, Program.invokedAs("qemu-img-wrapper"));
    }

    /** Each line is one command line (words split at spaces; IMG is the test image). */
    @ParameterizedTest
    @ValueSource(strings = {"", "foo", "-Z", "info", "info -Z IMG", "info --bogus IMG", "info --bogus=3 IMG",
            "info -f", "info --output", "info IMG IMG", "info --output=xml IMG", "info --ou=json IMG",
            "info --backing-chain=1 IMG", "check", "check -r", "check IMG IMG", "map", "map IMG IMG", "create",
            "create -f qcow2", "create DIR/x 1G extra", "convert", "convert IMG", "convert -O", "convert -t foo IMG DIR/y",
            "convert -m 0 IMG DIR/y", "bench", "io IMG", "e2image IMG",
            // create's two steps (options checked before "Formatting", values after) and its size operand
            "create -f qcow2 DIR/x 1Q", "create -f qcow2 DIR/x -- -1k", "create -f qcow2 DIR/x 9E",
            "create -f qcow2 -o size=-1k DIR/x", "create -f qcow2 -o size=99999999999999999999 DIR/x",
            "create -f qcow2 -o compat=0.42 DIR/x 64M", "create -f qcow2 -o preallocation=1234 DIR/x 64M",
            "create -f qcow2 -o compression_type=foo DIR/x 64M", "create -f qcow2 -o cluster_size=3 DIR/x 64M",
            "create -f qcow2 -o compat=0.10,lazy_refcounts=on DIR/x 64M", "create -f qcow2 -o refcount_bits=-1 DIR/x 1M",
            "create -f qcow2 -o foo DIR/x 1M", "create -f qcow2 -o =4k DIR/x 1M", "create -f qcow2 -o ,a=1 DIR/x 1M",
            "create -f qcow2 -o lazy_refcounts=maybe DIR/x 1M", "create -f qcow2 -o refcount_bits=abc DIR/x 1M",
            "create -f qcow2 -o cluster_size=abc DIR/x 1M", "create -f raw -o cluster_size=4k DIR/x 1M",
            "create -f foo DIR/x 1M", "create -f qcow2 DIR/x", "create -f qcow2 -o size=1M DIR/x 2M",
            "create -f qcow2 -b DIR/nonexist DIR/x", "create -f raw -b IMG -F qcow2 DIR/x 1M", "create -f qcow2 -u -b DIR/nonexist DIR/x 1M",
            // formats and files QEMU does not know or cannot find
            "info -f foo IMG", "map -f foo IMG", "convert -O foo IMG DIR/y", "convert -O raw -B IMG IMG DIR/y",
            "convert -O qcow2 -B IMG IMG DIR/y", "convert -O qcow2 -o backing_file=IMG IMG DIR/y",
            // a directory where an image should be: the file driver's refusal, read-only and read-write
            "info DIR", "check DIR", "map DIR", "snapshot -c x DIR", "snapshot -l DIR", "convert -n -O raw IMG DIR",
            "convert -O qcow2 -o foo=1 IMG DIR/y", "info DIR/nonexist", "check DIR/nonexist", "map DIR/nonexist",
            "convert DIR/nonexist DIR/y", "check DIR/orphan.qcow2", "map DIR/orphan.qcow2",
            "info DIR/colon.qcow2", "info --backing-chain --output=json DIR/colon.qcow2", "create -f qcow2 -b a:3 DIR/x",
            "create -f qcow2 -b file:DIR/nonexist DIR/x", "info DIR/feat.qcow2", "check DIR/feat.qcow2",
            "info DIR/big.qcow2", "check DIR/big.qcow2", "map DIR/big.qcow2",
            // --image-opts and --object, as qemu-img reads them
            "info --image-opts driver=qcow2,file.filename=IMG", "map --output=json --image-opts IMG",
            "check --image-opts driver=qcow2,file.driver=file,file.filename=IMG",
            "check --output=json --image-opts driver=qcow2,file.filename=IMG",
            "info --image-opts -f qcow2 IMG", "info --image-opts driver=qcow2,file.filename=DIR/nonexist",
            "info --image-opts driver=qcow2,file.filename=IMG,foo=bar", "info --image-opts driver=foo,file.filename=IMG",
            "info -U --image-opts driver=qcow2,force-share=off,file.filename=IMG",
            "convert --image-opts driver=qcow2,file.filename=IMG DIR/y",
            "info --object secret,id=s0,data=x IMG", "info --object bogus,id=x IMG", "info --object secret,id=s0 IMG",
            "create -f qcow2 --object secret,id=s0,data=x DIR/x 1M",
            // QEMU's json: pseudo-protocol (single quotes as QEMU's parser takes them; iotest 110)
            "info json:{'driver':'qcow2','file':{'driver':'file','filename':'IMG'}}",
            "map --output=json json:{\"file\":{\"filename\":\"IMG\"}}", "check json:{'file.filename':'IMG'}",
            "info json:{'driver':'qcow2','file':{'driver':'file','filename':'DIR/nonexist'}}", "map DIR/feat.qcow2", "convert DIR/feat.qcow2 DIR/y",
            // cache modes: accepted (reads go through the page cache), wrong ones refused as qemu-img does
            "check -T foo IMG", "check -T none IMG", "convert -T foo IMG DIR/y", "convert -t foo IMG DIR/y",
            "convert -T off -t writeback -O raw IMG DIR/y"})
    void qemuImgSaysWhatQemuImgSays(String line) throws IOException {
        String[] args = words(line);
        Qemu.Result expected = Qemu.run(dir, Qemu.concat("qemu-img", args));
        Files.deleteIfExists(dir.resolve("x"));
        Files.deleteIfExists(dir.resolve("y"));
        Qemu.Result actual = run(Program.QEMU_IMG, args);
        Files.deleteIfExists(dir.resolve("x"));
        Files.deleteIfExists(dir.resolve("y"));
        assertEquals(expected, actual, "qemu-img " + line);
    }

    @ParameterizedTest
    @ValueSource(strings = {"-z", "-pZ", "--bogus=3", "-c", "--cmd", "-r=3", "--read-only=3", "IMG IMG", "-h", "DIR",
            "-r DIR", "-f raw DIR", "-c open~-o~driver=file,filename=DIR", "-c open~-r~-o~driver=file,filename=DIR",
            // the 'file' driver named takes regular files only, checked before our refusal of locking=off (iotest 226)
            "-c open~-r~-o~driver=file,filename=/dev/null", "-c open~-o~driver=file,filename=/dev/null,locking=off",
            "-c open~-o~driver=raw,file.driver=file,file.filename=/dev/null", "-c open~-o~driver=file,filename=DIR,locking=off",
            "-c read~0~1 DIR/feat.qcow2", "-c map json:{'driver':'qcow2','file':{'driver':'file','filename':'IMG'}}"})
    void qemuIoSaysWhatQemuIoSays(String line) {
        String[] args = words(line);
        Qemu.Result expected = Qemu.run(dir, Qemu.concat("qemu-io", args));
        Qemu.Result actual = run(Program.QEMU_IO, args);
        assertEquals(expected, actual, "qemu-io " + line);
    }

    @Test
    void helpAndVersionAreQemusWithQcow4jsVersion() {
        String version = "qcow4j " + System.getProperty("qcow4j.pom.version");
        String qemuImgVersion = "qemu-img version " + Program.QEMU_VERSION + " (" + version + ")\n"
                + "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n";
        assertEquals(new Qemu.Result(0, qemuImgVersion, ""), run(Program.QEMU_IMG, "--version"));
        assertEquals(new Qemu.Result(0, qemuImgVersion.replace("qemu-img", "qemu-io"), ""), run(Program.QEMU_IO, "-V"));
        Qemu.Result help = run(Program.QEMU_IMG, "info", "--help");
        assertEquals(0, help.exit());
        assertTrue(help.out().startsWith(qemuImgVersion + "usage: qemu-img [standard options] command [command options]\n"),
                help.out());
        // qemu-img's help past its version lines, less the commands qcow4j does not have
        String real = Qemu.img(dir, "--help").out();
        String ours = help.out();
        assertEquals(real.substring(real.indexOf("usage:"), real.indexOf("Command syntax:")),
                ours.substring(ours.indexOf("usage:"), ours.indexOf("Command syntax:")));
        for (String command : new String[] {"bench", "check", "convert", "create", "info", "map", "snapshot"}) {
            String syntax = real.lines().filter(l -> l.startsWith("  " + command + " ")).findFirst().orElseThrow();
            assertTrue(ours.contains(syntax + "\n"), syntax);
        }
    }

    @Test
    void messagesOfAFailedCommandCarryTheProgramsName() {
        Qemu.Result r = run(Program.QEMU_IO, "-c", "write 0 512", "-r", image);
        assertEquals("qemu-io: Block node is read-only\n", r.err());
        assertEquals(1, r.exit());
        assertEquals(new Qemu.Result(1, "", "qemu-io: Block node is read-only\n"),
                Qemu.run(dir, "qemu-io", "-c", "write 0 512", "-r", image));
    }

    /** info --backing-chain --image-opts: the options name the first image, its backing files are opened by name. */
    @Test
    void infoOfAChainGivenAsOptionsOpensTheBackingFilesByName() {
        String mid = dir.resolve("mid.qcow2").toString();
        String opts = "driver=qcow2,file.filename=" + mid;
        Qemu.Result want = Qemu.run(dir, "qemu-img", "info", "--backing-chain", "--image-opts", opts);
        assertEquals(want, run(Program.QEMU_IMG, "info", "--backing-chain", "--image-opts", opts));
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", image, "-F", "qcow2", dir.resolve("chain.qcow2").toString());
        String chain = "driver=qcow2,file.filename=" + dir.resolve("chain.qcow2");
        want = Qemu.run(dir, "qemu-img", "info", "--backing-chain", "--image-opts", chain);
        assertEquals(0, want.exit(), want.err());
        assertEquals(want, run(Program.QEMU_IMG, "info", "--backing-chain", "--image-opts", chain));
    }

    /**
     * Header faults as iotest 080 pokes them (OFFSET:HEX, several joined by "+"): qemu-io refuses each with the same
     * line as QEMU's, checked in QEMU's order (a huge header, an extension past its area, the refcount, snapshot and
     * L1 tables, the backing file name).
     */
    @ParameterizedTest
    @ValueSource(strings = {"100:ffffffff", "100:7fffffff",
            "8:ffffffffffffffff+112:12345678+116:7fffffff", "8:0000000000000074+112:12345678+116:7fffffff",
            "112:12345678+116:7fffffff", "56:ffffffff", "56:00020001", "48:1234567890abcdef",
            "48:ffffffffffff0000+56:0000007f", "60:ffffffff", "60:7fffffff", "64:ffffffffffff0000+60:0000ffff",
            "64:1234567890abcdef+60:00000000", "36:ffffffff", "36:7fffffff", "40:7fffffffffff0000+36:0000ffff",
            "40:1234567890abcdef+36:00000001", "8:0000000000001000+16:ffffffff", "56:00000000"})
    void headerFaultsAreRefusedInQemusWords(String pokes) throws IOException {
        Path img = dir.resolve("fault-" + pokes.replace(':', '_').replace('+', '-') + ".qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", img.toString(), "64M");
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(img,
                java.nio.file.StandardOpenOption.WRITE)) {
            for (String poke : pokes.split("\\+")) {
                String[] p = poke.split(":");
                ch.write(java.nio.ByteBuffer.wrap(java.util.HexFormat.of().parseHex(p[1])), Long.parseLong(p[0]));
            }
        }
        Qemu.Result want = Qemu.run(dir, "qemu-io", "-c", "read 0 512", img.toString());
        assertTrue(want.exit() != 0, pokes + ": " + want);
        assertEquals(want, run(Program.QEMU_IO, "-c", "read 0 512", img.toString()), pokes);
    }

    /** The words of a line: split at spaces, then each {@code ~} a space inside a word. */
    private static String[] words(String line) {
        return line.isEmpty() ? new String[0] : java.util.Arrays.stream(line.replace("IMG", image)
                .replace("DIR", dir.toString()).split(" ")).map(w -> w.replace('~', ' ')).toArray(String[]::new);
    }

    private static Qemu.Result run(Program program, String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code;
        try (PrintStream o = new PrintStream(out, true, StandardCharsets.UTF_8);
             PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8)) {
            code = Main.run(program, args, o, e);
        }
        return new Qemu.Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }
}
