package org.qcow4j.cli;

import java.io.PrintWriter;
import java.util.List;
import java.util.Map;
import org.qcow4j.CreateOptions.Preallocation;
import org.qcow4j.Images;
import org.qcow4j.QcowException;
import org.qcow4j.WritableImage;

/** {@code resize}: a new virtual size for a qcow2 or raw image, as qemu-img resize. */
final class ResizeCommand extends Command {
    /** The block layer's BDRV_MAX_LENGTH: INT64_MAX aligned down to 1 GiB. */
    private static final long MAX_LENGTH = Long.MAX_VALUE & -(1L << 30);

    private static final CommandLine.Option SHRINK = CommandLine.Option.flag(
            "Allow a smaller size (the data past the new end is lost).", "--shrink");
    private static final CommandLine.Option PREALLOCATION = CommandLine.Option.value("MODE",
            "Preallocate the new part when growing: off, metadata (qcow2), falloc or full (raw).", "--preallocation");
    private static final CommandLine.Option QUIET = CommandLine.Option.flag("Quiet: print nothing but errors.", "-q");

    ResizeCommand() {
        super("resize", "resize [--shrink] [--preallocation=MODE] [-f FMT] [-q] IMAGE [+|-]SIZE",
                "Grow or shrink an image's virtual size, as qemu-img resize.",
                SHRINK, PREALLOCATION, FORMAT, QUIET, OBJECT, IMAGE_OPTS);
    }

    /** qemu-img takes SIZE off the end before its options, so "-1G" is a size. */
    @Override
    List<String> heldBack(List<String> argv) throws CommandLine.UsageException {
        if (argv.size() < 2) {
            throw new CommandLine.UsageException("Not enough arguments");
        }
        return List.of(argv.get(argv.size() - 1));
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        Preallocation preallocation = Preallocation.OFF;
        if (args.has("--preallocation")) {
            String mode = args.get("--preallocation", null);
            preallocation = switch (mode) {
                case "off" -> Preallocation.OFF;
                case "metadata" -> Preallocation.METADATA;
                case "falloc" -> Preallocation.FALLOC;
                case "full" -> Preallocation.FULL;
                default -> throw CommandLine.UsageException.withoutHint("Invalid preallocation mode '" + mode + "'");
            };
        }
        List<String> p = args.positionals();
        if (p.size() != 2) {
            throw new CommandLine.UsageException("Expecting image file name and size");
        }
        String filename = p.get(0);
        String size = p.get(1);
        int relative = size.startsWith("+") ? 1 : size.startsWith("-") ? -1 : 0;
        String number = relative == 0 ? size : size.substring(1);
        long n = Long.parseUnsignedLong(ImageOptions.check(Map.of("size", number),
                Map.of("size", ImageOptions.Type.SIZE), "").get("size"));
        ImageArgs.Operand o = ImageArgs.operand(args, filename);
        WritableImage image = ImageArgs.opening(filename,
                () -> Images.openWritable(o.path(), o.options().withQemuLayout(true)));
        try (image) {
            if (o.format() == null && !args.has("--image-opts") && image.format().equals("raw")) {
                err.println("WARNING: Image format was not specified for '" + filename + "' and probing guessed raw.");
                err.println("         Automatically detecting the format is dangerous for raw images, write operations"
                        + " on block 0 will be restricted.");
                err.println("         Specify the 'raw' format explicitly to remove the restrictions.");
            }
            for (String w : image.warnings()) {
                err.error("warning: " + w);
            }
            long current = image.size();
            long total = relative == 0 ? n : current + n * relative; // int64 arithmetic, as qemu-img's
            if (total <= 0) {
                err.error("New image size must be positive");
                return ExitCodes.FAILURE;
            }
            if (total <= current && preallocation != Preallocation.OFF) {
                err.error("Preallocation can only be used for growing images");
                return ExitCodes.FAILURE;
            }
            if (total < current && !args.has("--shrink")) {
                err.error("Use the --shrink option to perform a shrink operation.");
                err.error("warning: Shrinking an image will delete all data beyond the shrunken image's end. Before "
                        + "performing such an operation, make sure there is no important data there.");
                return ExitCodes.FAILURE;
            }
            if (total > MAX_LENGTH) {
                err.error("offset(" + total + ") exceeds maximum(" + MAX_LENGTH + ")");
                return ExitCodes.FAILURE;
            }
            try {
                Images.resize(image, total, preallocation);
            } catch (QcowException e) {
                if (err.program() == Program.QCOW4J || e.qemuWords() == null) {
                    throw e;
                }
                err.error(e.qemuWords());
                return ExitCodes.FAILURE;
            }
        }
        if (!args.has("-q")) {
            out.println("Image resized.");
        }
        return ExitCodes.OK;
    }
}
