package org.qcow4j.testing;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * A child JVM running a crash test's {@code main} (on this test's class path, with a quick-starting JIT), its output
 * lines collected as they come, killed with SIGKILL at the moment the test picks. The crash tests all drive their
 * writer this way.
 */
public final class ChildJvm {
    /** How long the child gets to report or to end. */
    private static final long LIMIT_MS = 30_000;

    private final Process process;
    private final List<String> lines = new ArrayList<>();
    private final Thread reader;

    private ChildJvm(Process process) {
        this.process = process;
        this.reader = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(process.getInputStream(),
                    StandardCharsets.UTF_8))) {
                for (String line; (line = in.readLine()) != null; ) {
                    synchronized (lines) {
                        lines.add(line);
                        lines.notifyAll();
                    }
                }
            } catch (IOException e) {
                // the pipe breaks when the child is killed
            }
        });
        reader.start();
    }

    /** Starts {@code main} with {@code args} in a new JVM, its stderr merged into its stdout. */
    public static ChildJvm start(Class<?> main, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path"),
                main.getName()));
        cmd.addAll(List.of(args));
        return new ChildJvm(new ProcessBuilder(cmd).redirectErrorStream(true).start());
    }

    /** Waits, polling every {@code pollMs}, until a line the child printed passes {@code test}, it ended, or 30 s. */
    public void awaitLine(Predicate<String> test, long pollMs) throws InterruptedException {
        long deadline = System.currentTimeMillis() + LIMIT_MS;
        synchronized (lines) {
            while (lines.stream().noneMatch(test) && process.isAlive() && System.currentTimeMillis() < deadline) {
                lines.wait(pollMs);
            }
        }
    }

    /**
     * Waits {@code delayMs}, then kills the child with SIGKILL if it still runs, and waits for it and its output to
     * end; true if it was killed.
     */
    public boolean killAfter(long delayMs) throws InterruptedException {
        Thread.sleep(delayMs);
        boolean killed = process.isAlive();
        if (killed) {
            process.destroyForcibly(); // SIGKILL on Linux
        }
        assertTrue(process.waitFor(LIMIT_MS, TimeUnit.MILLISECONDS), "the child did not end");
        reader.join();
        return killed;
    }

    /**
     * The number of the last {@code "PREFIX n"} line the child printed (-1 if none), failing if it printed anything
     * but those, READY and DONE (a stack trace, say). Call after {@link #killAfter}.
     */
    public int lastNumbered(String prefix) {
        int last = -1;
        List<String> all = lines();
        for (String line : all) {
            if (line.startsWith(prefix)) {
                last = Integer.parseInt(line.substring(prefix.length()));
            } else if (!line.equals("READY") && !line.equals("DONE")) {
                fail("child said: " + String.join("\n", all));
            }
        }
        return last;
    }

    /** What the child printed (complete once {@link #killAfter} returned). */
    public List<String> lines() {
        synchronized (lines) {
            return List.copyOf(lines);
        }
    }
}
