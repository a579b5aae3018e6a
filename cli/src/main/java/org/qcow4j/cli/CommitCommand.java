package org.qcow4j.cli;

import java.io.PrintWriter;
import org.qcow4j.CommitOptions;
import org.qcow4j.ImageOperationException;
import org.qcow4j.Images;

/** {@code commit}: merge an image into its backing file, as qemu-img commit (qemu-img.c's img_commit). */
final class CommitCommand extends Command {
    private static final CommandLine.Option BASE = CommandLine.Option.value("BASE",
            "Commit into BASE, further down the backing chain (implies -d).", "-b");
    private static final CommandLine.Option DROP = CommandLine.Option.flag("Leave the image as it is afterwards "
            + "(otherwise it is emptied).", "-d");
    private static final CommandLine.Option PROGRESS = CommandLine.Option.flag("Show progress.", "-p");
    private static final CommandLine.Option QUIET = CommandLine.Option.flag("Quiet: print nothing but errors.", "-q");
    private static final CommandLine.Option CACHE = CommandLine.Option.value("CACHE",
            "Cache mode (writeback by default; writethrough and directsync flush every write).", "-t");
    private static final CommandLine.Option RATE = CommandLine.Option.value("RATE",
            "Copy at most RATE bytes per second (k, M, G... suffixes).", "-r");

    CommitCommand() {
        super("commit", "commit [-f FMT] [-b BASE] [-d] [-p] [-q] [-t CACHE] [-r RATE] IMAGE",
                "Write an image's data into its backing file (or BASE) and empty it, as qemu-img commit.",
                FORMAT, CACHE, BASE, RATE, DROP, PROGRESS, QUIET, OBJECT, IMAGE_OPTS);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        long rate = 0;
        if (args.has("-r")) {
            rate = QemuNumbers.cvtnum("rate limit", args.get("-r", null), Long.MAX_VALUE, err::println);
        }
        String image = ImageArgs.oneImage(args);
        boolean quiet = args.has("-q");
        String cache = args.get("-t", "writeback");
        ImageArgs.CacheMode mode = ImageArgs.CacheMode.of(cache);
        if (mode == null) {
            err.error("Invalid cache option: " + cache);
            return ExitCodes.FAILURE;
        }
        ImageArgs.Operand o = ImageArgs.operand(args, image);
        if (o.format() == null && java.nio.file.Files.isRegularFile(o.path())
                && "raw".equals(Images.probeFormat(o.path()))) {
            RebaseCommand.rawWarning(image, err);
        }
        String base = args.get("-b", null);
        CommitOptions options = new CommitOptions(base, base != null || args.has("-d"),
                o.options().withWritethrough(mode.writethrough()), rate, null);
        QemuProgress progress = new QemuProgress(out, args.has("-p") && !quiet, 1.0f);
        progress.print(0);
        try {
            ImageArgs.opening(image, () -> {
                Images.commit(o.path(), options.withProgress(progress::print));
                return null;
            });
        } catch (ImageOperationException e) {
            progress.end();
            err.error(err.program() == Program.QCOW4J || e.qemuMessage() == null ? e.getMessage() : e.qemuMessage());
            return ExitCodes.FAILURE;
        } catch (Exception e) {
            progress.end();
            throw e;
        }
        progress.end();
        if (!quiet) {
            out.println("Image committed.");
        }
        return ExitCodes.OK;
    }
}
