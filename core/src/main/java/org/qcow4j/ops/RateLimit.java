package org.qcow4j.ops;

import java.io.InterruptedIOException;

/**
 * {@code qemu-img convert -r}: QEMU's throttling of the target's writes (util/throttle.c with one bucket,
 * {@code THROTTLE_BPS_WRITE}, whose average is the rate and whose maximum is left to QEMU's default). The bucket leaks
 * {@code rate} bytes a second; a write waits while the bucket holds more than a tenth of a second's worth
 * ({@code throttle_compute_wait} with no burst), then adds its length to it. So a first write of any size goes at
 * once and each later one waits for the ones before it to have drained, as with QEMU. Safe for several threads: the
 * writes wait one after the other.
 */
final class RateLimit {
    /** No limit: {@link #account} returns at once. */
    static final RateLimit NONE = new RateLimit(0);

    private final long rate;
    private double level;
    private long leakedAt = System.nanoTime();

    private RateLimit(long rate) {
        this.rate = rate;
    }

    /** A limit of {@code bytesPerSecond} (0: none). */
    static RateLimit of(long bytesPerSecond) {
        return bytesPerSecond <= 0 ? NONE : new RateLimit(bytesPerSecond);
    }

    /** Waits until a write of {@code bytes} may go, and counts it. */
    void account(long bytes) throws InterruptedIOException {
        if (rate == 0) {
            return;
        }
        synchronized (this) {
            while (true) {
                long now = System.nanoTime();
                level = Math.max(0, level - rate * ((now - leakedAt) / 1e9)); // throttle_leak_bucket
                leakedAt = now;
                double extra = level - rate / 10.0;
                if (extra <= 0) {
                    break;
                }
                long waitNanos = (long) (extra * 1e9 / rate) + 1;
                try {
                    Thread.sleep(waitNanos / 1_000_000, (int) (waitNanos % 1_000_000));
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new InterruptedIOException("convert interrupted");
                }
            }
            level += bytes;
        }
    }
}
