package org.qcow4j.io;

import java.io.IOException;
import java.nio.channels.FileChannel;

/**
 * One user's hold on a file opened through {@link OpenFiles}: its channel and its lock bytes. Closing it gives them
 * back; the file itself closes with its last user. Never close the channel directly.
 */
public final class OpenFile implements AutoCloseable {
    private final OpenFiles.Entry entry;
    private final boolean writable;
    private final int held;
    private boolean closed;

    OpenFile(OpenFiles.Entry entry, boolean writable, int held) {
        this.entry = entry;
        this.writable = writable;
        this.held = held;
    }

    /** The file's channel: read-write if this hold is writable, else read-only or read-write. */
    public FileChannel channel() {
        return entry.channel(writable);
    }

    /** Whether this process holds the file otherwise too (an image read by the very command that replaces it). */
    public boolean heldElsewhereHere() {
        return OpenFiles.users(entry) > 1;
    }

    @Override
    public synchronized void close() throws IOException {
        if (!closed) {
            closed = true;
            OpenFiles.close(entry, held);
        }
    }
}
