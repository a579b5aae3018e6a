package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code measure -O qcow2 -o encrypt.format=luks,...} adds the LUKS header region in whole clusters, as qcow2_measure
 * does (its size from the cipher's key length), and a LUKS image measures by its allocation: the output and exit code
 * are qemu-img's, refusals included.
 */
class EncryptedMeasureTest {
    @TempDir
    Path dir;

    @Test
    void measuresAreQemuImgs() throws Exception {
        Path img = dir.resolve("src.qcow2");
        Encrypted.create(dir, img, "", "64M");
        Encrypted.fill(dir, img);
        String src = Encrypted.opts(img);
        String luks = "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"; // the throw-away create's PBKDF2
        String[][] cases = {
                {"--size", "1G", "-O", "qcow2", "-o", luks},
                {"--output=json", "--size", "1G", "-O", "qcow2", "-o", luks + ",encrypt.cipher-alg=aes-128,cluster_size=4k"},
                {"--size", "100G", "-O", "qcow2", "-o", luks + ",encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,"
                        + "encrypt.ivgen-alg=essiv,cluster_size=2M,extended_l2=on"},
                {"--size", "1G", "-O", "qcow2", "-o", luks + ",preallocation=full,encrypt.cipher-alg=serpent-256"},
                {"-O", "qcow2", "-o", luks, "--image-opts", src},
                {"--output=json", "-O", "qcow2", "--image-opts", src},
                {"--image-opts", src},
                {"--size", "1G", "-O", "qcow2", "-o", "encrypt.format=luks"},
                {"--size", "1G", "-O", "qcow2", "-o", "encrypt.format=luks,encrypt.key-secret=nope"},
                {"--size", "1G", "-O", "qcow2", "-o", luks + ",encrypt.cipher-alg=foo"},
                {"--size", "1G", "-O", "qcow2", "-o", luks + ",encrypt.hash-alg=md4"},
        };
        // qemu-img's runs in parallel: each LUKS measure calibrates PBKDF2 for a second or more (a create thrown away)
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(
                Math.max(1, Runtime.getRuntime().availableProcessors()));
        try {
            List<java.util.concurrent.Future<Qemu.Result>> theirs = new ArrayList<>();
            for (String[] c : cases) {
                String[] a = args(c);
                theirs.add(pool.submit(() -> {
                    Qemu.Result r = Qemu.run(dir, Qemu.concat("qemu-img", a));
                    // QEMU's PBKDF calibration gives up on a busy machine: that is the machine, not the answer
                    for (int attempt = 0; attempt < 5 && r.err().contains("Unable to get accurate CPU usage"); attempt++) {
                        r = Qemu.run(dir, Qemu.concat("qemu-img", a));
                    }
                    return r;
                }));
            }
            for (int i = 0; i < cases.length; i++) {
                assertEquals(theirs.get(i).get(), Qemu.asQemuImg(args(cases[i])), String.join(" ", cases[i]));
            }
        } finally {
            pool.shutdown();
        }
    }

    private static String[] args(String[] c) {
        List<String> args = new ArrayList<>(List.of("measure", "--object", Encrypted.OBJECT));
        args.addAll(List.of(c));
        return args.toArray(String[]::new);
    }
}
