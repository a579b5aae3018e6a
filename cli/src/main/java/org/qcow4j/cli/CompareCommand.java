package org.qcow4j.cli;

import java.io.PrintWriter;
import java.util.List;
import org.qcow4j.CompareResult;
import org.qcow4j.DiskImage;
import org.qcow4j.FormatException;
import org.qcow4j.ImageOperationException;
import org.qcow4j.Images;

/** {@code compare}: whether two images hold the same guest data, as qemu-img compare (exit 0 same, 1 different, 2 error). */
final class CompareCommand extends Command {
    /** qemu-img compare's exit codes beyond 0 and 1: an image that does not open, and an image that cannot be read. */
    static final int OPEN_FAILED = 2;
    static final int READ_FAILED = 4;
    static final int STATUS_FAILED = 3;

    private static final CommandLine.Option SECOND_FORMAT = CommandLine.Option.value("FMT",
            "Format of the second image; probed if omitted.", "-F");
    private static final CommandLine.Option STRICT = CommandLine.Option.flag(
            "Strict: images of different sizes, or with a different allocation, differ.", "-s");
    private static final CommandLine.Option PROGRESS = CommandLine.Option.flag("Show progress.", "-p");
    private static final CommandLine.Option QUIET = CommandLine.Option.flag("Quiet: print nothing but errors.", "-q");

    CompareCommand() {
        super("compare", "compare [-f FMT] [-F FMT] [-s] [-p] [-q] [-U] [-T CACHE] IMAGE1 IMAGE2",
                "Compare two images' guest data, as qemu-img compare.",
                FORMAT, SECOND_FORMAT, STRICT, PROGRESS, QUIET, FORCE_SHARE, SOURCE_CACHE, OBJECT, IMAGE_OPTS);
    }

    @Override
    int objectRefusedExit() {
        return OPEN_FAILED;
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        boolean quiet = args.has("-q");
        List<String> names = args.positionals();
        if (names.size() != 2) {
            throw new CommandLine.UsageException("Expecting two image file names");
        }
        QemuProgress progress = new QemuProgress(out, args.has("-p") && !quiet, 2.0f);
        try {
            return compare(args, names.get(0), names.get(1), quiet, progress, out, err);
        } finally {
            progress.end();
        }
    }

    private static int compare(CommandLine args, String name1, String name2, boolean quiet, QemuProgress progress,
                               PrintWriter out, Stderr err) {
        boolean debug = args.has("--debug");
        String cache = args.get("-T", "writeback");
        if (ImageArgs.CacheMode.of(cache) == null) {
            err.error("Invalid source cache option: " + cache);
            return OPEN_FAILED;
        }
        DiskImage first;
        try {
            first = ImageArgs.open(args, name1, args.get("-f", null), ImageArgs.Scope.CHAIN);
        } catch (Exception e) {
            ExitCodes.report(e, err, debug);
            return OPEN_FAILED;
        }
        try (first) {
            DiskImage second;
            try {
                second = ImageArgs.open(args, name2, args.get("-F", null), ImageArgs.Scope.CHAIN);
            } catch (Exception e) {
                ExitCodes.report(e, err, debug);
                return OPEN_FAILED;
            }
            try (second) {
                float base = Math.max(first.size(), second.size());
                long common = Math.min(first.size(), second.size());
                boolean sizesDiffer = first.size() != second.size();
                boolean strict = args.has("-s");
                // qemu-img prints its size warning once the common part compared equal, between progress lines
                Runnable warning = () -> {
                    if (!quiet) {
                        out.println("Warning: Image size mismatch!");
                    }
                };
                long[] done = {0};
                progress.print(0, 100);
                if (sizesDiffer && !strict && common == 0) {
                    warning.run();
                }
                CompareResult r = Images.compare(first, second, strict, chunk -> {
                    progress.print((float) chunk / base * 100, 100);
                    done[0] += chunk;
                    if (sizesDiffer && done[0] == common) {
                        warning.run();
                    }
                });
                if (!quiet) {
                    print(out, r);
                }
                return r.identical() ? ExitCodes.OK : 1;
            }
        } catch (ImageOperationException e) {
            // what could not be read, in qemu-img's words: 3 for a block status, 4 for data
            if (err.program() == Program.QCOW4J) {
                ExitCodes.report(e, err, debug);
            } else {
                if (e.getCause() instanceof FormatException f && f.qemuWords() != null) {
                    // the corruption QEMU's qcow2 driver signals meeting it on a read-only image, before qemu-img's line
                    err.println("qcow2: Image is corrupt: " + f.qemuWords()
                            + "; further non-fatal corruption events will be suppressed");
                }
                err.error(e.qemuMessage());
            }
            return e.qemuMessage().startsWith("Sector allocation test failed") ? STATUS_FAILED : READ_FAILED;
        } catch (Exception e) {
            ExitCodes.report(e, err, debug);
            return READ_FAILED;
        }
    }

    /** qemu-img's last line for a result (the size warning is printed on the way). */
    private static void print(PrintWriter out, CompareResult r) {
        switch (r.verdict()) {
            case SIZE_MISMATCH -> out.println("Strict mode: Image size mismatch!");
            case STATUS_MISMATCH -> out.println("Strict mode: Offset " + r.offset() + " block status mismatch!");
            default -> out.println(r.identical() ? "Images are identical." : "Content mismatch at offset " + r.offset() + "!");
        }
    }
}
