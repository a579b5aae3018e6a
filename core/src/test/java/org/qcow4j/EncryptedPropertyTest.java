package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.opentest4j.AssertionFailedError;
import org.qcow4j.testing.Processes;
import org.qcow4j.testing.Shrinker;

/**
 * {@link WritableImagePropertyTest}'s random sequences (write, zeroes with and without unmap, discard, resize, flush;
 * no bitmaps or snapshots) on LUKS images qemu-img made, in two cipher sets and three cluster layouts, some with
 * compressed clusters: afterwards our reads and {@code qemu-img convert -O raw} with the secret equal the model and
 * {@code qemu-img check} is clean. Failing sequences are shrunk ({@code -Dprop.seed}, {@code -Dprop.runs}).
 *
 * <p>Each kind's image is made once (qemu-img's PBKDF calibration costs a second or more whatever the iteration time)
 * (the kinds in parallel) and copied for every sequence. Two sequences per kind, from a seed that changes each day:
 * more sequences over time than the four fixed ones per kind this ran before, in half the time.
 */
class EncryptedPropertyTest {
    private static final String SECRET = "secret,id=sec0,data=123456";
    private static final Passphrase PASS = Passphrase.of("123456".getBytes());
    /** The day's seed by default (in the tests' names: {@code -Dprop.seed} repeats a run). */
    private static final long SEED = Long.getLong("prop.seed", java.time.LocalDate.now(java.time.ZoneOffset.UTC).toEpochDay());
    private static final int RUNS = Integer.getInteger("prop.runs", 2);
    /** The image of each kind as qemu-img made it (and qemu-io filled it), made once, copied by each sequence. */
    private static final java.util.Map<Kind, Path> TEMPLATES = new java.util.concurrent.ConcurrentHashMap<>();
    private static Path templateDir;

    private record Kind(String name, String options, int clusterSize, boolean compressed) {
        WritableImagePropertyTest.Config config() {
            return new WritableImagePropertyTest.Config(name, "compat=1.1", clusterSize, 4 << 20, false, false, compressed);
        }
    }

    private static final List<Kind> KINDS = List.of(
            new Kind("xts 64k", "", 65536, false),
            new Kind("cbc-essiv 4k", "encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,cluster_size=4096", 4096, false),
            new Kind("xts ext l2 compressed", "extended_l2=on,cluster_size=128k", 131072, true));

    @org.junit.jupiter.api.BeforeAll
    static void makeTemplates() throws Exception {
        templateDir = Files.createTempDirectory("qcow4j-luks-prop-templates");
        // the kinds' qemu-img creates in parallel: each spends most of its time in QEMU's PBKDF calibration
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(
                Math.max(1, Runtime.getRuntime().availableProcessors()));
        try {
            List<java.util.concurrent.Future<?>> done = new ArrayList<>();
            for (int i = 0; i < KINDS.size(); i++) {
                Kind k = KINDS.get(i);
                Path dir = Files.createDirectory(templateDir.resolve("k" + i));
                done.add(pool.submit(() -> {
                    TEMPLATES.put(k, template(dir, k));
                    return null;
                }));
            }
            for (java.util.concurrent.Future<?> f : done) {
                f.get();
            }
        } finally {
            pool.shutdown();
        }
    }

    @org.junit.jupiter.api.AfterAll
    static void removeTemplates() throws IOException {
        if (templateDir != null) {
            delete(templateDir);
        }
    }

    private static Path template(Path dir, Kind k) {
        WritableImagePropertyTest.Config c = k.config();
        Path img = dir.resolve("top.qcow2");
        String luks = "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"
                + (k.options().isEmpty() ? "" : "," + k.options());
        qemu(dir, "qemu-img", "create", "-q", "-f", "qcow2", "--object", SECRET, "-o", luks, "top.qcow2",
                Long.toString(c.size()));
        if (k.compressed()) {
            // qemu-img convert -c refuses encryption; qemu-io's compressed writes go in (unencrypted, as QEMU stores them)
            qemu(dir, "qemu-io", "--object", SECRET, "--image-opts", opts(img), "-c", "write -c -P 0x33 0 " + c.size() / 2);
        }
        return img;
    }

    @TestFactory
    Stream<DynamicTest> randomSequencesMatchTheModel() {
        return KINDS.stream().flatMap(k -> IntStream.range(0, RUNS).mapToObj(run -> {
            long seed = SEED * 31 + k.name().hashCode() * 1009L + run;
            return DynamicTest.dynamicTest(k.name() + " seed " + SEED + " #" + run, () -> {
                List<WritableImagePropertyTest.Op> ops = new ArrayList<>();
                for (WritableImagePropertyTest.Op op : WritableImagePropertyTest.randomOps(new Random(seed))) {
                    if (!op.kind().name().startsWith("BITMAP_")) {
                        ops.add(op);
                    }
                }
                AssertionFailedError failure = attempt(k, ops);
                if (failure != null) {
                    throw Shrinker.shrink(ops, failure, "seed " + seed + ", " + k.name(), fewer -> attempt(k, fewer));
                }
            });
        }));
    }

    private static AssertionFailedError attempt(Kind k, List<WritableImagePropertyTest.Op> ops) throws IOException {
        Path dir = Files.createTempDirectory("qcow4j-luks-prop");
        try {
            run(dir, k, ops);
            return null;
        } catch (AssertionFailedError e) {
            return e;
        } finally {
            delete(dir);
        }
    }

    private static void delete(Path dir) throws IOException {
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }

    private static String opts(Path img) {
        return "driver=qcow2,file.filename=" + img + ",encrypt.key-secret=sec0";
    }

    private static void run(Path dir, Kind k, List<WritableImagePropertyTest.Op> ops) throws IOException {
        WritableImagePropertyTest.Config c = k.config();
        Path img = dir.resolve("top.qcow2");
        byte[] model = new byte[(int) c.size()];
        Files.copy(TEMPLATES.get(k), img);
        if (k.compressed()) {
            java.util.Arrays.fill(model, 0, model.length / 2, (byte) 0x33);
        }
        List<String> done = new ArrayList<>();
        try (WritableImage image = Images.openWritable(img, OpenOptions.defaults().withPassphrase(PASS))) {
            for (WritableImagePropertyTest.Op op : ops) {
                model = WritableImagePropertyTest.apply(image, c, model, op, done);
            }
            byte[] ours = new byte[(int) image.size()];
            image.read(ByteBuffer.wrap(ours), 0);
            assertArrayEquals(model, ours, "our reads after " + done);
        }
        qemu(dir, "qemu-img", "convert", "--object", SECRET, "--image-opts", opts(img), "-O", "raw", "out.raw");
        assertArrayEquals(model, Files.readAllBytes(dir.resolve("out.raw")), "qemu-img convert after " + done);
        Processes.Result check = Processes.run(dir, "qemu-img", "check", "--object", SECRET, "--image-opts", opts(img));
        assertEquals(0, check.exit(), "qemu-img check after " + done + ":\n" + check.out() + check.err());
    }

    private static void qemu(Path dir, String... cmd) {
        for (int attempt = 0; ; attempt++) {
            Processes.Result r = Processes.run(dir, cmd);
            if (r.exit() == 0) {
                return;
            }
            // QEMU's PBKDF calibration gives up on a busy machine ("Unable to get accurate CPU usage"): try again
            if (attempt >= 4 || !r.err().contains("Unable to get accurate CPU usage")) {
                throw new AssertionError(String.join(" ", cmd) + ": " + r.err());
            }
        }
    }
}
