package org.qcow4j;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Where {@link Images#writeSequentially} takes a new image's data: {@code data} goes to guest byte {@code offset},
 * offsets ascending, whole clusters for a qcow2 output. What is never written reads as zeros.
 */
@FunctionalInterface
public interface BlockWriter {
    void write(long offset, ByteBuffer data) throws IOException;

    /** Produces an image's data, writing it to the {@link BlockWriter} it is given, in ascending order. */
    @FunctionalInterface
    interface Source {
        void writeTo(BlockWriter out) throws IOException;
    }
}
