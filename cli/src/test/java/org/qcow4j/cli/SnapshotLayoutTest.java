package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;
import org.opentest4j.AssertionFailedError;
import org.qcow4j.testing.Shrinker;

/**
 * Writes into images whose clusters and L2 tables are shared with internal snapshots that qemu-img made: QemuLayoutTest's
 * scripts (writes, zero writes, discards, truncations) run by qemu-io 7.2 and by {@code io} on twin images leave
 * byte-identical files (copied L2 tables, copy-on-write of shared clusters, refcounts moved, clusters freed only
 * with their last reference); {@code qemu-img check} finds ours clean and each snapshot still reads as it was
 * ({@code qemu-img convert -l snapshot.name=X}). Kinds with 1-bit refcounts are left out: they cannot share a
 * cluster, and qemu-img refuses to snapshot them.
 */
class SnapshotLayoutTest {
    private static final long SEED = Long.getLong("layout.seed", 20261201L);

    @TempDir
    Path dir;

    static Stream<QemuLayoutTest.Kind> kinds() {
        // not 1-bit refcounts (nothing can be shared), nor external data files (QEMU refuses their snapshots)
        return QemuLayoutTest.KINDS.stream().filter(k -> !k.options().contains("refcount_bits=1") && !k.dataFile());
    }

    @TestFactory
    Stream<DynamicTest> fixedScriptsLeaveQemusFile() {
        return kinds().flatMap(k -> IntStream.range(0, QemuLayoutTest.SCRIPTS.size()).mapToObj(i -> DynamicTest.dynamicTest(
                k.name() + " script " + i, () -> {
                    List<String> script = QemuLayoutTest.SCRIPTS.get(i).stream().map(c -> QemuLayoutTest.resolve(c, k)).toList();
                    AssertionFailedError f = attempt(k, script);
                    if (f != null) {
                        throw f;
                    }
                })));
    }

    @TestFactory
    Stream<DynamicTest> randomScriptsLeaveQemusFile() {
        return kinds().map(k -> {
            long seed = SEED * 37 + k.name().hashCode() * 1013L;
            return DynamicTest.dynamicTest(k.name() + " random", () -> {
                List<String> script = QemuLayoutTest.randomScript(new Random(seed), k);
                AssertionFailedError f = attempt(k, script);
                if (f != null) {
                    throw Shrinker.shrink(script, f, "seed " + seed + ", " + k.name(), fewer -> attempt(k, fewer));
                }
            });
        });
    }

    /** Runs {@code script} through qemu-io and io on twin snapshot images; the difference found, or null. */
    private AssertionFailedError attempt(QemuLayoutTest.Kind k, List<String> script) throws IOException {
        Path work = Files.createTempDirectory(dir, "run");
        try {
            Path theirs = QemuLayoutTest.create(work, k, "theirs.qcow2");
            // data in both snapshots, some only in the first, some only in the second
            Qemu.io(work, theirs.toString(), QemuLayoutTest.resolve("write -P 0x31 0 6C", k),
                    QemuLayoutTest.resolve("write -P 0x32 S/2-C 3C", k), QemuLayoutTest.resolve("write -z 8C 2C", k));
            Qemu.img(work, "snapshot", "-c", "s1", theirs.toString());
            Qemu.io(work, theirs.toString(), QemuLayoutTest.resolve("write -P 0x33 2C 2C", k),
                    QemuLayoutTest.resolve("write -P 0x34 S-3C 2C", k));
            Qemu.img(work, "snapshot", "-c", "s2", theirs.toString());
            byte[] s1 = snapshotData(work, theirs, "s1");
            byte[] s2 = snapshotData(work, theirs, "s2");
            Path ours = work.resolve("ours.qcow2");
            Files.copy(theirs, ours);
            List<String> qemu = Qemu.list("qemu-io");
            List<String> io = Qemu.list("io");
            for (String c : script) {
                qemu.addAll(List.of("-c", c));
                io.addAll(List.of("-c", c));
            }
            qemu.add(theirs.toString());
            io.add(ours.toString());
            Qemu.Result want = Qemu.run(work, qemu.toArray(String[]::new));
            Qemu.Result got = Qemu.qcow4j(io.toArray(String[]::new));
            if (want.exit() != got.exit()) {
                return new AssertionFailedError(k.name() + " " + script + ": exit " + got.exit() + ", qemu-io's " + want.exit()
                        + "\nqemu-io: " + want.out() + want.err() + "\nqcow4j: " + got.out() + got.err());
            }
            String d = QemuLayoutTest.difference(theirs, ours);
            if (d != null) {
                return new AssertionFailedError(k.name() + " " + script + ": " + d);
            }
            Qemu.Result check = Qemu.run(work, "qemu-img", "check", ours.toString());
            if (check.exit() != 0) {
                return new AssertionFailedError(k.name() + " " + script + ": qemu-img check: " + check.out() + check.err());
            }
            if (script.stream().anyMatch(c -> c.startsWith("truncate"))) {
                // a shrink cuts the file after the last cluster in use, which QEMU may not keep for a snapshot
                s1 = snapshotData(work, theirs, "s1");
                s2 = snapshotData(work, theirs, "s2");
            }
            if (!Arrays.equals(s1, snapshotData(work, ours, "s1")) || !Arrays.equals(s2, snapshotData(work, ours, "s2"))) {
                return new AssertionFailedError(k.name() + " " + script + ": a snapshot reads differently after the writes");
            }
            return null;
        } finally {
            try (Stream<Path> files = Files.walk(work)) {
                for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
                    Files.delete(p);
                }
            }
        }
    }

    /** The guest data of snapshot {@code name}, as qemu-img converts it. */
    static byte[] snapshotData(Path work, Path image, String name) throws IOException {
        Path raw = work.resolve(name + "-" + image.getFileName() + ".raw");
        Qemu.img(work, "convert", "-l", "snapshot.name=" + name, "-O", "raw", image.toString(), raw.toString());
        byte[] data = Files.readAllBytes(raw);
        Files.delete(raw);
        assertEquals(false, data.length == 0, "snapshot " + name + " is empty");
        return data;
    }
}
