package org.qcow4j.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The valid files the coverage-guided fuzz targets start from (images made by qemu-img, filesystems by mke2fs),
 * each built once per JVM by a shell script in a directory removed at exit, and the damaged copies the targets
 * write of them: the fuzzer's bytes over a template's metadata, so that its mutations reach past the first checks.
 */
public final class FuzzTemplates {
    private static final Path DIR;
    private static final Map<String, byte[]> BUILT = new HashMap<>();

    static {
        try {
            DIR = Files.createTempDirectory("qcow4j-fuzz-");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(FuzzTemplates::deleteAll));
    }

    private FuzzTemplates() {
    }

    /** The bytes of the file {@code name} that {@code script} (bash, run in the fuzz directory) makes; built once. */
    public static synchronized byte[] template(String name, String script) {
        return BUILT.computeIfAbsent(name, n -> {
            Processes.Result r = Processes.run(DIR, "bash", "-ec", script);
            if (r.exit() != 0) {
                throw new AssertionError("building " + n + ": " + r.err());
            }
            try {
                return Files.readAllBytes(DIR.resolve(n));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }

    /** The fuzz directory: a place for a target's own scratch files. */
    public static Path dir() {
        return DIR;
    }

    /**
     * Writes {@code template} with its first bytes replaced by {@code prefix} (a longer prefix makes a longer file)
     * to {@code name} in the fuzz directory, and returns its path.
     */
    public static Path overwrite(String name, byte[] template, byte[] prefix) {
        byte[] bytes = prefix.length >= template.length ? prefix : template.clone();
        System.arraycopy(prefix, 0, bytes, 0, Math.min(prefix.length, bytes.length));
        return write(name, bytes);
    }

    /** Writes {@code bytes} to {@code name} in the fuzz directory and returns its path. */
    public static Path write(String name, byte[] bytes) {
        try {
            return Files.write(DIR.resolve(name), bytes);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void deleteAll() {
        try (Stream<Path> files = Files.walk(DIR)) {
            files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // best effort at exit
        }
    }
}
