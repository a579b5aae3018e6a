package org.qcow4j.cli;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Encrypted images made by qemu-img and written by qemu-io for the tests, with the secret {@link #PASS} as
 * {@code sec0}, and the command-line words that name them.
 */
final class Encrypted {
    private Encrypted() {
    }

    static final String PASS = "123456";
    static final String OBJECT = "secret,id=sec0,data=" + PASS;

    /** The cipher sets the tests cover: QEMU's default and the common alternatives, over sha1, sha256 and sha512. */
    static final List<String> CIPHERS = List.of(
            "",
            "encrypt.cipher-alg=aes-128,encrypt.cipher-mode=xts,encrypt.hash-alg=sha1",
            "encrypt.cipher-alg=aes-256,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256",
            "encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain64,encrypt.hash-alg=sha512",
            "encrypt.cipher-alg=aes-192,encrypt.cipher-mode=xts,encrypt.ivgen-alg=plain,encrypt.hash-alg=sha256");

    /** {@code --image-opts} of {@code image} with the secret. */
    static String opts(Path image) {
        return "driver=qcow2,file.filename=" + image + ",encrypt.key-secret=sec0";
    }

    /**
     * {@code qemu-img create} of a LUKS image with {@code options} (may be empty) and an iteration time of 10 ms, or a
     * copy of the one an earlier call with the same arguments made in this JVM. QEMU's
     * PBKDF calibration measures the thread's CPU time and gives up on a busy machine when it measures none ("Unable
     * to get accurate CPU usage"); that is the machine, not the test: it tries again.
     */
    static void create(Path dir, Path image, String options, String size, String... extra) {
        List<String> key = new ArrayList<>(List.of(options, size));
        key.addAll(List.of(extra));
        Path template = MADE.get(key);
        try {
            if (template != null) {
                java.nio.file.Files.copy(template, image, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                return;
            }
            make(dir, image, options, size, extra);
            Path copy = java.nio.file.Files.createTempFile(TEMPLATES, "luks", ".qcow2");
            copy.toFile().deleteOnExit();
            java.nio.file.Files.copy(image, copy, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            MADE.putIfAbsent(key, copy);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /**
     * The images {@link #create} made in this JVM, by options, size and extra arguments: later calls copy them (each
     * test class still gets its own file), as QEMU's PBKDF calibration costs every create a second or more of CPU.
     */
    private static final java.util.Map<List<String>, Path> MADE = new java.util.concurrent.ConcurrentHashMap<>();
    private static final Path TEMPLATES;

    static {
        try {
            TEMPLATES = java.nio.file.Files.createTempDirectory("qcow4j-luks-templates");
            TEMPLATES.toFile().deleteOnExit();
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static void make(Path dir, Path image, String options, String size, String... extra) {
        String o = "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10" + (options.isEmpty() ? "" : "," + options);
        List<String> cmd = new ArrayList<>(List.of("qemu-img", "create", "-q", "-f", "qcow2", "--object", OBJECT, "-o", o));
        cmd.addAll(List.of(extra));
        cmd.add(image.toString());
        cmd.add(size);
        Qemu.Result r = null;
        for (int attempt = 0; attempt < 5; attempt++) {
            r = Qemu.run(dir, cmd.toArray(String[]::new));
            if (!r.err().contains("Unable to get accurate CPU usage")) {
                break;
            }
        }
        r.ok();
    }

    /** Runs qemu-io commands on the encrypted {@code image}; they must succeed. */
    static void io(Path dir, Path image, String... commands) {
        List<String> cmd = new ArrayList<>(List.of("qemu-io", "--object", OBJECT, "--image-opts", opts(image)));
        for (String c : commands) {
            cmd.add("-c");
            cmd.add(c);
        }
        Qemu.Result r = Qemu.run(dir, cmd.toArray(String[]::new)).ok();
        if (r.out().contains("error") || r.err().contains("error") || r.out().contains("failed")) {
            throw new AssertionError("qemu-io " + image + ": " + r.out() + r.err());
        }
    }

    /** Writes a mix of data, zeros and a compressed cluster with qemu-io. */
    static void fill(Path dir, Path image) {
        io(dir, image, "write -P 0x5a 1000 70000", "write -P 0x33 1M 192k", "write -c -P 0x11 2M 64k",
                "write -z 1088k 64k", "write -P 0x77 3583k 1k", "discard 1M 64k");
    }
}
