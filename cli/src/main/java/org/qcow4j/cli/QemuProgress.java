package org.qcow4j.cli;

import java.io.PrintWriter;

/**
 * QEMU's util/qemu-progress.c as qemu-img's amend, commit, compare and rebase use it: a float share that each step raises by {@code delta / 100 *
 * max}, printed as {@code "    (%3.2f/100%%)\r"} when it is 0 or 100 or has moved more than {@code minSkip} from the
 * value last printed; the end prints a newline. The value is printed as glibc rounds it (the float's exact binary
 * value, ties to even: 3.125 prints as 3.12), which Java's {@code %f} does not do.
 */
final class QemuProgress {
    private final PrintWriter out;
    private final boolean enabled;
    private final float minSkip;
    private float current;
    private float lastPrint;

    QemuProgress(PrintWriter out, boolean enabled, float minSkip) {
        this.out = out;
        this.enabled = enabled;
        this.minSkip = minSkip;
    }

    /** qemu_progress_print(current, 0): the share done is now {@code current} percent (from any thread). */
    void print(double current) {
        print((float) current, 0);
    }

    /** qemu_progress_print(delta, max). */
    synchronized void print(float delta, int max) {
        current = max == 0 ? delta : current + delta / 100 * max;
        if (current > lastPrint + minSkip || current < lastPrint - minSkip || current == 0 || current == 100) {
            lastPrint = current;
            if (enabled) {
                out.print(line(current));
                out.flush();
            }
        }
    }

    /**
     * {@code "    (%3.2f/100%%)\r"} of {@code current} as glibc prints it (see above); every progress line of the
     * commands.
     */
    static String line(float current) {
        return "    (" + CPrintf.fixed(current, 2) + "/100%)\r";
    }

    /** qemu_progress_end. */
    synchronized void end() {
        if (enabled) {
            out.println();
            out.flush();
        }
    }
}
