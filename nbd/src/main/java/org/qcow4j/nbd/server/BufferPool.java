package org.qcow4j.nbd.server;

import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import org.qcow4j.IoBuffers;

/**
 * The server's payload buffers: direct buffers of {@link #SLAB} bytes, shared by all connections and reused, so a read
 * goes from the image file to the socket (and a write from the socket to the file) without the JDK's copies through a
 * temporary direct buffer, without zeroing a new array per request and without garbage. At most {@code maxSlabs}
 * exist; beyond them, and for payloads larger than a slab, plain heap buffers are handed out as before.
 */
final class BufferPool {
    /** nbdcopy's and qemu's usual request size, and the size of a structured read's data chunks. */
    static final int SLAB = 256 * 1024;

    private final ConcurrentLinkedQueue<ByteBuffer> free = new ConcurrentLinkedQueue<>();
    private final AtomicInteger created = new AtomicInteger();
    private final int maxSlabs;

    /** @param maxSlabs how many direct slabs may exist at once (their memory is never given back while serving) */
    BufferPool(int maxSlabs) {
        this.maxSlabs = maxSlabs;
    }

    /** A buffer with position 0 and limit {@code n}; give it back with {@link #release}. */
    ByteBuffer acquire(int n) {
        if (n <= SLAB) {
            ByteBuffer b = free.poll();
            if (b == null && created.getAndIncrement() < maxSlabs) {
                b = IoBuffers.allocate(SLAB);
            } else if (b == null) {
                created.decrementAndGet();
            }
            if (b != null) {
                return b.clear().limit(n);
            }
        }
        return ByteBuffer.allocate(n);
    }

    /** Takes back a buffer from {@link #acquire} (heap buffers are left to the garbage collector); null is ignored. */
    void release(ByteBuffer b) {
        if (b != null && b.isDirect() && b.capacity() == SLAB) {
            free.offer(b);
        }
    }
}
