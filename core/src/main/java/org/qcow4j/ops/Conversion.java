package org.qcow4j.ops;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import org.qcow4j.ConvertOptions;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.QcowException;
import org.qcow4j.io.Access;
import org.qcow4j.io.OpenFile;
import org.qcow4j.io.OpenFiles;
import org.qcow4j.io.OutputFile;
import org.qcow4j.qcow2.Qcow2Writer;

/**
 * Whole-file outputs: new images and conversions, written under a temporary name and renamed when complete. A new
 * image replaces an existing file only once complete; a conversion removes it when it starts, as qemu-img's truncates
 * it ({@link OutputFile#writeReplacing}: the 1 GiB output then reuses the old one's page cache).
 */
public final class Conversion {
    private Conversion() {
    }

    /** A new, empty qcow2 image ({@code qemu-img create}). */
    public static void create(Path path, CreateOptions options) throws IOException {
        String name = path.toString();
        CreateOptions valid = validate(options, name);
        OutputFile.writeAtomically(path, file -> {
            try (Qcow2Writer w = Qcow2Writer.create(file, name, valid, 0)) {
                w.finish(false);
            }
        });
    }

    /** A new sparse raw image of {@code size} bytes rounded up to 512. */
    public static void createRaw(Path path, long size) throws IOException {
        long rounded = (size + 511) & ~511L;
        OutputFile.writeAtomically(path, file -> {
            try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
                raf.setLength(rounded); // sparse: no block is allocated
            }
        });
    }

    /** The inputs concatenated into the new image {@code output}, raw or qcow2. */
    public static void convert(List<DiskImage> sources, Path output, ConvertOptions options) throws IOException {
        Salvage salvage = Salvage.of(options.salvage());
        try {
            convertNew(salvage.wrap(sources), output, options);
        } finally {
            salvage.report();
        }
    }

    private static void convertNew(List<DiskImage> inputs, Path output, ConvertOptions options) throws IOException {
        String name = output.toString();
        long total = RawConverter.totalSize(inputs);
        if (options.qcow2() == null) {
            OutputFile.writeReplacing(output, file -> {
                try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE, StandardOpenOption.CREATE)) {
                    new RawConverter(options.threads(), options.progress(), options.minSparse(), options.copyRange(),
                            options.rateLimit()).convert(inputs, ch, name);
                    if (options.durable()) {
                        force(ch, name);
                    }
                }
            });
            return;
        }
        if (inputs.size() > 1 && (options.backing() != null || options.qcow2().backingFile() != null)) {
            // qemu-img refuses it too: the backing file could only stand behind the first input.
            throw new QcowException(name, "Having a backing file for the target makes no sense when concatenating "
                    + "multiple input images");
        }
        CreateOptions valid;
        try {
            valid = options.qcow2().withSize(total).validate();
        } catch (IllegalArgumentException e) {
            throw new QcowException(name, "error while converting qcow2: " + e.getMessage()); // qemu-img's words
        }
        if (options.compress() && valid.dataFile() != null) {
            throw new QcowException(name, "compression is not possible with an external data file");
        }
        long allClusters = valid.geometry().sizeToClusters(total);
        long hint = options.minSparse() == 0 || !Qcow2Writer.layoutDependsOnHint(valid, allClusters)
                ? allClusters // every cluster is written, or the hint changes nothing
                : Qcow2Converter.dataClustersHint(inputs, valid.clusterBits());
        OutputFile.writeReplacing(output, file -> {
            try (Qcow2Writer w = Qcow2Writer.create(file, name, valid, hint)) {
                new Qcow2Converter(options.threads(), options.compress(), options.backing(), options.progress(),
                        options.minSparse(), options.copyRange(), options.rateLimit())
                        .convert(inputs, w);
                w.finish(options.durable());
            }
        });
    }

    /** The inputs as raw data written in place into {@code target} at {@code offset}, the rest of it kept. */
    public static void convertInto(List<DiskImage> inputs, Path target, long offset, ConvertOptions options)
            throws IOException {
        String name = target.toString();
        if (!Files.exists(target)) {
            Files.createFile(target);
        }
        Salvage salvage = Salvage.of(options.salvage());
        try (OpenFile file = OpenFiles.open(target, Access.WRITE, name)) {
            FileChannel ch = file.channel();
            new RawConverter(options.threads(), options.progress(), options.minSparse(), options.copyRange(),
                    options.rateLimit()).convertInto(salvage.wrap(inputs), ch, target, name, offset);
            if (options.durable()) {
                force(ch, name);
            }
        } finally {
            salvage.report();
        }
    }

    /**
     * The inputs as {@code --salvage} reads them ({@link ConvertOptions#salvage}), telling no one: a sector whose
     * block status or data cannot be read is data, and reads as zeros. For what must look at the inputs as the
     * conversion will (the progress of a salvaging {@code convert -p}).
     */
    public static List<DiskImage> salvaged(List<DiskImage> inputs) {
        return Salvage.of(line -> { }).wrap(inputs);
    }

    private static CreateOptions validate(CreateOptions options, String name) throws QcowException {
        try {
            return options.validate();
        } catch (IllegalArgumentException e) {
            throw new QcowException(name, e.getMessage());
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
