package org.qcow4j.ops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.qcow4j.BlockWriter;
import org.qcow4j.CreateOptions;
import org.qcow4j.QcowException;
import org.qcow4j.io.OutputFile;
import org.qcow4j.qcow2.Qcow2Writer;

/**
 * A new image written in one pass on the calling thread by a producer that already knows where its data is and that
 * it is not zero (e2image's metadata): the files a conversion of the same data writes, without its pipeline of
 * extents, chunks and workers, which in a short command costs more in interpreting and compiling than the copy.
 */
public final class SequentialWrite {
    private SequentialWrite() {
    }

    /** See {@link org.qcow4j.Images#writeSequentially}. */
    public static void write(Path output, long size, CreateOptions qcow2, long dataClusters, boolean durable,
            BlockWriter.Source source) throws IOException {
        String name = output.toString();
        if (qcow2 == null) {
            OutputFile.writeReplacing(output, new RawFile(name, size, durable, source));
            return;
        }
        CreateOptions valid;
        try {
            valid = qcow2.withSize(size).validate();
        } catch (IllegalArgumentException e) {
            throw new QcowException(name, "error while converting qcow2: " + e.getMessage()); // as a conversion
        }
        OutputFile.writeReplacing(output, new Qcow2File(name, valid, dataClusters, durable, source));
    }

    // Classes, not lambdas: the first lambda a JVM links sets up java.lang.invoke, 5-10 ms of a short command's
    // start-up, and e2image's whole path runs without one.

    /** A sparse raw file as long as the image, the source's blocks written where they belong. */
    private record RawFile(String name, long size, boolean durable, BlockWriter.Source source)
            implements OutputFile.Writer {
        @Override
        public void write(Path file) throws IOException {
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE, StandardOpenOption.CREATE)) {
                try {
                    ch.truncate(0);
                } catch (IOException e) {
                    throw new QcowException(name, "cannot write: " + e.getMessage(), e);
                }
                if (size > 0) {
                    RawConverter.writeAll(ch, name, ByteBuffer.allocate(1), size - 1); // the whole length, sparse
                }
                source.writeTo(new RawBlocks(ch, name));
                if (durable) {
                    force(ch, name);
                }
            }
        }
    }

    private record RawBlocks(FileChannel ch, String name) implements BlockWriter {
        @Override
        public void write(long offset, ByteBuffer data) throws IOException {
            RawConverter.writeAll(ch, name, data, offset);
        }
    }

    /** A qcow2 file whose clusters are the source's blocks, in the order the source writes them. */
    private record Qcow2File(String name, CreateOptions valid, long dataClusters, boolean durable,
            BlockWriter.Source source) implements OutputFile.Writer {
        @Override
        public void write(Path file) throws IOException {
            try (Qcow2Writer w = Qcow2Writer.create(file, name, valid, dataClusters)) {
                source.writeTo(new Qcow2Blocks(w, valid.clusterBits()));
                w.finish(durable);
            }
        }
    }

    private record Qcow2Blocks(Qcow2Writer w, int clusterBits) implements BlockWriter {
        @Override
        public void write(long offset, ByteBuffer data) throws IOException {
            if ((offset & ((1L << clusterBits) - 1)) != 0) {
                throw new IllegalArgumentException("offset " + offset + " is not at a cluster");
            }
            w.writeData(offset >>> clusterBits, data);
        }
    }

    private static void force(FileChannel ch, String name) throws QcowException {
        try {
            ch.force(false); // fdatasync, as QEMU flushes
        } catch (IOException e) {
            throw new QcowException(name, "cannot flush: " + e.getMessage(), e);
        }
    }
}
