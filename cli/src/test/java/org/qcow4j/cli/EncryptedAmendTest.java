package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code amend -o encrypt.*} (LUKS key slots, iotest 293's operations): keys we add open the image in qemu-img and
 * qemu-io, keys qemu-img adds open it in ours, keys either erases stop opening it in both; every refusal is qemu-img's,
 * word for word and exit code, on the same image.
 */
class EncryptedAmendTest {
    @TempDir
    Path dir;
    private Path img;

    private static final String[] SECRETS = {"--object", Encrypted.OBJECT, "--object", "secret,id=sec1,data=hunter1",
            "--object", "secret,id=sec2,data=hunter2", "--object", "secret,id=sec3,data=hunter3"};

    @BeforeEach
    void image() {
        img = dir.resolve("t.qcow2");
        Encrypted.create(dir, img, "", "1M");
        Encrypted.io(dir, img, "write -P 0x5c 0 64k");
    }

    private String opts(String secretId) {
        return "driver=qcow2,file.filename=" + img + ",encrypt.key-secret=" + secretId;
    }

    private String[] amend(String secretId, String o, String... extra) {
        List<String> a = new ArrayList<>(List.of("amend"));
        a.addAll(List.of(SECRETS));
        a.addAll(List.of("--image-opts", opts(secretId), "-o", o));
        a.addAll(List.of(extra));
        return a.toArray(String[]::new);
    }

    private Qemu.Result theirs(String secretId, String o, String... extra) {
        return Qemu.run(dir, Qemu.concat("qemu-img", amend(secretId, o, extra)));
    }

    private Qemu.Result ours(String secretId, String o, String... extra) {
        return Qemu.asQemuImg(amend(secretId, o, extra));
    }

    /** Whether qemu-io (real) reads the data with the secret {@code id}. */
    private boolean qemuOpens(String id) {
        List<String> cmd = new ArrayList<>(List.of("qemu-io"));
        cmd.addAll(List.of(SECRETS));
        cmd.addAll(List.of("--image-opts", opts(id), "-c", "read -P 0x5c 0 64k"));
        Qemu.Result r = Qemu.run(dir, cmd.toArray(String[]::new));
        if (r.out().contains("read 65536/65536")) {
            assertTrue(!r.out().contains("Pattern verification failed"), r.out());
            return true;
        }
        assertTrue(r.out().contains("Invalid password, cannot unlock any keyslot")
                || r.err().contains("Invalid password, cannot unlock any keyslot"), r.out() + r.err());
        return false;
    }

    /** Whether qcow4j's qemu-io reads the data with the secret {@code id}. */
    private boolean weOpen(String id) {
        List<String> cmd = new ArrayList<>(List.of(SECRETS));
        cmd.addAll(List.of("--image-opts", opts(id), "-c", "read -P 0x5c 0 64k"));
        Qemu.Result r = Qemu.asQemuIo(cmd.toArray(String[]::new));
        if (r.out().contains("read 65536/65536")) {
            assertTrue(!r.out().contains("Pattern verification failed"), r.out());
            return true;
        }
        assertTrue((r.out() + r.err()).contains("Invalid password, cannot unlock any keyslot"), r.out() + r.err());
        return false;
    }

    private void opensWith(String... ids) {
        for (String id : new String[] {"sec0", "sec1", "sec2", "sec3"}) {
            boolean expected = List.of(ids).contains(id);
            assertEquals(expected, qemuOpens(id), "qemu-io with " + id);
            assertEquals(expected, weOpen(id), "qcow4j's qemu-io with " + id);
        }
    }

    /** The active flags of the key slots, as qemu-img info shows them. */
    private String activeSlots() {
        String json = Qemu.img(dir, "info", "--output=json", img.toString()).out();
        Matcher m = Pattern.compile("\"active\": (true|false)").matcher(json);
        StringBuilder sb = new StringBuilder();
        while (m.find()) {
            sb.append(m.group(1).equals("true") ? '1' : '0');
        }
        return sb.toString();
    }

    @Test
    void keysAddedAndErasedByEitherToolWorkInBoth() {
        ours("sec0", "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10,encrypt.keyslot=3").ok();
        assertEquals("10010000", activeSlots());
        opensWith("sec0", "sec1");
        theirs("sec1", "encrypt.state=active,encrypt.new-secret=sec2,encrypt.iter-time=10").ok(); // slot 1
        assertEquals("11010000", activeSlots());
        ours("sec2", "encrypt.state=active,encrypt.new-secret=sec3,encrypt.iter-time=10").ok(); // slot 2
        assertEquals("11110000", activeSlots());
        opensWith("sec0", "sec1", "sec2", "sec3");
        ours("sec1", "encrypt.state=inactive,encrypt.old-secret=sec0").ok();
        theirs("sec1", "encrypt.state=inactive,encrypt.keyslot=3").ok();
        assertEquals("01100000", activeSlots());
        opensWith("sec2", "sec3");
        ours("sec2", "encrypt.state=inactive,encrypt.keyslot=1").ok();
        opensWith("sec3");
        // --force: overwrite the active slot with another key, then erase the only one
        ours("sec3", "encrypt.state=active,encrypt.new-secret=sec0,encrypt.iter-time=10,encrypt.keyslot=2", "--force").ok();
        opensWith("sec0");
        assertEquals(0, Qemu.run(dir, "qemu-img", "check", "--object", Encrypted.OBJECT, "--image-opts",
                opts("sec0")).exit());
        ours("sec0", "encrypt.state=inactive,encrypt.keyslot=2", "--force").ok();
        assertEquals("00000000", activeSlots());
        opensWith();
    }

    @Test
    void refusalsAreQemuImgs() throws IOException {
        Path copy = dir.resolve("copy.qcow2");
        Files.copy(img, copy);
        String[] cases = {"encrypt.new-secret=sec1", "encrypt.state=foo,encrypt.new-secret=sec1", "encrypt.state=active",
                "encrypt.state=active,encrypt.new-secret=sec1,encrypt.keyslot=8",
                "encrypt.state=active,encrypt.new-secret=sec1,encrypt.keyslot=-1",
                "encrypt.state=active,encrypt.new-secret=sec1,encrypt.keyslot=x",
                "encrypt.state=active,encrypt.new-secret=sec1,encrypt.old-secret=sec0",
                "encrypt.state=active,encrypt.new-secret=sec9,encrypt.iter-time=10",
                "encrypt.state=active,encrypt.new-secret=sec1,encrypt.keyslot=0",
                "encrypt.state=inactive", "encrypt.state=inactive,encrypt.keyslot=9",
                "encrypt.state=inactive,encrypt.keyslot=-2", "encrypt.state=inactive,encrypt.new-secret=sec1",
                "encrypt.state=inactive,encrypt.iter-time=10", "encrypt.state=inactive,encrypt.keyslot=3",
                "encrypt.state=inactive,encrypt.keyslot=0", "encrypt.state=inactive,encrypt.keyslot=3,encrypt.old-secret=sec0",
                "encrypt.state=inactive,encrypt.keyslot=0,encrypt.old-secret=sec1",
                "encrypt.state=inactive,encrypt.old-secret=sec0", "encrypt.state=inactive,encrypt.old-secret=sec1",
                "encrypt.state=inactive,encrypt.old-secret=sec9", "encrypt.format=luks", "encrypt.key-secret=sec0",
                "encrypt.state=inactive,encrypt.old-secret=sec1,compat=v4"};
        for (String o : cases) {
            Qemu.Result theirs = theirs("sec0", o);
            Files.copy(copy, img, StandardCopyOption.REPLACE_EXISTING);
            Qemu.Result ours = ours("sec0", o);
            Files.copy(copy, img, StandardCopyOption.REPLACE_EXISTING);
            assertEquals(theirs, ours, o);
            assertEquals(1, ours.exit(), o);
        }
        // all eight slots in use (filled by us)
        for (int i = 0; i < 7; i++) {
            ours("sec0", "encrypt.state=active,encrypt.new-secret=sec" + (1 + i % 3) + ",encrypt.iter-time=10").ok();
        }
        assertEquals("11111111", activeSlots());
        Files.copy(img, copy, StandardCopyOption.REPLACE_EXISTING);
        String full = "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10";
        Qemu.Result theirs = theirs("sec2", full);
        Files.copy(copy, img, StandardCopyOption.REPLACE_EXISTING);
        assertEquals(theirs, ours("sec2", full));
        // erasing all slots of one secret when others hold another: both tools leave the same slots
        String erase = "encrypt.state=inactive,encrypt.old-secret=sec1";
        theirs("sec0", erase).ok();
        String afterTheirs = activeSlots();
        Files.copy(copy, img, StandardCopyOption.REPLACE_EXISTING);
        ours("sec0", erase).ok();
        assertEquals(afterTheirs, activeSlots());
        assertEquals("10110110", afterTheirs);
        // opened without its secret, with a wrong one, with one that does not exist
        for (String[] open : new String[][] {{img.toString()}, {"--image-opts", opts("sec1")}, // sec1: erased just above
                {"--image-opts", opts("sec7")}}) {
            List<String> a = new ArrayList<>(List.of("amend"));
            a.addAll(List.of(SECRETS));
            a.addAll(List.of("-o", "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10"));
            a.addAll(List.of(open));
            String[] args = a.toArray(String[]::new);
            assertEquals(Qemu.run(dir, Qemu.concat("qemu-img", args)), Qemu.asQemuImg(args), open[open.length - 1]);
        }
        // an image without encryption
        Path plain = dir.resolve("plain.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", plain.toString(), "1M");
        String[] args = Qemu.concat("amend", Qemu.concat("--object", Qemu.concat(Encrypted.OBJECT, "-o",
                "encrypt.state=active,encrypt.new-secret=sec0", plain.toString())));
        assertEquals(Qemu.run(dir, Qemu.concat("qemu-img", args)), Qemu.asQemuImg(args));
    }
}
