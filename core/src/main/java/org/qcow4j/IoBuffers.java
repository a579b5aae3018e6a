package org.qcow4j;

import java.nio.ByteBuffer;

/**
 * Buffers for bulk reads and writes: what qcow4j's own copies read images into and write files from, and what a
 * caller of {@link DiskImage#read} or {@link WritableImage#write} moving much data should pass for the same speed.
 */
public final class IoBuffers {
    /** The page size buffers are aligned to: 4 KiB, the x86-64 and common arm64 page. */
    public static final int PAGE = 4096;

    private IoBuffers() {
    }

    /**
     * A direct buffer of {@code capacity} bytes starting on a page boundary. {@link ByteBuffer#allocateDirect} returns
     * malloc's alignment (16 bytes), and the kernel copies to and from a misaligned user buffer markedly slower: a
     * 1 GiB raw-to-raw copy through one 2 MiB buffer took 0.71 s of CPU page-aligned against 0.91 s (median of 10
     * interleaved runs, 2-core AMD EPYC VM, 2026-12-02). QEMU aligns its I/O buffers the same way
     * ({@code qemu_blockalign}).
     */
    public static ByteBuffer allocate(int capacity) {
        // Whole pages and one more: the aligned part then holds them all, wherever malloc put the block.
        long pages = (capacity + (long) PAGE - 1) / PAGE;
        ByteBuffer block = ByteBuffer.allocateDirect(Math.toIntExact((pages + 1) * PAGE));
        return block.alignedSlice(PAGE).limit(capacity).slice();
    }
}
