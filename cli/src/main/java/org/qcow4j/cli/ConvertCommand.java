package org.qcow4j.cli;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;
import org.qcow4j.DiskImage;
import org.qcow4j.QcowException;
import org.qcow4j.RawConverter;
import org.qcow4j.UnsupportedFeatureException;

/** {@code convert}: copy images (concatenated) into a new image, as qemu-img convert does. */
@Command(name = "convert", description = "Convert images into a raw image (the inputs' contents, concatenated).")
final class ConvertCommand implements Callable<Integer> {
    @Mixin
    ImageArgs.Options input;

    @Option(names = "-O", paramLabel = "OUTPUT_FMT", defaultValue = "raw", description = "Output format (raw).")
    String outputFormat;

    @Option(names = "-p", description = "Show progress.")
    boolean progress;

    @Option(names = "-q", description = "Quiet: no progress.")
    boolean quiet;

    @Option(names = "-m", paramLabel = "N", description = "Parallel workers (default: all cores).")
    Integer workers;

    @Option(names = "-t", paramLabel = "CACHE", defaultValue = "unsafe",
            description = "Output cache mode: 'unsafe' (default, like qemu-img) or 'writeback'/'none'/'directsync'/"
                    + "'writethrough' to force the output to disk before finishing.")
    String cache;

    @Option(names = "-W", description = "Accepted for qemu-img compatibility; writes are always out of order.")
    boolean outOfOrder;

    @Option(names = "-c", description = "Compress the output (qcow2 output only).")
    boolean compress;

    @Parameters(arity = "2..*", paramLabel = "FILE", description = "INPUT... OUTPUT")
    List<String> files;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        String output = files.get(files.size() - 1);
        if (!outputFormat.equals("raw")) {
            throw new UnsupportedFeatureException(output, "output format '" + outputFormat + "' (convert writes raw for now)");
        }
        if (compress) {
            throw new QcowException(output, "compression not supported for output format 'raw'");
        }
        boolean sync = switch (cache) {
            case "unsafe" -> false;
            case "writeback", "none", "directsync", "writethrough" -> true;
            default -> throw new IllegalArgumentException("invalid cache option '" + cache + "'");
        };
        int threads = workers != null ? workers : Runtime.getRuntime().availableProcessors();
        if (threads < 1 || threads > 16) {
            throw new IllegalArgumentException("-m must be 1..16, not " + threads);
        }
        List<DiskImage> inputs = new ArrayList<>();
        try {
            for (String in : files.subList(0, files.size() - 1)) {
                inputs.add(input.open(in));
            }
            Progress bar = progress && !quiet ? new Progress(spec.commandLine().getOut(), RawConverter.totalSize(inputs)) : null;
            writeAtomically(Path.of(output), ch -> {
                new RawConverter(threads, bar == null ? null : bar::advance).convert(inputs, ch, output);
                if (sync) {
                    try {
                        ch.force(true);
                    } catch (IOException e) {
                        throw new QcowException(output, "cannot flush: " + e.getMessage(), e);
                    }
                }
            });
            if (bar != null) {
                bar.finish();
            }
        } finally {
            for (DiskImage d : inputs) {
                d.close();
            }
        }
        return ExitCodes.OK;
    }

    /** Writes the output under a temporary name beside it and renames it into place only on success. */
    interface OutputWriter {
        void write(FileChannel ch) throws IOException;
    }

    static void writeAtomically(Path output, OutputWriter writer) throws IOException {
        if (Files.exists(output) && !Files.isRegularFile(output)) {
            // A device or pipe: write in place, there is nothing to rename.
            try (FileChannel ch = FileChannel.open(output, StandardOpenOption.WRITE)) {
                writer.write(ch);
            }
            return;
        }
        Path dir = output.toAbsolutePath().getParent();
        Path tmp = Files.createTempFile(dir, "." + output.getFileName() + ".", ".qcow4j-tmp");
        boolean done = false;
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE)) {
                writer.write(ch);
            }
            Files.move(tmp, output, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            done = true;
        } finally {
            if (!done) {
                Files.deleteIfExists(tmp);
            }
        }
    }
}
