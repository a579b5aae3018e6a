package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code measure} against {@code qemu-img measure}: every image kind as the source under several target option sets
 * (cluster sizes, refcount widths, extended L2, compat, preallocation, a backing file, a snapshot), empty images of
 * several sizes, both output formats, and the refusals; the same stdout, stderr and exit code.
 */
class MeasureCommandTest {
    @TempDir
    Path dir;

    static final List<String> TARGETS = List.of("-O qcow2", "-O qcow2 -o cluster_size=512", "-O qcow2 -o cluster_size=2M",
            "-O qcow2 -o extended_l2=on,refcount_bits=1", "-O qcow2 -o compat=0.10 --output=json",
            "-O qcow2 -o preallocation=full,refcount_bits=64", "-O qcow2 -o backing_file=x", "--output=json");

    @Test
    void sameAsQemuImg() {
        Map<String, Path> kinds = ImageKinds.make(dir);
        List<String> lines = new ArrayList<>();
        for (Map.Entry<String, Path> k : kinds.entrySet()) {
            for (String target : TARGETS) {
                lines.add(target + " " + k.getValue());
            }
        }
        lines.add("-O qcow2 -l s1 " + kinds.get("snap"));
        lines.add("-O qcow2 -l snapshot.id=1 --output=json " + kinds.get("snap"));
        lines.add("-O qcow2 -o cluster_size=4k " + dir.resolve("base.raw"));
        for (String size : List.of("0", "1", "1G", "100T", "4T")) {
            for (String target : List.of("", "-O qcow2", "-O qcow2 -o cluster_size=512,refcount_bits=8",
                    "-O qcow2 -o extended_l2=on,preallocation=metadata", "-O qcow2 -o preallocation=falloc")) {
                lines.add(target + " --size " + size);
            }
        }
        String img = kinds.get("plain").toString();
        lines.addAll(List.of("-O qcow2 -o cluster_size=1000 --size 1G", "-O qcow2 -o compat=0.10,refcount_bits=8 --size 1G",
                "-O qcow2 -o compat=bogus --size 1G", "-O qcow2 -o preallocation=bogus --size 1G",
                "-O qcow2 -o refcount_bits=3 --size 1G", "-O qcow2 -o extended_l2=on,cluster_size=4k --size 1G",
                "-O qcow2 -o bogus=1 --size 1G", "--size 1G " + img, "-f qcow2", "-O bogus --size 1G", "--size abc",
                "-O qcow2 -o size=1G", "-O qcow2 --size 1E", "-O qcow2 -l nope " + img, "-O vmdk --size 1G",
                img + " " + img, "--output=foo --size 1G", "-O qcow2 " + dir.resolve("missing.qcow2")));
        for (String line : lines) {
            String[] args = Qemu.concat("measure", line.isBlank() ? new String[0] : line.trim().split(" "));
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", args));
            Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, args);
            assertEquals(want, got, line);
        }
        // getopt's complaint, then the help (which lists the commands each has) and exit 0, as measure's '?' case
        for (String line : List.of("-x --size 1G", "-O", "--size")) {
            String[] args = Qemu.concat("measure", line.split(" "));
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", args));
            Qemu.Result got = SnapshotCommandTest.run(Program.QEMU_IMG, args);
            assertEquals(want.exit(), got.exit(), line);
            assertEquals(want.err(), got.err(), line);
        }
    }
}
