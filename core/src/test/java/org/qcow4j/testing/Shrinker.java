package org.qcow4j.testing;

import java.util.ArrayList;
import java.util.List;
import org.opentest4j.AssertionFailedError;

/**
 * Shrinks a failing sequence of operations: drops one operation at a time while the sequence still fails, until no
 * single operation can go. The random-sequence tests (written with JUnit and a seeded generator rather than jqwik,
 * which asks AI agents not to use it) report the shortest sequence found.
 */
public final class Shrinker {
    /** Runs a sequence; returns the assertion it fails, or null when it passes. */
    @FunctionalInterface
    public interface Attempt<T> {
        AssertionFailedError run(List<T> ops) throws Exception;
    }

    private Shrinker() {
    }

    /**
     * Shrinks {@code ops}, which failed with {@code failure}, and returns an error naming the seed, the shortest
     * failing sequence and its failure.
     */
    public static <T> AssertionFailedError shrink(List<T> ops, AssertionFailedError failure, String what, Attempt<T> attempt)
            throws Exception {
        List<T> current = new ArrayList<>(ops);
        AssertionFailedError last = failure;
        boolean progress = true;
        while (progress) {
            progress = false;
            for (int i = current.size() - 1; i >= 0 && current.size() > 1; i--) {
                List<T> fewer = new ArrayList<>(current);
                fewer.remove(i);
                AssertionFailedError f = attempt.run(fewer);
                if (f != null) {
                    current = fewer;
                    last = f;
                    progress = true;
                }
            }
        }
        return new AssertionFailedError(what + ", shrunk from " + ops.size() + " to " + current.size() + " operations "
                + current + ": " + last.getMessage(), last);
    }
}
