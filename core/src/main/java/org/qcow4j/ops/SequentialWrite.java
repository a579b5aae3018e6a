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
            OutputFile.writeReplacing(output, file -> {
                try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE, StandardOpenOption.CREATE)) {
                    try {
                        ch.truncate(0);
                    } catch (IOException e) {
                        throw new QcowException(name, "cannot write: " + e.getMessage(), e);
                    }
                    if (size > 0) {
                        RawConverter.writeAll(ch, name, ByteBuffer.allocate(1), size - 1); // the whole length, sparse
                    }
                    source.writeTo((offset, data) -> RawConverter.writeAll(ch, name, data, offset));
                    if (durable) {
                        force(ch, name);
                    }
                }
            });
            return;
        }
        CreateOptions valid;
        try {
            valid = qcow2.withSize(size).validate();
        } catch (IllegalArgumentException e) {
            throw new QcowException(name, "error while converting qcow2: " + e.getMessage()); // as a conversion
        }
        int clusterBits = valid.clusterBits();
        OutputFile.writeReplacing(output, file -> {
            try (Qcow2Writer w = Qcow2Writer.create(file, name, valid, dataClusters)) {
                source.writeTo((offset, data) -> {
                    if ((offset & ((1L << clusterBits) - 1)) != 0) {
                        throw new IllegalArgumentException("offset " + offset + " is not at a cluster");
                    }
                    w.writeData(offset >>> clusterBits, data);
                });
                w.finish(durable);
            }
        });
    }


    private static void force(FileChannel ch, String name) throws QcowException {
        try {
            ch.force(false); // fdatasync, as QEMU flushes
        } catch (IOException e) {
            throw new QcowException(name, "cannot flush: " + e.getMessage(), e);
        }
    }
}
