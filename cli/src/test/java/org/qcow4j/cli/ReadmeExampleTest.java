package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The README's library example, taken from the README itself, compiled with javac against the library and run as a
 * user would run it; QEMU then checks the image it made and reads back what it wrote.
 */
class ReadmeExampleTest {
    private static final String MARKER = "<!-- ReadmeExampleTest compiles and runs the next block -->";

    @TempDir
    Path dir;

    @Test
    void theReadmeExampleCompilesRunsAndMakesAnImageQemuReads() throws IOException {
        String readme = Files.readString(Path.of("..", "README.md"));
        int at = readme.indexOf(MARKER);
        assertTrue(at >= 0, "README.md has no block marked " + MARKER);
        int start = readme.indexOf("```java\n", at) + "```java\n".length();
        String source = readme.substring(start, readme.indexOf("```", start));
        Files.writeString(dir.resolve("Example.java"), source);

        String javaHome = System.getProperty("java.home");
        String classPath = System.getProperty("java.class.path");
        Qemu.run(dir, Path.of(javaHome, "bin", "javac").toString(), "-Xlint:all", "-Werror", "-cp", classPath,
                "-d", dir.toString(), "Example.java").ok();
        Qemu.Result run = Qemu.run(dir, Path.of(javaHome, "bin", "java").toString(),
                "-cp", dir + java.io.File.pathSeparator + classPath, "Example", "disk.qcow2").ok();

        assertTrue(run.out().startsWith("Extent[start=1048576, length=65536, depth=0, present=true, zero=false, data=true,"),
                run.out());
        assertEquals("No errors were found on the image.", Qemu.img(dir, "check", "disk.qcow2").out().lines().findFirst()
                .orElse(""));
        String read = Qemu.io(dir, "disk.qcow2", "read -P 0 0 1M", "read -v 1M 5").out();
        assertTrue(read.contains("hello") && !read.contains("failed"), read);
    }
}
