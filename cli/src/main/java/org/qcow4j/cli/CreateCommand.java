package org.qcow4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.UnsupportedFeatureException;

/** {@code create}: a new, empty image, as qemu-img create makes it. */
final class CreateCommand extends Command {
    private static final CommandLine.Option OPTIONS = CommandLine.Option.value("OPTIONS",
            "Image options: compat, cluster_size, refcount_bits, compression_type, extended_l2, lazy_refcounts, "
                    + "data_file, data_file_raw, preallocation, backing_file, backing_fmt.", "-o");
    private static final CommandLine.Option BACKING = CommandLine.Option.value("BACKING", "Backing file.", "-b");
    private static final CommandLine.Option BACKING_FORMAT = CommandLine.Option.value("FMT", "Backing file format.", "-F");
    private static final CommandLine.Option UNSAFE = CommandLine.Option.flag("Do not open the backing file.", "-u");
    private static final CommandLine.Option QUIET = CommandLine.Option.flag("Quiet.", "-q");
    private static final CommandLine.Option OUT_FORMAT = CommandLine.Option.value("FMT", "Image format: qcow2 (default) or raw.", "-f");

    CreateCommand() {
        super("create", "create [-q] [-f FMT] [-o OPTIONS] [-b BACKING -F FMT] [-u] IMAGE [SIZE]",
                "Create a new image, empty or over a backing file.",
                OUT_FORMAT, OPTIONS, BACKING, BACKING_FORMAT, UNSAFE, QUIET);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        List<String> p = args.positionals();
        if (p.isEmpty()) {
            throw new CommandLine.UsageException("Expecting image file name");
        }
        if (p.size() > 2) {
            throw new CommandLine.UsageException("Unexpected argument: " + p.get(2));
        }
        String image = p.get(0);
        String format = args.get("-f", "qcow2");
        Map<String, String> o = ImageOptions.parse(args.get("-o", null));
        long size = p.size() == 2 ? ImageOptions.size(p.get(1)) : -1;
        if (size >= 0 && o.containsKey("size")) {
            throw new QcowException(image, "The image size must be specified only once");
        }
        if (format.equals("raw")) {
            return createRaw(image, size, o, args.has("-q"), out);
        }
        if (!format.equals("qcow2")) {
            throw new UnsupportedFeatureException(image, "image format '" + format + "' (create makes qcow2 and raw)");
        }
        CreateOptions options = ImageOptions.apply(CreateOptions.defaults(size), o);
        if (args.has("-b")) {
            options = options.withBacking(args.get("-b", null), options.backingFormat());
        }
        if (args.has("-F")) {
            options = options.withBacking(options.backingFile(), args.get("-F", null));
        }
        if (options.backingFile() != null && options.backingFormat() == null) {
            throw new QcowException(image, "Backing file specified without backing format (use -F qcow2 or -F raw)");
        }
        if (options.backingFile() != null && !args.has("-u")) {
            // Like qemu-img, check that the backing file opens; it gives the size when none is given.
            String backingPath = Images.resolveRelative(image, options.backingFile());
            try (DiskImage b = Images.open(Path.of(backingPath), OpenOptions.defaults().withFormat(options.backingFormat()))) {
                if (options.size() < 0) {
                    options = options.withSize(b.size());
                }
            }
        }
        if (options.size() < 0) {
            throw new CommandLine.UsageException("Image creation needs a size parameter");
        }
        CreateOptions valid;
        try {
            valid = options.validate();
        } catch (IllegalArgumentException e) {
            throw new QcowException(image, e.getMessage());
        }
        if (!args.has("-q")) {
            out.println(ImageOptions.describe(image, valid, o, options.size()));
            out.flush();
        }
        Images.create(ImageArgs.path(image), valid);
        return ExitCodes.OK;
    }

    private static int createRaw(String image, long size, Map<String, String> o, boolean quiet, PrintWriter out)
            throws IOException, CommandLine.UsageException {
        for (String key : o.keySet()) {
            if (!key.equals("size") && !key.equals(ImageOptions.EXTENT_SIZE_HINT)) {
                throw new CommandLine.UsageException("Invalid parameter '" + key + "'");
            }
        }
        long s = o.containsKey("size") ? ImageOptions.size(o.get("size")) : size;
        if (s < 0) {
            throw new CommandLine.UsageException("Image creation needs a size parameter");
        }
        if (!quiet) {
            out.println("Formatting '" + image + "', fmt=raw size=" + s + ImageOptions.describeFileOptions(o));
            out.flush();
        }
        Images.createRaw(ImageArgs.path(image), s);
        return ExitCodes.OK;
    }
}
