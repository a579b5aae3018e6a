package org.qcow4j.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.qcow4j.ConvertOptions;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.UnsupportedFeatureException;

/** {@code convert}: copy images (concatenated) into a new image, as qemu-img convert does. */
final class ConvertCommand extends Command {
    private static final CommandLine.Option OUTPUT_FORMAT = CommandLine.Option.value("OUTPUT_FMT", "Output format: raw (default) or qcow2.", "-O");
    private static final CommandLine.Option PROGRESS = CommandLine.Option.flag("Show progress.", "-p");
    private static final CommandLine.Option QUIET = CommandLine.Option.flag("Quiet: no progress.", "-q");
    private static final CommandLine.Option WORKERS = CommandLine.Option.value("N", "Parallel workers, 1..16 (default: all cores).", "-m");
    private static final CommandLine.Option CACHE = CommandLine.Option.value("CACHE",
            "Output cache mode: unsafe (default, like qemu-img) does not force the output to disk; writeback, none, "
                    + "directsync and writethrough do before finishing.", "-t");
    private static final CommandLine.Option OUT_OF_ORDER = CommandLine.Option.flag(
            "Accepted for qemu-img compatibility: writes are always out of order.", "-W");
    private static final CommandLine.Option COMPRESS = CommandLine.Option.flag(
            "Compress every cluster that shrinks (qcow2 output).", "-c");
    private static final CommandLine.Option OPTIONS = CommandLine.Option.value("OPTIONS",
            "qcow2 output options, as for create (compat, cluster_size, refcount_bits, compression_type, ...).", "-o");
    private static final CommandLine.Option BACKING = CommandLine.Option.value("BACKING",
            "Backing file of the output: only what differs from it is written.", "-B");
    private static final CommandLine.Option BACKING_FORMAT = CommandLine.Option.value("FMT", "Format of -B (probed if omitted).", "-F");

    ConvertCommand() {
        super("convert", "convert [-p] [-c] [-m N] [-t CACHE] [-f FMT] [-O raw|qcow2] [-o OPTIONS] [-B BACKING [-F FMT]] INPUT... OUTPUT",
                "Convert images (their contents concatenated) into a new raw or qcow2 image.",
                FORMAT, OUTPUT_FORMAT, OPTIONS, COMPRESS, BACKING, BACKING_FORMAT, PROGRESS, QUIET, WORKERS, CACHE, SOURCE_CACHE,
                OUT_OF_ORDER, FORCE_SHARE);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        List<String> files = args.positionals();
        if (files.size() < 2) {
            throw CommandLine.UsageException.withoutHint("Must specify image file name");
        }
        String output = files.get(files.size() - 1);
        String outputFormat = args.get("-O", "raw");
        if (!outputFormat.equals("raw") && !outputFormat.equals("qcow2")) {
            if (!ImageArgs.QEMU_FORMATS.contains(outputFormat)) {
                throw CommandLine.UsageException.withoutHint("Unknown file format '" + outputFormat + "'");
            }
            throw new UnsupportedFeatureException(output, "output format '" + outputFormat + "' (convert writes raw and qcow2)");
        }
        boolean qcow2 = outputFormat.equals("qcow2");
        if (args.has("-c") && !qcow2) {
            throw new QcowException(output, "compression not supported for output format 'raw'");
        }
        if (!qcow2 && args.has("-B")) {
            throw CommandLine.UsageException.withoutHint("Backing file not supported for file format 'raw'");
        }
        Map<String, String> given = ImageOptions.check(ImageOptions.parse(ImageOptions.optionList(args.all("-o"))),
                qcow2 ? ImageOptions.QCOW2 : ImageOptions.RAW, "");
        boolean sync = ImageArgs.cacheMode(args.get("-t", "unsafe"), "cache");
        ImageArgs.cacheMode(args.get("-T", "writeback"), "source cache");
        long threads = args.getLong("-m", Runtime.getRuntime().availableProcessors());
        if (threads < 1 || threads > 16) {
            throw CommandLine.UsageException.withoutHint(
                    "Invalid number of coroutines. Allowed number of coroutines is between 1 and 16");
        }
        CreateOptions qcow2Options = null;
        if (qcow2) {
            try {
                qcow2Options = ImageOptions.apply(output, CreateOptions.defaults(0), given);
            } catch (IllegalArgumentException e) {
                throw new QcowException(output, "error while converting qcow2: " + e.getMessage());
            }
        }
        if (qcow2 && args.has("-c") && qcow2Options.dataFile() != null) {
            throw new QcowException(output, "compression is not possible with an external data file");
        }
        List<DiskImage> inputs = new ArrayList<>();
        DiskImage backing = null;
        try {
            for (String in : files.subList(0, files.size() - 1)) {
                inputs.add(ImageArgs.open(args, in));
            }
            long total = 0;
            for (DiskImage in : inputs) {
                total = Math.addExact(total, in.size());
            }
            Progress bar = args.has("-p") && !args.has("-q")
                    ? new Progress(out, Progress.dataRuns(inputs, qcow2 && args.get("-B", qcow2Options.backingFile()) != null))
                    : null;
            ConvertOptions options = (qcow2 ? ConvertOptions.qcow2(qcow2Options) : ConvertOptions.raw())
                    .withThreads((int) threads).withCompression(args.has("-c")).withDurable(sync)
                    .withProgress(bar == null ? null : bar::advance);
            if (qcow2) {
                String backingName = args.get("-B", qcow2Options.backingFile());
                if (backingName != null && inputs.size() > 1) {
                    // qemu-img's words, naming no file (the library refuses it too, naming the output)
                    throw CommandLine.UsageException.withoutHint("Having a backing file for the target makes no sense "
                            + "when concatenating multiple input images");
                }
                if (backingName != null) {
                    backing = Images.open(Path.of(Images.resolveRelative(output, backingName)),
                            OpenOptions.defaults().withFormat(args.get("-F", qcow2Options.backingFormat())));
                    options = options.withBacking(backing)
                            .withQcow2(qcow2Options.withBacking(backingName, backing.format()));
                }
            }
            Images.convert(inputs, ImageArgs.path(output), options);
            if (bar != null) {
                bar.finish();
            }
        } finally {
            for (DiskImage d : inputs) {
                d.close();
            }
            if (backing != null) {
                backing.close();
            }
        }
        return ExitCodes.OK;
    }
}
