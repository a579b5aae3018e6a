package org.qcow4j.ops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.qcow4j.ConvertOptions;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.IoBuffers;
import org.qcow4j.OpenOptions;
import org.qcow4j.WritableImage;
import org.qcow4j.qcow2.Qcow2Image;

/**
 * qemu-img dd's copy: a new image of the range's length (qcow2 with the given creation options, else raw), then the
 * range written into it block after block from its start, every block as data (zeros too, as qemu-img writes them),
 * in QEMU's layout. The output is created whole before anything is copied, as qemu-img's is.
 */
public final class RangeCopy {
    /** The most one write carries (a block larger than this goes in pieces, in order, with the same result). */
    private static final int MAX_PIECE = 8 << 20;

    private RangeCopy() {
    }

    public static void copy(DiskImage input, long offset, long length, Path output, ConvertOptions options,
                            int blockSize) throws IOException {
        if (blockSize <= 0 || offset < 0 || length < 0 || offset + length > input.size() + 511) {
            throw new IllegalArgumentException("bad range " + offset + "+" + length + " of " + input.size()
                    + " bytes in blocks of " + blockSize);
        }
        CreateOptions qcow2 = options.qcow2();
        if (qcow2 == null) {
            Conversion.createRaw(output, length);
        } else {
            Conversion.create(output, qcow2.withSize(length));
        }
        OpenOptions open = OpenOptions.defaults().withFormat(qcow2 == null ? "raw" : "qcow2").withQemuLayout(true);
        try (WritableImage out = Qcow2Image.openWritable(output, open)) {
            ByteBuffer buf = IoBuffers.allocate((int) Math.min(blockSize, Math.max(512, Math.min(length, MAX_PIECE))));
            for (long done = 0; done < length; ) {
                long block = Math.min(blockSize, length - done);
                for (long in = 0; in < block; ) {
                    int n = (int) Math.min(buf.capacity(), block - in);
                    buf.clear().limit(n);
                    input.read(buf, offset + done + in);
                    buf.flip();
                    out.write(buf, done + in);
                    in += n;
                }
                done += block;
                if (options.progress() != null) {
                    options.progress().accept(block);
                }
            }
            out.flush();
        }
    }
}
