package org.qcow4j.cli;

import java.io.PrintWriter;
import org.qcow4j.ImageOperationException;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.RebaseOptions;

/** {@code rebase}: give an image a new backing file, as qemu-img rebase (qemu-img.c's img_rebase). */
final class RebaseCommand extends Command {
    private static final CommandLine.Option BACKING = CommandLine.Option.value("BACKING",
            "The new backing file (\"\" for none: the image is flattened).", "-b");
    private static final CommandLine.Option BACKING_FORMAT = CommandLine.Option.value("FMT",
            "The new backing file's format, stored in the image (required with -b).", "-F");
    private static final CommandLine.Option UNSAFE = CommandLine.Option.flag(
            "Unsafe: only rewrite the header (the old backing file is not read; it may be missing).", "-u");
    private static final CommandLine.Option PROGRESS = CommandLine.Option.flag("Show progress.", "-p");
    private static final CommandLine.Option QUIET = CommandLine.Option.flag("Quiet: print nothing but errors.", "-q");
    private static final CommandLine.Option CACHE = CommandLine.Option.value("CACHE",
            "Cache mode for the image (writeback by default; writethrough and directsync flush every write).", "-t");

    RebaseCommand() {
        super("rebase", "rebase [-f FMT] [-F BACKING_FMT] [-b BACKING] [-u] [-p] [-q] [-t CACHE] [-T SRC_CACHE] [-U] IMAGE",
                "Change the backing file of an image, keeping what it reads (safe) or not (-u), as qemu-img rebase.",
                FORMAT, BACKING_FORMAT, BACKING, UNSAFE, PROGRESS, CACHE, SOURCE_CACHE, QUIET, OBJECT, IMAGE_OPTS,
                FORCE_SHARE);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        String image = ImageArgs.oneImage(args);
        boolean unsafe = args.has("-u");
        String backing = args.get("-b", null);
        if (!unsafe && backing == null) {
            throw new CommandLine.UsageException("Must specify backing file (-b) or use unsafe mode (-u)");
        }
        QemuProgress progress = new QemuProgress(out, args.has("-p") && !args.has("-q"), 2.0f);
        progress.print(0);
        try {
            String cache = args.get("-t", "writeback");
            ImageArgs.CacheMode mode = ImageArgs.CacheMode.of(cache);
            if (mode == null) {
                err.error("Invalid cache option: " + cache);
                return ExitCodes.FAILURE;
            }
            String sourceCache = args.get("-T", "writeback");
            if (ImageArgs.CacheMode.of(sourceCache) == null) {
                err.error("Invalid source cache option: " + sourceCache);
                return ExitCodes.FAILURE;
            }
            ImageArgs.Operand o = ImageArgs.operand(args, image);
            String backingFormat = args.get("-F", null);
            OpenOptions open = o.options().withForceShare(false).withWritethrough(mode.writethrough());
            RebaseOptions options = new RebaseOptions(backing, backingFormat, unsafe, open, args.has("-U"),
                    progress::print);
            if (backingFormat != null && !ImageArgs.QEMU_FORMATS.contains(backingFormat)) {
                ImageArgs.opening(image, () -> { // qemu-img opens the image before it looks at -F
                    Images.open(o.path(), open.withoutBacking()).close();
                    return null;
                });
                err.error("Invalid format name: '" + backingFormat + "'");
                return ExitCodes.FAILURE;
            }
            if (o.format() == null && java.nio.file.Files.isRegularFile(o.path())
                    && "raw".equals(Images.probeFormat(o.path()))) {
                rawWarning(image, err); // qemu-img's, as it opens a probed raw image for writing
            }
            try {
                ImageArgs.opening(image, () -> {
                    Images.rebase(o.path(), options);
                    return null;
                });
            } catch (ImageOperationException e) {
                return report(e, backing, err);
            }
            return ExitCodes.OK;
        } finally {
            progress.end();
        }
    }

    static void rawWarning(String image, Stderr err) {
        err.println("WARNING: Image format was not specified for '" + image + "' and probing guessed raw.");
        err.println("         Automatically detecting the format is dangerous for raw images, write operations on "
                + "block 0 will be restricted.");
        err.println("         Specify the 'raw' format explicitly to remove the restrictions.");
    }

    /** qemu-img's line for a refused rebase; qcow4j's own under its own name. */
    private static int report(ImageOperationException e, String backing, Stderr err) {
        if (err.program() == Program.QCOW4J) {
            err.error(e.getMessage());
        } else if (e.qemuMessage() != null) {
            err.error(e.qemuMessage());
        } else {
            Throwable cause = e.getCause();
            String resolved = cause instanceof org.qcow4j.QcowException q ? q.file() : backing;
            err.error("Could not open new backing file '" + backing + "': " + ExitCodes.openReason(resolved, cause));
        }
        return ExitCodes.FAILURE;
    }
}
