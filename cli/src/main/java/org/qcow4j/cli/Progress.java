package org.qcow4j.cli;

import java.io.PrintWriter;
import java.util.concurrent.atomic.AtomicLong;

/**
 * qemu-img's {@code -p} progress line, {@code "    (12.34/100%)\r"}, redrawn at most every whole percent.
 * Thread-safe: workers report finished bytes as they go.
 */
final class Progress {
    private final PrintWriter out;
    private final long total;
    private final AtomicLong done = new AtomicLong();
    private int shownHundredths = -1;

    Progress(PrintWriter out, long total) {
        this.out = out;
        this.total = total;
        show(0);
    }

    void advance(long bytes) {
        long d = done.addAndGet(bytes);
        show(total == 0 ? 10000 : (int) (Math.min(d, total) * 10000 / total));
    }

    void finish() {
        show(10000);
        out.println();
        out.flush();
    }

    private synchronized void show(int hundredths) {
        if (hundredths / 100 == shownHundredths / 100 && shownHundredths >= 0 && hundredths != 10000) {
            return;
        }
        if (hundredths == shownHundredths) {
            return;
        }
        shownHundredths = hundredths;
        out.printf("    (%d.%02d/100%%)\r", hundredths / 100, hundredths % 100);
        out.flush();
    }
}
