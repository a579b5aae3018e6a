package org.qcow4j.io;

import java.io.IOException;
import java.nio.file.Path;

/**
 * Exists for fault-injection tests only: a hook {@link FileStorage} consults before each write, extension and force
 * of an image file, so a test can make the k-th one fail as a full disk or a failing device would. Unset (the
 * default, and always outside tests) it costs one volatile read per call. Not exported by the module.
 */
public final class WriteFaults {
    /** What is about to happen to the file. */
    public enum Op { WRITE, EXTEND, FORCE }

    /** Throws to make the operation fail before it touches the file. */
    @FunctionalInterface
    public interface Hook {
        /** {@code pos}: where a write or extension starts (the new last byte for an extension), -1 for a force. */
        void before(Path file, Op op, long pos) throws IOException;
    }

    private static volatile Hook hook;

    private WriteFaults() {
    }

    /** Installs {@code h} for every thread (null removes it). */
    public static void set(Hook h) {
        hook = h;
    }

    static void check(Path file, Op op, long pos) throws IOException {
        Hook h = hook;
        if (h != null) {
            h.before(file, op, pos);
        }
    }
}
