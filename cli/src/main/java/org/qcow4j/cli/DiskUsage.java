package org.qcow4j.cli;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * Bytes a file occupies on disk (st_blocks * 512, qemu-img's "actual-size"). The JDK exposes no st_blocks,
 * so this asks coreutils' {@code stat}; -1 when that is not possible (the field is then left out, as qemu-img
 * does when it cannot tell).
 */
final class DiskUsage {
    private DiskUsage() {
    }

    static long allocatedBytes(Path file) {
        try {
            Process p = new ProcessBuilder("stat", "-L", "-c", "%b %B", "--", file.toString())
                    .redirectErrorStream(true).start();
            String out;
            try (InputStream in = p.getInputStream()) {
                out = new String(in.readAllBytes(), StandardCharsets.US_ASCII).trim();
            }
            if (p.waitFor() != 0) {
                return -1;
            }
            String[] parts = out.split(" ");
            return Long.parseLong(parts[0]) * Long.parseLong(parts[1]);
        } catch (IOException | NumberFormatException | ArrayIndexOutOfBoundsException e) {
            return -1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }
}
