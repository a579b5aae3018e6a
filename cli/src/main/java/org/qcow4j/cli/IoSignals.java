package org.qcow4j.cli;

import java.io.IOException;
import java.util.Set;

/**
 * qemu-io's {@code raise(3)} ({@code sigraise}, {@code abort}) from a JVM, which cannot raise a signal itself: what
 * the signal does to qemu-io (QEMU 7.2 on Linux), and a process that ends the way it would. A signal qemu-io
 * blocks or ignores does nothing (SIGBUS, SIGUSR1, SIGALRM and SIGIO are blocked by its main loop, SIGPIPE ignored,
 * SIGCHLD, SIGCONT, SIGURG and SIGWINCH ignored by default, 32 and 33 refused by glibc's raise, 0 and 65 are no
 * signals). The others are sent to this process with {@code kill}, so it ends by that signal (or stops, for the stop
 * signals) as qemu-io does, without closing anything; except the ones the JVM handles itself (HUP, INT, QUIT, ILL,
 * FPE, SEGV, USR2, TERM, XFSZ), where the process halts with the status a shell shows for that signal (128 + N), as
 * it does when {@code kill} cannot be run.
 */
final class IoSignals {
    private static final Set<Integer> NO_EFFECT = Set.of(0, 7, 10, 13, 14, 17, 18, 23, 28, 29, 32, 33, 65);
    private static final Set<Integer> JVM_HANDLED = Set.of(1, 2, 3, 4, 8, 11, 12, 15, 25);
    private static final Set<Integer> STOPS = Set.of(19, 20, 21, 22);
    static final int SIGABRT = 6;

    private IoSignals() {
    }

    /**
     * Whether {@code raise(sig)} changes anything for qemu-io (1..65, checked by the caller): not for the signals it
     * blocks or ignores, nor for one this process inherited ignored (SIGHUP under nohup, SIGINT in a background job),
     * which qemu-io leaves ignored too.
     */
    static boolean hasEffect(int sig) {
        return !NO_EFFECT.contains(sig) && !inheritedIgnored(sig);
    }

    /** Whether {@code sig} is ignored in this process, as Linux's /proc/self/status says (SigIgn); false if unknown. */
    private static boolean inheritedIgnored(int sig) {
        if (sig < 1 || sig > 64) {
            return false;
        }
        try {
            for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/self/status"))) {
                if (line.startsWith("SigIgn:")) {
                    long mask = Long.parseUnsignedLong(line.substring(7).trim(), 16);
                    return (mask >>> (sig - 1) & 1) != 0;
                }
            }
        } catch (IOException | RuntimeException e) {
            // not Linux, or no /proc: as if not ignored
        }
        return false;
    }

    /**
     * Raises {@code sig} (one with an effect) in this process: ends it, or stops it (then returns once continued).
     * Output must be flushed before.
     */
    static void raise(int sig) {
        if (!JVM_HANDLED.contains(sig)) {
            try {
                Process kill = new ProcessBuilder("kill", "-" + sig, Long.toString(ProcessHandle.current().pid()))
                        .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
                if (kill.waitFor() == 0) {
                    if (STOPS.contains(sig)) {
                        return; // stopped, then continued: qemu-io goes on
                    }
                    Thread.sleep(10_000); // the signal is on its way
                }
            } catch (IOException e) {
                // no kill(1): halt below
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        Runtime.getRuntime().halt(128 + sig);
    }
}
