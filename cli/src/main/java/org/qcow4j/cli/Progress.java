package org.qcow4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;

/**
 * qemu-img convert's {@code -p} line, {@code "    (25.00/100%)\r"}, printing the values qemu-img prints. qemu-img
 * counts only the data it copies (its BLK_DATA runs, at most 2 MiB each, IO_BUF_SIZE) and prints the share done
 * after each run, skipping a value less than 1% above the last one printed (qemu_progress_print with min_skip 1.0);
 * it starts at 0 and ends by printing 100 again. The runs are known beforehand from the inputs' allocation
 * ({@link #dataRuns}), so the values printed are these whatever order the library finishes its work in; a value is
 * shown once the library has finished as many guest bytes as end its run.
 */
final class Progress {
    /** qemu-img convert's IO_BUF_SIZE: the longest run of data it copies at once. */
    private static final long IO_BUF_SIZE = 2L << 20;

    private final PrintWriter out;
    /** The guest offset (over the inputs concatenated) where each data run ends, and the share done after it. */
    private final long[] runEnds;
    private final double[] shares;
    private int next;
    private long done;
    private double lastPrinted;

    /** A progress line over data runs given as {offset, length} pairs, in guest order. */
    Progress(PrintWriter out, List<long[]> runs) {
        this.out = out;
        long total = runs.stream().mapToLong(r -> r[1]).sum();
        runEnds = new long[runs.size()];
        shares = new double[runs.size()];
        long sum = 0;
        for (int i = 0; i < runs.size(); i++) {
            sum += runs.get(i)[1];
            runEnds[i] = runs.get(i)[0] + runs.get(i)[1];
            shares[i] = (float) (100.0 * sum / total); // qemu_progress_print takes a float
        }
        print(0);
    }

    /**
     * The data runs qemu-img convert counts in {@code inputs} (concatenated): their data extents (only the top
     * layer's when the output gets a backing file, as QEMU then reads above the input's backing file) cut into
     * IO_BUF_SIZE pieces.
     */
    static List<long[]> dataRuns(List<DiskImage> inputs, boolean topLayerOnly) throws IOException {
        List<long[]> runs = new ArrayList<>();
        long base = 0;
        for (DiskImage in : inputs) {
            long pos = 0;
            while (pos < in.size()) {
                Extent e = in.extentAt(pos, in.size() - pos);
                long end = pos + e.length();
                if (e.data() && !e.zero() && (!topLayerOnly || e.depth() == 0)) {
                    for (long p = pos; p < end; p += IO_BUF_SIZE) {
                        runs.add(new long[] {base + p, Math.min(IO_BUF_SIZE, end - p)});
                    }
                }
                pos = end;
            }
            base += in.size();
        }
        return runs;
    }

    /** The library finished {@code bytes} more guest bytes. */
    synchronized void advance(long bytes) {
        done += bytes;
        while (next < runEnds.length && runEnds[next] <= done) {
            step();
        }
    }

    /** All done: the values not printed yet, then 100 once more and the end of the line. */
    synchronized void finish() {
        while (next < runEnds.length) {
            step();
        }
        print(100);
        out.println();
        out.flush();
    }

    private void step() {
        double current = shares[next++];
        if (current > lastPrinted + 1.0 || current < lastPrinted - 1.0 || current == 100) {
            print(current);
        }
    }

    private void print(double current) {
        lastPrinted = current;
        out.print(QemuProgress.line((float) current));
        out.flush();
    }
}
