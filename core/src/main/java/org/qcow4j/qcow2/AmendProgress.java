package org.qcow4j.qcow2;

import java.util.function.DoubleConsumer;

/**
 * QEMU's {@code qcow2_amend_helper_cb} and qemu-img's {@code amend_status_cb}: each step of an amend (upgrade, refcount
 * width change, downgrade) reports how far it is in its own units of work; the share of the whole is computed as
 * QEMU computes it, projecting the steps not begun yet from those done so far (so the share can go back when a step
 * finds more work, as a refcount width change that needs another walk does), and given to the caller in percent.
 */
final class AmendProgress {
    /** The steps of {@code qcow2_amend_options} that report progress. */
    enum Step { UPGRADING, CHANGING_REFCOUNT_ORDER, DOWNGRADING }

    private final DoubleConsumer out;
    private final int totalSteps;
    private Step current;
    private Step last;
    private int stepsCompleted;
    private long offsetCompleted;
    private long lastWorkSize;

    /** {@code totalSteps} steps will report (QEMU's {@code total_operations}). */
    AmendProgress(DoubleConsumer out, int totalSteps) {
        this.out = out;
        this.totalSteps = totalSteps;
    }

    /** The next reports are {@code step}'s. */
    void start(Step step) {
        current = step;
    }

    /** The current step is {@code offset} units into its {@code workSize}. */
    void report(long offset, long workSize) {
        if (current != last) {
            if (last != null) {
                offsetCompleted += lastWorkSize;
                stepsCompleted++;
            }
            last = current;
        }
        if (totalSteps <= 0 || stepsCompleted >= totalSteps) {
            return; // QEMU asserts this never happens
        }
        lastWorkSize = workSize;
        long currentWork = offsetCompleted + workSize;
        long projected = currentWork * (totalSteps - stepsCompleted - 1) / (stepsCompleted + 1);
        out.accept(100f * (offsetCompleted + offset) / (currentWork + projected)); // in float, as qemu-img
    }
}
