package org.qcow4j.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

/**
 * Image locks as the kernel shows them ({@code /proc/locks}), and qemu-io holding an image as a running VM would,
 * for the locking tests of every module.
 */
public final class ImageLocks {
    private ImageLocks() {
    }

    /**
     * The byte ranges ("100-101") process {@code pid} has locked on {@code image}. POSIX locks show their process;
     * open-file-description locks (QEMU's) show -1, so they count for any process but this JVM.
     */
    public static Set<String> held(Path image, long pid) throws IOException {
        String ino = ":" + Files.getAttribute(image, "unix:ino") + " ";
        Set<String> ranges = new TreeSet<>();
        for (String line : Files.readAllLines(Path.of("/proc/locks"))) {
            if (line.contains(ino) && !line.contains("->")) {
                String[] f = line.trim().split("\\s+");
                boolean his = f[1].equals("OFDLCK") ? pid != ProcessHandle.current().pid() : f[4].equals(Long.toString(pid));
                if (his) {
                    ranges.add(f[6] + "-" + f[7]);
                }
            }
        }
        return ranges;
    }

    /** Waits (10 s at most) until {@code process} holds a lock on {@code image}; fails if it ends first. */
    public static void await(Path image, Process process) throws IOException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (held(image, process.pid()).isEmpty()) {
            if (!process.isAlive()) {
                throw new AssertionError(process.info().commandLine().orElse("the holder") + " ended early");
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("no lock on " + image + " within 10 s");
            }
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError(e);
            }
        }
    }

    /** {@code qemu-io [FLAGS] -c "sleep 60000" IMAGE}, started and holding the image (stop it with {@link #stop}). */
    public static Process qemuIoHolding(Path image, String... flags) throws IOException {
        List<String> cmd = new ArrayList<>(List.of("qemu-io"));
        cmd.addAll(List.of(flags));
        cmd.addAll(List.of("-c", "sleep 60000", image.toString()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        await(image, p);
        return p;
    }

    /** Kills {@code process} (SIGKILL) and waits for it; null is ignored. */
    public static void stop(Process process) throws InterruptedException {
        if (process != null) {
            process.destroyForcibly();
            process.waitFor(10, TimeUnit.SECONDS);
        }
    }
}
