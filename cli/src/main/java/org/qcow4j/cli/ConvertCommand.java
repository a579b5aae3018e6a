package org.qcow4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.qcow4j.BitmapException;
import org.qcow4j.ConvertOptions;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.InvalidTableException;
import org.qcow4j.SnapshotException;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WritableImage;

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
            "Allow out-of-order writes (accepted: the order of qcow4j's writes is its own either way).", "-W");
    private static final CommandLine.Option COPY_RANGE = CommandLine.Option.flag(
            "Copy offloading, as qemu-img's: data ranges copied as they are, zeros included (not with -c, -S or "
                    + "--salvage).", "-C");
    private static final CommandLine.Option RATE = CommandLine.Option.value("RATE",
            "Write at most RATE bytes per second (k, M, G... suffixes; 0: no limit).", "-r");
    private static final CommandLine.Option SALVAGE = CommandLine.Option.flag(
            "Read what cannot be read (I/O errors, clusters refused as corrupt) as zeros, with a warning per "
                    + "512-byte sector, instead of failing.", "--salvage");
    private static final CommandLine.Option COMPRESS = CommandLine.Option.flag(
            "Compress every cluster that shrinks (qcow2 output).", "-c");
    private static final CommandLine.Option OPTIONS = CommandLine.Option.value("OPTIONS",
            "qcow2 output options, as for create (compat, cluster_size, refcount_bits, compression_type, ...).", "-o");
    private static final CommandLine.Option BACKING = CommandLine.Option.value("BACKING",
            "Backing file of the output: only what differs from it is written.", "-B");
    private static final CommandLine.Option BACKING_FORMAT = CommandLine.Option.value("FMT", "Format of -B (probed if omitted).", "-F");
    private static final CommandLine.Option SPARSE = CommandLine.Option.value("SPARSE_SIZE",
            "Zero runs of at least this size (default 4k) stay unallocated; 0 allocates the whole output.", "-S");
    private static final CommandLine.Option SKIP_CREATE = CommandLine.Option.flag(
            "Write into the existing OUTPUT (opened in the -O format, raw by default) instead of creating it.", "-n");
    private static final CommandLine.Option TARGET_IS_ZERO = CommandLine.Option.flag(
            "With -n: the target reads as zeros already, so zero ranges are not written.", "--target-is-zero");

    private static final CommandLine.Option SNAPSHOT = CommandLine.Option.value("SNAPSHOT_PARAM",
            "Convert the first input as of its internal snapshot: snapshot.id=ID,snapshot.name=NAME, or ID_OR_NAME.", "-l");
    private static final CommandLine.Option BITMAPS = CommandLine.Option.flag(
            "Copy the input's persistent dirty bitmaps (one qcow2 input, qcow2 output).", "--bitmaps");
    private static final CommandLine.Option SKIP_BROKEN = CommandLine.Option.flag(
            "With --bitmaps: leave out inconsistent bitmaps (with a warning) instead of failing.", "--skip-broken-bitmaps");

    ConvertCommand() {
        super("convert", "convert [-p] [-c] [-C] [-W] [--salvage] [-n [--target-is-zero]] [-S SPARSE_SIZE] [-m N] "
                        + "[-r RATE] [-t CACHE] [-f FMT] [-O raw|qcow2] [-o OPTIONS] [-B BACKING [-F FMT]] INPUT... OUTPUT",
                "Convert images (their contents concatenated) into a new raw or qcow2 image.",
                FORMAT, OUTPUT_FORMAT, OPTIONS, COMPRESS, BACKING, BACKING_FORMAT, PROGRESS, QUIET, WORKERS, CACHE, SOURCE_CACHE,
                OUT_OF_ORDER, COPY_RANGE, RATE, SALVAGE, FORCE_SHARE, SPARSE, SKIP_CREATE, TARGET_IS_ZERO, SNAPSHOT, BITMAPS, SKIP_BROKEN, OBJECT,
                IMAGE_OPTS);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        try {
            return convert(args, out, err);
        } catch (BitmapException e) {
            err.error(e.qemuWords()); // qemu-img's words, then its hint line
            if (e.hint() != null) {
                err.println(e.hint());
            }
            return ExitCodes.FAILURE;
        }
    }

    private int convert(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        int minSparse = minSparse(args, err);
        long rate = 0;
        for (String r : args.all("-r")) {
            rate = QemuNumbers.cvtnum("rate limit", r, Long.MAX_VALUE, err::error);
        }
        if (args.has("--skip-broken-bitmaps") && !args.has("--bitmaps")) {
            throw CommandLine.UsageException.withoutHint("Use of --skip-broken-bitmaps requires --bitmaps");
        }
        boolean copyRange = args.has("-C");
        if (copyRange && args.has("-c")) {
            throw CommandLine.UsageException.withoutHint("Cannot enable copy offloading when -c is used");
        }
        if (copyRange && args.has("-S")) {
            throw CommandLine.UsageException.withoutHint("Cannot enable copy offloading when -S is used");
        }
        if (copyRange && args.has("--salvage")) {
            throw CommandLine.UsageException.withoutHint("Cannot use copy offloading in salvaging mode");
        }
        boolean skipCreate = args.has("-n");
        if (skipCreate && args.has("-o")) {
            throw CommandLine.UsageException.withoutHint("-o has no effect when skipping image creation");
        }
        if (args.has("--target-is-zero") && !skipCreate) {
            throw CommandLine.UsageException.withoutHint("--target-is-zero requires use of -n flag");
        }
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
        boolean sync = ImageArgs.cacheMode(args.get("-t", "unsafe"), "cache");
        ImageArgs.cacheMode(args.get("-T", "writeback"), "source cache");
        long threads = args.getLong("-m", Runtime.getRuntime().availableProcessors());
        if (threads < 1 || threads > 16) {
            throw CommandLine.UsageException.withoutHint(
                    "Invalid number of coroutines. Allowed number of coroutines is between 1 and 16");
        }
        ConvertOptions common = ConvertOptions.raw().withThreads((int) threads).withDurable(sync).withMinSparse(minSparse)
                .withCopyRange(copyRange).withRateLimit(rate);
        if (args.has("--salvage")) {
            // qemu-img's warnings after its name, unless -q; the qcow2 driver's corruption line alone, even with -q
            boolean quiet = args.has("-q");
            common = common.withSalvage(w -> {
                if (w.startsWith("qcow2: ")) {
                    err.println(w);
                } else if (!quiet) {
                    err.error(w);
                }
            });
        }
        List<DiskImage> opened = new ArrayList<>(); // inputs, backing file, target: all closed at the end
        try {
            String[] snapshot = snapshotParam(args.get("-l", null));
            for (String in : files.subList(0, files.size() - 1)) {
                opened.add(snapshot != null && opened.isEmpty() ? openSnapshot(args, in, snapshot) : ImageArgs.open(args, in));
            }
            if (snapshot != null && snapshot[2] != null && opened.size() > 1) {
                throw new QcowException(output, "No support for concatenating multiple snapshot");
            }
            List<DiskImage> inputs = List.copyOf(opened);
            totalSize(inputs); // the sum must fit
            if (args.has("--bitmaps")) {
                if (inputs.size() > 1) {
                    throw new BitmapException(output, "Copying bitmaps only possible with single source");
                }
                Images.checkBitmapsCopyable(inputs.get(0), args.has("--skip-broken-bitmaps"));
            }
            if (skipCreate || org.qcow4j.nbd.NbdClient.isNbdName(output)) {
                // an NBD export cannot be created: QEMU opens the existing one instead, as -n does
                convertInto(args, inputs, output, outputFormat, common, opened, out, err);
            } else {
                convertNew(args, inputs, output, outputFormat, common, opened, out, err);
            }
        } finally {
            for (DiskImage d : opened) {
                d.close();
            }
        }
        return ExitCodes.OK;
    }

    /**
     * qemu-img's {@code -l}: {id, name, null} from {@code snapshot.id=ID,snapshot.name=NAME} (QEMU's
     * {@code internal_snapshot_opts}), or {null, null, ID_OR_NAME}; null without {@code -l}.
     */
    static String[] snapshotParam(String param) throws CommandLine.UsageException {
        if (param == null) {
            return null;
        }
        if (!param.startsWith("snapshot.")) {
            return new String[] {null, null, param};
        }
        String id = null;
        String name = null;
        for (String part : param.split(",", -1)) {
            int eq = part.indexOf('=');
            String key = eq < 0 ? part : part.substring(0, eq);
            String value = eq < 0 ? "on" : part.substring(eq + 1);
            switch (key) {
                case "snapshot.id" -> id = value;
                case "snapshot.name" -> name = value;
                default -> throw CommandLine.UsageException.reports("Invalid parameter '" + key + "'",
                        "Failed in parsing snapshot param '" + param + "'");
            }
        }
        return new String[] {id, name, null};
    }

    /** The first input as of its snapshot (QEMU's {@code bdrv_snapshot_load_tmp[_by_id_or_name]}). */
    static DiskImage openSnapshot(CommandLine args, String in, String[] snapshot) throws IOException {
        ImageArgs.Operand o = ImageArgs.operand(args, in);
        try {
            if (snapshot[2] == null) {
                return ImageArgs.opening(in, () -> Images.openSnapshot(o.path(), o.options(), snapshot[0], snapshot[1]));
            }
            try {
                return ImageArgs.opening(in, () -> Images.openSnapshot(o.path(), o.options(), snapshot[2], null));
            } catch (SnapshotException e) {
                if (e.reason() != SnapshotException.Reason.NOT_FOUND) {
                    throw e;
                }
                return ImageArgs.opening(in, () -> Images.openSnapshot(o.path(), o.options(), null, snapshot[2]));
            }
        } catch (InvalidTableException e) {
            throw new IOException("Failed to load snapshot: " + e.qemuWords(), e); // qcow2_snapshot_load_tmp's errp
        } catch (SnapshotException e) {
            String m = e.getMessage();
            throw new IOException("Failed to load snapshot: " + (m.startsWith(in + ": ") ? m.substring(in.length() + 2)
                    : m.startsWith(o.path() + ": ") ? m.substring(o.path().toString().length() + 2) : m), e);
        }
    }

    /** The new image: raw or qcow2 with the {@code -o}, {@code -c} and {@code -B} options. */
    private static void convertNew(CommandLine args, List<DiskImage> inputs, String output, String outputFormat,
                                   ConvertOptions common, List<DiskImage> opened, PrintWriter out, Stderr err)
            throws Exception {
        boolean qcow2 = outputFormat.equals("qcow2");
        if (args.has("-c") && !qcow2) {
            throw new QcowException(output, "compression not supported for output format 'raw'");
        }
        if (!qcow2 && args.has("-B")) {
            throw CommandLine.UsageException.withoutHint("Backing file not supported for file format 'raw'");
        }
        Map<String, String> given = ImageOptions.check(ImageOptions.parse(ImageOptions.optionList(args.all("-o"))),
                qcow2 ? ImageOptions.QCOW2 : ImageOptions.RAW, "");
        if (args.has("-c") && (given.containsKey("encrypt.format") || ImageOptions.isOn(given.getOrDefault("encryption", "off")))) {
            throw CommandLine.UsageException.withoutHint("Compression and encryption not supported at the same time");
        }
        ConvertOptions options = common.withCompression(args.has("-c"));
        if (qcow2) {
            CreateOptions qcow2Options;
            try {
                qcow2Options = ImageOptions.apply(output, CreateOptions.defaults(0), given, ImageArgs.secrets(args));
            } catch (IllegalArgumentException e) {
                throw new QcowException(output, "error while converting qcow2: " + e.getMessage());
            }
            if (args.has("-c") && qcow2Options.dataFile() != null) {
                throw new QcowException(output, "compression is not possible with an external data file");
            }
            options = options.withQcow2(qcow2Options);
            String backingName = args.get("-B", qcow2Options.backingFile());
            if (backingName != null) {
                refuseBackingWithSeveral(inputs);
                String backingFormat = args.get("-F", qcow2Options.backingFormat());
                if (backingFormat == null) {
                    // QEMU 7.2 no longer probes a new image's backing file
                    throw CommandLine.UsageException.withoutHint("Use of backing file requires explicit backing format");
                }
                DiskImage backing = Images.open(Path.of(Images.resolveRelative(output, backingName)),
                        OpenOptions.defaults().withFormat(backingFormat));
                opened.add(backing);
                options = options.withBacking(backing).withQcow2(qcow2Options.withBacking(backingName, backing.format()));
            }
        }
        if (args.has("--bitmaps") && (!qcow2 || options.qcow2().version() < 3)) {
            // qemu-img creates the (empty) target, then finds its driver cannot store bitmaps
            if (qcow2) {
                Images.create(ImageArgs.path(output), options.qcow2().withSize(totalSize(inputs)));
            } else {
                Images.createRaw(ImageArgs.path(output), totalSize(inputs));
            }
            throw new BitmapException(output, "Format driver '" + outputFormat + "' does not support bitmaps");
        }
        Progress bar = progress(args, out, inputs, options.backing() != null);
        Images.convert(inputs, ImageArgs.path(output), options.withProgress(bar == null ? null : bar::advance));
        if (bar != null) {
            bar.finish();
        }
        if (args.has("--bitmaps")) {
            try (WritableImage target = ImageArgs.opening(output, () -> Images.openWritable(ImageArgs.path(output),
                    OpenOptions.defaults().withFormat("qcow2").withQemuLayout(true)))) {
                copyBitmaps(args, inputs.get(0), target, err);
            }
        }
    }

    /** {@code --bitmaps}: the input's bitmaps into the target, stored when it closes. */
    private static void copyBitmaps(CommandLine args, DiskImage input, WritableImage target, Stderr err)
            throws java.io.IOException {
        Images.copyBitmaps(input, target, args.has("--skip-broken-bitmaps"), w -> err.error("warning: " + w));
    }

    /**
     * {@code -n}: the inputs written into the existing output, opened in the {@code -O} format (raw unless given: as
     * qemu-img, the target is not probed), which must be at least as large as they are together.
     */
    private static void convertInto(CommandLine args, List<DiskImage> inputs, String output, String outputFormat,
                                    ConvertOptions common, List<DiskImage> opened, PrintWriter out, Stderr err)
            throws Exception {
        if (args.has("-c")) {
            throw new UnsupportedFeatureException(output, "compressed writes into an existing image (-c with -n)");
        }
        String backingName = args.get("-B", null);
        if (backingName != null) {
            refuseBackingWithSeveral(inputs);
        }
        WritableImage target = org.qcow4j.nbd.NbdClient.isNbdName(output) ? ImageArgs.openNbdWritable(output, outputFormat)
                : ImageArgs.opening(output, () -> Images.openWritable(ImageArgs.path(output),
                        OpenOptions.defaults().withFormat(outputFormat).withQemuLayout(true)));
        opened.add(target);
        if (target.size() < totalSize(inputs)) {
            throw CommandLine.UsageException.withoutHint("output file is smaller than input file");
        }
        ConvertOptions options = common.withTargetIsZero(args.has("--target-is-zero"));
        if (backingName != null) {
            // Only says that the target has a backing file: what the inputs leave to theirs stays unwritten.
            String name = Images.resolveRelative(output, backingName);
            DiskImage backing = ImageArgs.opening(name, () -> Images.open(Path.of(name),
                    OpenOptions.defaults().withFormat(args.get("-F", null))));
            opened.add(backing);
            options = options.withBacking(backing);
        }
        if (args.has("--bitmaps") && !target.qcow2().map(q -> q.header().version() >= 3).orElse(false)) {
            throw new BitmapException(output, "Format driver '" + outputFormat + "' does not support bitmaps");
        }
        Progress bar = progress(args, out, inputs, backingName != null);
        Images.convertInto(inputs, target, options.withProgress(bar == null ? null : bar::advance));
        if (bar != null) {
            bar.finish();
        }
        if (args.has("--bitmaps")) {
            copyBitmaps(args, inputs.get(0), target, err);
        }
    }

    private static long totalSize(List<DiskImage> inputs) {
        long total = 0;
        for (DiskImage in : inputs) {
            total = Math.addExact(total, in.size());
        }
        return total;
    }

    /** qemu-img's refusal, naming no file (the library refuses it too, naming the output). */
    private static void refuseBackingWithSeveral(List<DiskImage> inputs) throws CommandLine.UsageException {
        if (inputs.size() > 1) {
            throw CommandLine.UsageException.withoutHint("Having a backing file for the target makes no sense "
                    + "when concatenating multiple input images");
        }
    }

    /** {@code -p} without {@code -q}: qemu-img's progress over the data runs the copy will write. */
    private static Progress progress(CommandLine args, PrintWriter out, List<DiskImage> inputs, boolean backing)
            throws java.io.IOException {
        if (!args.has("-p") || args.has("-q")) {
            return null;
        }
        // salvaging, the data runs as the copy will see them (what cannot be read counts as data, as in qemu-img)
        return new Progress(out, Progress.dataRuns(args.has("--salvage") ? Images.salvaged(inputs) : inputs, backing));
    }

    /** {@code -S}: qemu-img's checks and words; the default 4k. */
    private static int minSparse(CommandLine args, Stderr err) throws CommandLine.UsageException {
        long value = ConvertOptions.DEFAULT_MIN_SPARSE;
        for (String v : args.all("-S")) {
            value = QemuNumbers.cvtnum("buffer size for sparse output", v, Long.MAX_VALUE, err::error);
            if (value % 512 != 0 || value > ConvertOptions.MAX_MIN_SPARSE) {
                throw CommandLine.UsageException.withoutHint("Invalid buffer size for sparse output specified. Valid "
                        + "sizes are multiples of 512 up to " + ConvertOptions.MAX_MIN_SPARSE + ". Select 0 to disable "
                        + "sparse detection (fully allocates output).");
            }
        }
        return (int) value;
    }
}
