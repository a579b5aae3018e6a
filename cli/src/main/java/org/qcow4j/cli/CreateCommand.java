package org.qcow4j.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.MissingFileException;
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
                OUT_FORMAT, OPTIONS, BACKING, BACKING_FORMAT, UNSAFE, QUIET, OBJECT);
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
        // qemu-img's default format is raw; qcow4j's own command makes qcow2 unless told otherwise
        String format = args.get("-f", err.program() == Program.QCOW4J ? "qcow2" : "raw");
        if (!format.equals("qcow2") && !format.equals("raw") && !format.equals("luks")) {
            if (!ImageArgs.QEMU_FORMATS.contains(format)) {
                throw new QcowException(image, "Unknown file format '" + format + "'");
            }
            throw new UnsupportedFeatureException(image, "image format '" + format + "' (create makes qcow2 and raw)");
        }
        String optionList = ImageOptions.optionList(args.all("-o"));
        long size = p.size() == 2 ? ImageOptions.size(p.get(1)) : -1;
        // QEMU's order: the options' names and types, then the size, the backing file, "Formatting", the driver.
        Map<String, String> o = ImageOptions.check(ImageOptions.parse(optionList),
                format.equals("raw") ? ImageOptions.RAW : format.equals("luks") ? ImageOptions.LUKS : ImageOptions.QCOW2,
                image + ": ");
        if (o.containsKey("size")) {
            if (size >= 0) {
                throw new QcowException(image, "The image size must be specified only once");
            }
            size = Long.parseLong(o.get("size"));
        }
        if (args.has("-b")) {
            o.put("backing_file", args.get("-b", null));
        }
        if (args.has("-F")) {
            o.put("backing_fmt", args.get("-F", null));
        }
        String backing = o.get("backing_file");
        if (backing != null && format.equals("raw")) {
            throw new QcowException(image, "Backing file not supported for file format 'raw'");
        }
        if (backing != null && backing.isEmpty()) {
            throw new QcowException(image, "Expected backing file name, got empty string");
        }
        if (backing != null && !args.has("-u")) {
            // Like qemu-img, open the backing file: it must exist, its format be named, and it gives the size when
            // none is given.
            String backingFormat = o.get("backing_fmt");
            DiskImage b;
            String backingPath = backing;
            try {
                backingPath = Images.resolveRelative(image, backing);
                b = Images.open(Path.of(backingPath), OpenOptions.defaults().withFormat(backingFormat).withNoIo());
            } catch (MissingFileException e) {
                throw new QcowException(image, ExitCodes.noSuchFile(backingPath) + "\nCould not open backing image.");
            } catch (UnsupportedFeatureException e) {
                if (e.qemuWords() == null) {
                    throw e;
                }
                throw new QcowException(image, e.qemuWords() + "\nCould not open backing image.");
            }
            try (b) {
                if (backingFormat == null) {
                    throw new QcowException(image, "Backing file specified without backing format\n"
                            + "Detected format of " + b.format() + ".");
                }
                if (size < 0) {
                    size = b.size();
                }
            }
        } else if (backing != null && o.get("backing_fmt") == null) {
            throw new QcowException(image, "Backing file specified without backing format");
        }
        if (size < 0) {
            throw new QcowException(image, "Image creation needs a size parameter");
        }
        if (!args.has("-q")) {
            out.println(ImageOptions.describe(image, format, o, size));
            out.flush();
        }
        if (format.equals("raw")) {
            Images.createRaw(ImageArgs.path(image), size);
            return ExitCodes.OK;
        }
        if (format.equals("luks")) {
            if (o.containsKey("preallocation") && !o.get("preallocation").equals("off")) {
                throw new UnsupportedFeatureException(image, "preallocation of luks files");
            }
            try {
                Images.createLuks(ImageArgs.path(image), size, ImageOptions.luks(o, ImageArgs.secrets(args)));
            } catch (IllegalArgumentException e) {
                throw new QcowException(image, e.getMessage());
            }
            return ExitCodes.OK;
        }
        CreateOptions valid;
        try {
            valid = ImageOptions.apply(image, CreateOptions.defaults(size), o, ImageArgs.secrets(args)).validate();
        } catch (IllegalArgumentException e) {
            throw new QcowException(image, e.getMessage());
        }
        Images.create(ImageArgs.path(image), valid);
        return ExitCodes.OK;
    }
}
