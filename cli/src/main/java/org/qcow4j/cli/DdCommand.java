package org.qcow4j.cli;

import java.io.PrintWriter;
import org.qcow4j.ConvertOptions;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.UnsupportedFeatureException;

/** {@code dd}: part of an image copied into a new one, as qemu-img dd (bs=, count=, skip=, if=, of=). */
final class DdCommand extends Command {
    private static final CommandLine.Option OUT_FORMAT = CommandLine.Option.value("FMT",
            "Output format: raw (default) or qcow2.", "-O");

    DdCommand() {
        super("dd", "dd [-f FMT] [-O FMT] [-U] [bs=BLOCK_SIZE] [count=BLOCKS] [skip=BLOCKS] if=INPUT of=OUTPUT",
                "Copy from an image into a new one, block by block, as qemu-img dd.",
                FORMAT, OUT_FORMAT, FORCE_SHARE, OBJECT, IMAGE_OPTS);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        int blockSize = 512;
        long count = 0;
        long skip = 0;
        boolean hasCount = false;
        boolean hasSkip = false;
        String input = null;
        String output = null;
        for (String operand : args.positionals()) {
            int eq = operand.indexOf('=');
            String key = eq < 0 ? null : operand.substring(0, eq);
            String value = eq < 0 ? null : operand.substring(eq + 1);
            if (key == null || !java.util.List.of("bs", "count", "if", "of", "skip").contains(key)) {
                err.error("unrecognized operand " + (eq < 0 ? operand : key));
                return ExitCodes.FAILURE;
            }
            Long n = switch (key) {
                case "bs" -> cvtnum("bs", value, 1, Integer.MAX_VALUE, err);
                case "count", "skip" -> cvtnum(key, value, 0, Long.MAX_VALUE, err);
                default -> 0L;
            };
            if (n == null) {
                return ExitCodes.FAILURE;
            }
            switch (key) {
                case "bs" -> blockSize = (int) (long) n;
                case "count" -> {
                    count = n;
                    hasCount = true;
                }
                case "skip" -> {
                    skip = n;
                    hasSkip = true;
                }
                case "if" -> input = value;
                default -> output = value;
            }
        }
        if (input == null || output == null) {
            err.error("Must specify both input and output files");
            return ExitCodes.FAILURE;
        }
        String outFormat = args.get("-O", "raw");
        try (DiskImage in = ImageArgs.open(args, input)) {
            if (!outFormat.equals("raw") && !outFormat.equals("qcow2")) {
                if (!ImageArgs.QEMU_FORMATS.contains(outFormat)) {
                    err.error("Unknown file format");
                    return ExitCodes.FAILURE;
                }
                throw new UnsupportedFeatureException(output, "image format '" + outFormat + "' (dd makes qcow2 and raw)");
            }
            // qemu-img's arithmetic: count limits the input's size, a skip past it makes an empty output
            long size = in.size();
            if (hasCount && count <= Long.MAX_VALUE / blockSize && count * blockSize < size) {
                size = count * blockSize;
            }
            boolean pastEnd = hasSkip && (skip > Long.MAX_VALUE / blockSize || size < blockSize * skip);
            long from = pastEnd ? size : skip * blockSize;
            ConvertOptions options = outFormat.equals("raw") ? ConvertOptions.raw()
                    : ConvertOptions.qcow2(CreateOptions.defaults(0));
            if (pastEnd) {
                Images.copyRange(in, size, 0, ImageArgs.path(output), options, blockSize);
                err.error(input + ": cannot skip to specified offset");
                return ExitCodes.OK;
            }
            Images.copyRange(in, from, size - from, ImageArgs.path(output), options, blockSize);
        }
        return ExitCodes.OK;
    }

    /** qemu-img's cvtnum_full(name, value, min, max), its messages printed; null when refused. */
    private static Long cvtnum(String name, String value, long min, long max, Stderr err) {
        long v = QemuNumbers.strtosz(value, w -> err.error(w));
        if (v == QemuNumbers.EINVAL || (v < 0 && v != QemuNumbers.ERANGE)) {
            err.error("Invalid " + name + " specified. You may use k, M, G, T, P or E suffixes for");
            err.error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
            return null;
        }
        if (v == QemuNumbers.ERANGE || v > max || v < min) {
            err.error("Invalid " + name + " specified. Must be between " + min + " and " + max + ".");
            return null;
        }
        return v;
    }
}
