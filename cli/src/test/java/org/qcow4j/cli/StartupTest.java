package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The short commands link no lambda, spin no class at run time and load no {@code java.math}. The first lambda a JVM
 * links sets up java.lang.invoke: 5-10 ms of a command that takes 150 (bench/startup.sh measures the whole commands),
 * and a class spun at run time is never in the class-data archive; {@code BigDecimal} and {@code BigInteger} build
 * their caches when first used (milliseconds, for the two sizes {@code info} prints). One of them added on these paths
 * fails here, by name.
 */
class StartupTest {
    @TempDir
    Path dir;

    /** The classes a new JVM running {@code args} defined at run time (lambdas, spun method handles) or of java.math. */
    private List<String> spunClasses(String... args) throws IOException {
        Path log = dir.resolve("classes.log");
        Files.deleteIfExists(log);
        // -Dqcow4j.allocated: what the launcher passes for info and map, stat's answer for their image's allocated
        // size; else the JDK's process machinery, which links lambdas of its own, would ask stat
        String image = args[args.length - 1];
        String allocated = "";
        if (Files.exists(Path.of(image))) {
            String[] blocks = Qemu.run(dir, "stat", "-L", "-c", "%b %B", image).ok().out().strip().split(" ");
            allocated = Long.parseLong(blocks[0]) * Long.parseLong(blocks[1]) + ":" + image;
        }
        Qemu.Result r = Qemu.run(dir, Qemu.concat("java", Qemu.concat("-Xlog:class+load:file=" + log,
                Qemu.concat("-Dqcow4j.allocated=" + allocated, Qemu.concat("-cp", Qemu.concat(
                        System.getProperty("java.class.path"), Qemu.concat(Main.class.getName(), args)))))));
        r.ok();
        List<String> lines = Files.readAllLines(log);
        assertTrue(lines.stream().anyMatch(l -> l.contains(" org.qcow4j.cli.Main ")), "the log names the classes loaded");
        return lines.stream().filter(l -> l.contains("$$Lambda$") || l.contains("LambdaForm$MH/")
                || l.contains("source: __") || l.contains(" java.math.")).collect(Collectors.toList());
    }

    @Test
    void infoMapAndCheckLinkNoLambda() throws IOException {
        Path img = Qemu.createQcow2(dir, "a.qcow2", "64M");
        Qemu.io(dir, img.toString(), "write -P 1 0 1M", "write -z 8M 64k", "write -P 2 32M 64k");
        for (String command : new String[] {"info", "map", "check"}) {
            assertEquals(List.of(), spunClasses(command, img.toString()), command);
        }
    }

    @Test
    void e2imageLinksNoLambda() throws IOException {
        Qemu.run(dir, "mke2fs", "-q", "-F", "-t", "ext4", "fs.img", "16M").ok();
        String fs = dir.resolve("fs.img").toString();
        assertEquals(List.of(), spunClasses("e2image", "-Q", fs, dir.resolve("out.qcow2").toString()), "-Q");
        assertEquals(List.of(), spunClasses("e2image", "-r", fs, dir.resolve("out.raw").toString()), "-r");
    }
}
