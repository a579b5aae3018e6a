package org.qcow4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.DiskImage;
import org.qcow4j.QcowException;
import org.qcow4j.RawConverter;
import org.qcow4j.UnsupportedFeatureException;

/** {@code convert}: copy images (concatenated) into a new image, as qemu-img convert does. */
final class ConvertCommand implements Command {
    private static final CommandLine.Option OUTPUT_FORMAT = CommandLine.Option.value("OUTPUT_FMT", "Output format (raw).", "-O");
    private static final CommandLine.Option PROGRESS = CommandLine.Option.flag("Show progress.", "-p");
    private static final CommandLine.Option QUIET = CommandLine.Option.flag("Quiet: no progress.", "-q");
    private static final CommandLine.Option WORKERS = CommandLine.Option.value("N", "Parallel workers, 1..16 (default: all cores).", "-m");
    private static final CommandLine.Option CACHE = CommandLine.Option.value("CACHE",
            "Output cache mode: unsafe (default, like qemu-img) does not force the output to disk; writeback, none, "
                    + "directsync and writethrough do before finishing.", "-t");
    private static final CommandLine.Option OUT_OF_ORDER = CommandLine.Option.flag(
            "Accepted for qemu-img compatibility: writes are always out of order.", "-W");
    private static final CommandLine.Option COMPRESS = CommandLine.Option.flag("Compress the output (qcow2 output only).", "-c");

    @Override
    public String name() {
        return "convert";
    }

    @Override
    public String synopsis() {
        return "convert [-p] [-m N] [-t CACHE] [-f FMT] [-O raw] INPUT... OUTPUT";
    }

    @Override
    public String description() {
        return "Convert images into a raw image (the inputs' contents, concatenated).";
    }

    @Override
    public List<CommandLine.Option> options() {
        return List.of(FORMAT, OUTPUT_FORMAT, PROGRESS, QUIET, WORKERS, CACHE, OUT_OF_ORDER, COMPRESS, FORCE_SHARE);
    }

    @Override
    public int run(CommandLine args, PrintWriter out) throws Exception {
        List<String> files = args.positionals();
        if (files.size() < 2) {
            throw new CommandLine.UsageException("expecting INPUT... OUTPUT");
        }
        String output = files.get(files.size() - 1);
        String outputFormat = args.get("-O", "raw");
        if (!outputFormat.equals("raw")) {
            throw new UnsupportedFeatureException(output, "output format '" + outputFormat + "' (convert writes raw for now)");
        }
        if (args.has("-c")) {
            throw new QcowException(output, "compression not supported for output format 'raw'");
        }
        boolean sync = switch (args.get("-t", "unsafe")) {
            case "unsafe" -> false;
            case "writeback", "none", "directsync", "writethrough" -> true;
            default -> throw new CommandLine.UsageException("invalid cache option '" + args.get("-t", "") + "'");
        };
        long threads = args.getLong("-m", Runtime.getRuntime().availableProcessors());
        if (threads < 1 || threads > 16) {
            throw new CommandLine.UsageException("-m must be 1..16, not " + threads);
        }
        List<DiskImage> inputs = new ArrayList<>();
        try {
            for (String in : files.subList(0, files.size() - 1)) {
                inputs.add(ImageArgs.open(args, in));
            }
            Progress bar = args.has("-p") && !args.has("-q") ? new Progress(out, RawConverter.totalSize(inputs)) : null;
            writeAtomically(Path.of(output), ch -> {
                new RawConverter((int) threads, bar == null ? null : bar::advance).convert(inputs, ch, output);
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
