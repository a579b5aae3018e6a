package org.qcow4j.cli;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/** Reads and patches big-endian fields of image files, for the tests that damage images on purpose. */
final class ImageBytes {
    private ImageBytes() {
    }

    static int getInt(Path img, long offset) throws IOException {
        return get(img, offset, 4).getInt();
    }

    static long getLong(Path img, long offset) throws IOException {
        return get(img, offset, 8).getLong();
    }

    static ByteBuffer get(Path img, long offset, int len) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(len);
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.READ)) {
            while (b.hasRemaining()) {
                if (ch.read(b, offset + b.position()) < 0) {
                    throw new IOException(img + ": short read at " + offset);
                }
            }
        }
        return b.flip().order(ByteOrder.BIG_ENDIAN);
    }

    static void putInt(Path img, long offset, int value) throws IOException {
        put(img, offset, ByteBuffer.allocate(4).order(ByteOrder.BIG_ENDIAN).putInt(0, value));
    }

    static void putLong(Path img, long offset, long value) throws IOException {
        put(img, offset, ByteBuffer.allocate(8).order(ByteOrder.BIG_ENDIAN).putLong(0, value));
    }

    static void put(Path img, long offset, ByteBuffer data) throws IOException {
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.WRITE)) {
            while (data.hasRemaining()) {
                ch.write(data, offset + data.position());
            }
        }
    }
}
