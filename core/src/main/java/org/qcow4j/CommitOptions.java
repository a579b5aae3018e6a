package org.qcow4j;

import java.util.function.DoubleConsumer;

/**
 * How {@link Images#commit} merges an image into a backing file, as {@code qemu-img commit}'s options say.
 *
 * @param base      the backing file to commit into ({@code -b}), found in the chain as QEMU finds it (by the name an
 *                  image stores, or the same file); null: the image's own backing file
 * @param drop      leave the image as it is afterwards ({@code -d}; {@code -b} implies it in qemu-img); otherwise it is
 *                  emptied as QEMU's {@code make_empty} does
 * @param open      how the image is opened ({@code -f} its format, {@code -t} writethrough, which the base inherits)
 * @param rateLimit at most this many bytes copied per second ({@code -r}); 0: no limit
 * @param progress  told the share done, 0 to 100; may be null
 */
public record CommitOptions(String base, boolean drop, OpenOptions open, long rateLimit, DoubleConsumer progress) {
    public CommitOptions {
        if (rateLimit < 0) {
            throw new IllegalArgumentException("rateLimit must not be negative: " + rateLimit);
        }
    }

    /** Into the image's backing file, the image emptied afterwards, its format probed. */
    public static CommitOptions defaults() {
        return new CommitOptions(null, false, OpenOptions.defaults(), 0, null);
    }

    public CommitOptions withBase(String b) {
        return new CommitOptions(b, drop, open, rateLimit, progress);
    }

    public CommitOptions withDrop(boolean d) {
        return new CommitOptions(base, d, open, rateLimit, progress);
    }

    public CommitOptions withOpen(OpenOptions o) {
        return new CommitOptions(base, drop, o, rateLimit, progress);
    }

    public CommitOptions withRateLimit(long bytesPerSecond) {
        return new CommitOptions(base, drop, open, bytesPerSecond, progress);
    }

    public CommitOptions withProgress(DoubleConsumer p) {
        return new CommitOptions(base, drop, open, rateLimit, p);
    }
}
