package org.qcow4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;
import org.qcow4j.CheckFailedException;
import org.qcow4j.CheckResult;
import org.qcow4j.Images;
import org.qcow4j.RepairMode;
import org.qcow4j.UnsupportedFeatureException;

/**
 * {@code check}: what {@code qemu-img check} reports, and with {@code -r leaks|all} repairs (leaks, refcounts too
 * low, COPIED flags, a refcount structure to rebuild, the dirty and corrupt bits; see {@link Images#repair})
 * followed by a second check: diagnostics on stderr as they are found, then the summary (human or JSON) on stdout,
 * and qemu-img's exit codes.
 */
final class CheckCommand extends Command {
    /** The image has corruptions. */
    static final int CORRUPT = 2;
    /** The image leaks clusters but is otherwise good. */
    static final int LEAKS = 3;
    /** The format has no check (raw). */
    static final int NOT_SUPPORTED = 63;

    private static final CommandLine.Option QUIET = CommandLine.Option.flag("Quiet: print no report, only errors.", "-q");
    private static final CommandLine.Option REPAIR = CommandLine.Option.value("leaks|all",
            "Repair in place, as qemu-img check -r: leaked clusters (leaks); also refcounts too low, COPIED flags and"
                    + " a broken refcount structure, rebuilt (all). The dirty and corrupt bits are cleared when no errors"
                    + " remain. Images needing repairs qcow4j does not make are refused untouched.", "-r", "--repair");

    CheckCommand() {
        super("check", "check [-f FMT] [--output=human|json] [-q] [-r leaks|all] [-T CACHE] [-U] IMAGE",
                "Check a qcow2 image's metadata for leaked clusters and corruption (read-only unless -r), as qemu-img check does.",
                FORMAT, OUTPUT, QUIET, REPAIR, FORCE_SHARE, SOURCE_CACHE, OBJECT, IMAGE_OPTS);
    }

    /** Runs the check; the diagnostic lines and the final "Check failed" go to {@code err}. */
    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        boolean json = ImageArgs.json(args);
        String image = ImageArgs.oneImage(args);
        ImageArgs.cacheMode(args.get("-T", "writeback"), "source cache");
        Boolean fixErrors = null; // null: no -r, a read-only check
        if (args.has("-r")) {
            String mode = args.get("-r", null);
            if ("leaks".equals(mode)) {
                fixErrors = false;
            } else if ("all".equals(mode)) {
                fixErrors = true;
            } else {
                throw new CommandLine.UsageException("Unknown option value for -r (expecting 'leaks' or 'all'): " + mode);
            }
        }
        ImageArgs.Operand operand = ImageArgs.operand(args, image);
        Path file = operand.path();
        String format = operand.format();
        if (format == null) {
            try {
                format = Images.probeFormat(file);
            } catch (IOException e) {
                throw ImageArgs.openFailure(image, e);
            }
        }
        switch (format) {
            case "qcow2" -> {
            }
            case "raw" -> {
                err.error(image + ": This image format does not support checks");
                return NOT_SUPPORTED;
            }
            default -> throw new UnsupportedFeatureException(image, "image format '" + format + "' (qcow4j checks qcow2)");
        }

        try {
            return check(args, out, err, json, image, operand, fixErrors);
        } catch (CheckFailedException e) {
            // qemu-img: its error_report lines (each with the program's name), then "Check failed: REASON"
            out.flush();
            for (String error : e.errors()) {
                int nl = error.indexOf('\n');
                err.error(nl < 0 ? error : error.substring(0, nl));
                if (nl >= 0) {
                    err.println(error.substring(nl + 1));
                }
            }
            err.error(err.program() == Program.QCOW4J ? e.getMessage() : "Check failed: " + e.reason());
            return ExitCodes.FAILURE;
        }
    }

    private int check(CommandLine args, PrintWriter out, Stderr err, boolean json, String image,
                      ImageArgs.Operand operand, Boolean fixErrors) throws Exception {
        Path file = operand.path();
        CheckResult r;
        try {
            r = fixErrors == null ? Images.check(file, operand.options(), new Lines(err))
                    : Images.repair(file, fixErrors ? RepairMode.ALL : RepairMode.LEAKS, new Lines(err));
        } catch (IOException e) {
            throw ImageArgs.openFailure(image, e);
        }
        if (fixErrors != null && (r.leaksFixed() != 0 || r.corruptionsFixed() != 0) && !json && !args.has("-q")) {
            // qemu-img says what was repaired, then checks again (the library did) and reports that check
            out.print("The following inconsistencies were found and repaired:\n\n"
                    + "    " + r.leaksFixed() + " leaked clusters\n"
                    + "    " + r.corruptionsFixed() + " corruptions\n\n"
                    + "Double checking the fixed image now...\n");
        }
        if (!args.has("-q")) {
            out.print(json ? QemuJson.render(toJson(r, image)) + "\n" : human(r));
        }
        if (r.checkErrors() > 0) {
            out.flush();
            err.error(image + ": Check failed");
            return ExitCodes.FAILURE;
        }
        return r.corruptions() > 0 ? CORRUPT : r.leaks() > 0 ? LEAKS : ExitCodes.OK;
    }

    /**
     * qemu-img's ImageCheck as JSON. QEMU's QDict prints keys in hash-bucket order, which for these keys is this
     * order; the optional keys are present when non-zero.
     */
    static Map<String, Object> toJson(CheckResult r, String filename) {
        Map<String, Object> m = new LinkedHashMap<>();
        putNonZero(m, "image-end-offset", r.imageEndOffset());
        putNonZero(m, "compressed-clusters", r.compressedClusters());
        putNonZero(m, "total-clusters", r.totalClusters());
        putNonZero(m, "corruptions", r.corruptions());
        putNonZero(m, "corruptions-fixed", r.corruptionsFixed());
        m.put("check-errors", r.checkErrors());
        putNonZero(m, "leaks", r.leaks());
        putNonZero(m, "leaks-fixed", r.leaksFixed());
        putNonZero(m, "allocated-clusters", r.allocatedClusters());
        m.put("filename", filename);
        m.put("format", r.format());
        putNonZero(m, "fragmented-clusters", r.fragmentedClusters());
        return m;
    }

    private static void putNonZero(Map<String, Object> m, String key, long value) {
        if (value != 0) {
            m.put(key, value);
        }
    }

    /** qemu-img's {@code dump_human_image_check}. */
    static String human(CheckResult r) {
        StringBuilder sb = new StringBuilder();
        if (r.isClean()) {
            sb.append("No errors were found on the image.\n");
        } else {
            if (r.corruptions() > 0) {
                sb.append('\n').append(r.corruptions()).append(" errors were found on the image.\n")
                        .append("Data may be corrupted, or further writes to the image may corrupt it.\n");
            }
            if (r.leaks() > 0) {
                sb.append('\n').append(r.leaks()).append(" leaked clusters were found on the image.\n")
                        .append("This means waste of disk space, but no harm to data.\n");
            }
            if (r.checkErrors() > 0) {
                sb.append('\n').append(r.checkErrors()).append(" internal errors have occurred during the check.\n");
            }
        }
        if (r.totalClusters() != 0 && r.allocatedClusters() != 0) {
            sb.append(r.allocatedClusters()).append('/').append(r.totalClusters()).append(" = ")
                    .append(percent(r.allocatedClusters(), r.totalClusters())).append("% allocated, ")
                    .append(percent(r.fragmentedClusters(), r.allocatedClusters())).append("% fragmented, ")
                    .append(percent(r.compressedClusters(), r.allocatedClusters())).append("% compressed clusters\n");
        }
        if (r.imageEndOffset() != 0) {
            sb.append("Image end offset: ").append(r.imageEndOffset()).append('\n');
        }
        return sb.toString();
    }

    /**
     * C's {@code %0.2f} of {@code part * 100.0 / whole}: glibc rounds the double's exact binary value, ties to even,
     * where Java's formatter rounds half up (12.125 is "12.12" in C, "12.13" in Java).
     */
    private static String percent(long part, long whole) {
        return CPrintf.fixed(part * 100.0 / whole, 2);
    }

    /** The check's diagnostics, a line of stderr each (a class, not err::println: see {@link ImageArgs#openNamed}). */
    private record Lines(Stderr err) implements Consumer<String> {
        @Override
        public void accept(String line) {
            err.println(line);
        }
    }
}
