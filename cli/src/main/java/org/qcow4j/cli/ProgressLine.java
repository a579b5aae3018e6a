package org.qcow4j.cli;

import java.io.PrintWriter;

/**
 * QEMU's util/qemu-progress.c as rebase, commit and amend use it: {@code "    (25.00/100%)\r"} printed when the share
 * done moves more than {@code minSkip} points from the last one printed (and always at 0 and 100), a newline at the
 * end; nothing at all unless {@code -p} was given without {@code -q}.
 */
final class ProgressLine {
    private final PrintWriter out;
    private final float minSkip;
    private final boolean enabled;
    private float lastPrinted;

    ProgressLine(PrintWriter out, boolean enabled, float minSkip) {
        this.out = out;
        this.enabled = enabled;
        this.minSkip = minSkip;
    }

    /** The share done is now {@code current} percent. */
    synchronized void print(double current) {
        float c = (float) current;
        if (enabled && (c > lastPrinted + minSkip || c < lastPrinted - minSkip || c == 0 || c == 100)) {
            lastPrinted = c;
            out.print(QemuProgress.line(c));
            out.flush();
        }
    }

    /** qemu_progress_end: the line ended (also after a failure). */
    synchronized void end() {
        if (enabled) {
            out.println();
            out.flush();
        }
    }
}
