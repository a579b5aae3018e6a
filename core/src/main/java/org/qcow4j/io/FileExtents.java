package org.qcow4j.io;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Where a file has data and where it has holes, so that work on a sparse raw file follows its data like
 * qemu-img's (which asks with {@code lseek(SEEK_DATA)}). The JDK 17 API has no such call, so this asks the file
 * system's extent map (FIEMAP) through e2fsprogs' {@code filefrag}. Anything unexpected (no filefrag, a file
 * system without FIEMAP, output that does not add up) gives null: the caller then treats the whole file as data,
 * which is always correct, only slower.
 */
public final class FileExtents {
    private static final String[] FILEFRAG = {"filefrag", "/usr/sbin/filefrag", "/sbin/filefrag"};

    private FileExtents() {
    }

    /**
     * The file's data ranges as sorted, merged, non-overlapping {start, end} pairs in bytes (every extent the
     * file system reports counts as data, delayed or unwritten ones too), or null when unknown.
     */
    public static long[] dataRanges(Path file, long length) {
        for (String tool : FILEFRAG) {
            long[] r = run(tool, file, length);
            if (r != null) {
                return r;
            }
        }
        return null;
    }

    private static long[] run(String tool, Path file, long length) {
        if (tool.startsWith("/") && !Files.isExecutable(Path.of(tool))) {
            return null;
        }
        try {
            Process p = new ProcessBuilder(tool, "-v", "-b1", "--", file.toString()).redirectErrorStream(true).start();
            p.getOutputStream().close();
            String out;
            try (InputStream in = p.getInputStream()) {
                out = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            }
            if (!p.waitFor(10, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                return null;
            }
            return p.exitValue() == 0 ? parse(out, length) : null;
        } catch (IOException e) {
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
    }

    /**
     * The launcher's answer, {@code BYTES:PATH}: the script runs {@code stat} on the last argument of {@code info} and
     * {@code map} while the JVM starts, which costs a fork from bash instead of the JDK's process machinery (about
     * 50 ms of CPU in a command of 200).
     */
    static final String ALLOCATED_PROPERTY = "qcow4j.allocated";

    /** The bytes {@code answer} gives for {@code file} (the same path once made absolute), else -1. */
    static long launcherAnswer(String answer, Path file) {
        int colon = answer == null ? -1 : answer.indexOf(':');
        if (colon <= 0 || colon == answer.length() - 1) {
            return -1;
        }
        try {
            long bytes = Long.parseLong(answer, 0, colon, 10);
            Path named = Path.of(answer.substring(colon + 1));
            return bytes >= 0 && named.toAbsolutePath().normalize().equals(file.toAbsolutePath().normalize()) ? bytes : -1;
        } catch (NumberFormatException | java.nio.file.InvalidPathException e) {
            return -1;
        }
    }

    /**
     * Bytes the file occupies on disk (st_blocks * 512, qemu-img's "actual-size"), or -1 when that cannot be told.
     * The JDK exposes no st_blocks, so this asks coreutils' {@code stat}.
     */
    public static long allocatedBytes(Path file) {
        long known = launcherAnswer(System.getProperty(ALLOCATED_PROPERTY), file);
        if (known >= 0) {
            return known;
        }
        try {
            Process p = new ProcessBuilder("stat", "-L", "-c", "%b %B", "--", file.toString())
                    .redirectErrorStream(true).start();
            p.getOutputStream().close();
            String out;
            try (InputStream in = p.getInputStream()) {
                out = new String(in.readAllBytes(), StandardCharsets.US_ASCII).trim();
            }
            if (!p.waitFor(10, TimeUnit.SECONDS) || p.exitValue() != 0) {
                p.destroyForcibly();
                return -1;
            }
            int space = out.indexOf(' ');
            return Long.parseLong(out.substring(0, space)) * Long.parseLong(out.substring(space + 1));
        } catch (IOException | NumberFormatException | IndexOutOfBoundsException e) {
            return -1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }

    /** Parses {@code filefrag -v -b1} output; null unless it is a well-formed extent list inside the file. */
    public static long[] parse(String out, long length) {
        if (!out.contains("logical_offset")) {
            return null;
        }
        List<long[]> ranges = new ArrayList<>();
        Pattern extent = Pattern.compile("^\\s*\\d+:\\s*(\\d+)\\.\\.\\s*(\\d+):");
        for (String line : out.split("\n")) {
            Matcher m = extent.matcher(line);
            if (!m.find()) {
                continue;
            }
            long start = Long.parseLong(m.group(1));
            long end = Long.parseLong(m.group(2)) + 1;
            if (start < 0 || end <= start) {
                return null;
            }
            if (!ranges.isEmpty() && start < ranges.get(ranges.size() - 1)[1]) {
                return null; // not sorted or overlapping: do not trust it
            }
            if (!ranges.isEmpty() && start == ranges.get(ranges.size() - 1)[1]) {
                ranges.get(ranges.size() - 1)[1] = end;
            } else {
                ranges.add(new long[] {start, end});
            }
        }
        long[] flat = new long[ranges.size() * 2];
        for (int i = 0; i < ranges.size(); i++) {
            flat[2 * i] = ranges.get(i)[0];
            flat[2 * i + 1] = Math.min(ranges.get(i)[1], Math.max(length, ranges.get(i)[0]));
        }
        return flat;
    }
}
