package org.qcow4j.cli;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.qcow4j.BitmapException;
import org.qcow4j.DirtyBitmaps;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.WritableImage;

/**
 * {@code bitmap}: changes a qcow2 image's persistent dirty bitmaps as qemu-img 7.2's {@code img_bitmap}: the actions
 * in command-line order on one open image, the first failure reported as "Operation OP on bitmap NAME failed: ..."
 * (exit 1) with what came before it kept (closing the image stores the bitmaps).
 */
final class BitmapCommand extends Command {
    private static final CommandLine.Option ADD = CommandLine.Option.flag("Add BITMAP (enabled, empty).", "--add");
    private static final CommandLine.Option REMOVE = CommandLine.Option.flag("Remove BITMAP.", "--remove");
    private static final CommandLine.Option CLEAR = CommandLine.Option.flag("Clear every bit of BITMAP.", "--clear");
    private static final CommandLine.Option ENABLE = CommandLine.Option.flag("Make BITMAP record writes.", "--enable");
    private static final CommandLine.Option DISABLE = CommandLine.Option.flag("Make BITMAP stop recording writes.",
            "--disable");
    private static final CommandLine.Option MERGE = CommandLine.Option.value("SOURCE",
            "Set in BITMAP every bit of bitmap SOURCE (of SOURCE_IMAGE with -b).", "--merge");
    private static final CommandLine.Option GRANULARITY = CommandLine.Option.value("GRANULARITY",
            "Bytes per bit of the bitmap --add makes (a power of 2, at least 512).", "-g", "--granularity");
    private static final CommandLine.Option SOURCE_FILE = CommandLine.Option.value("SOURCE_IMAGE",
            "The image --merge reads SOURCE from.", "-b", "--source-file");
    private static final CommandLine.Option SOURCE_FORMAT = CommandLine.Option.value("FMT",
            "SOURCE_IMAGE's format.", "-F", "--source-format");

    BitmapCommand() {
        super("bitmap", "bitmap (--add [-g GRANULARITY] [--disable] | --remove | --clear | --enable | --disable"
                        + " | --merge SOURCE [-b SOURCE_IMAGE [-F FMT]])... [-f FMT] [--object ...] [--image-opts] IMAGE BITMAP",
                "Add, remove, clear, enable, disable or merge a qcow2 image's persistent dirty bitmaps, as qemu-img bitmap.",
                ADD, REMOVE, CLEAR, ENABLE, DISABLE, MERGE, GRANULARITY, SOURCE_FILE, SOURCE_FORMAT, FORMAT, OBJECT,
                IMAGE_OPTS);
    }

    /** One action, as qemu-img queues them. */
    private record Action(String op, String source) {
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        List<Action> actions = new ArrayList<>();
        long granularity = 0;
        for (Map.Entry<String, String> e : args.inOrder()) {
            switch (e.getKey()) {
                case "--add" -> actions.add(new Action("add", null));
                case "--remove" -> actions.add(new Action("remove", null));
                case "--clear" -> actions.add(new Action("clear", null));
                case "--enable" -> actions.add(new Action("enable", null));
                case "--disable" -> actions.add(new Action("disable", null));
                case "--merge" -> actions.add(new Action("merge", e.getValue()));
                case "-g" -> granularity = QemuNumbers.cvtnum("granularity", e.getValue(), Long.MAX_VALUE, err::error);
                default -> {
                }
            }
        }
        boolean add = actions.stream().anyMatch(a -> a.op().equals("add"));
        boolean merge = actions.stream().anyMatch(a -> a.op().equals("merge"));
        if (actions.isEmpty()) {
            throw CommandLine.UsageException.withoutHint("Need at least one of --add, --remove, --clear, --enable, "
                    + "--disable, or --merge");
        }
        if (granularity != 0 && !add) {
            throw CommandLine.UsageException.withoutHint("granularity only supported with --add");
        }
        String sourceFile = args.get("-b", null);
        if (args.has("-F") && sourceFile == null) {
            throw CommandLine.UsageException.withoutHint("-F only supported with -b");
        }
        if (sourceFile != null && !merge) {
            throw CommandLine.UsageException.withoutHint("Merge bitmap source file only supported with --merge");
        }
        List<String> operands = args.positionals();
        if (operands.size() != 2) {
            throw CommandLine.UsageException.withoutHint("Expecting filename and bitmap name");
        }
        String image = operands.get(0);
        String bitmap = operands.get(1);
        ImageArgs.Operand o = ImageArgs.operand(args, image);
        WritableImage target = ImageArgs.opening(image, () -> Images.openWritable(o.path(), o.options().withQemuLayout(true)));
        try (WritableImage closing = target) {
            try (DiskImage source = sourceFile == null ? null
                    : ImageArgs.open(args, sourceFile, args.get("-F", null), ImageArgs.Scope.IMAGE)) {
                DirtyBitmaps bitmaps = bitmapsOf(target, image);
                DirtyBitmaps from = source == null ? bitmaps : bitmapsOf(source, sourceFile);
                for (Action a : actions) {
                    try {
                        switch (a.op()) {
                            case "add" -> bitmaps.add(bitmap, granularity, false);
                            case "remove" -> bitmaps.remove(bitmap);
                            case "clear" -> bitmaps.clear(bitmap);
                            case "enable" -> bitmaps.enable(bitmap);
                            case "disable" -> bitmaps.disable(bitmap);
                            default -> bitmaps.merge(bitmap, from, a.source());
                        }
                    } catch (BitmapException e) {
                        err.error("Operation " + a.op() + " on bitmap " + bitmap + " failed: " + e.qemuWords());
                        if (e.hint() != null) {
                            err.println(e.hint());
                        }
                        return ExitCodes.FAILURE;
                    }
                }
            }
        }
        return ExitCodes.OK;
    }

    /** The image's bitmaps; a raw image has none (QEMU: its driver cannot store any). */
    private static DirtyBitmaps bitmapsOf(DiskImage image, String name) throws java.io.IOException {
        return image.dirtyBitmaps().orElseThrow(() -> new java.io.IOException("Could not open '" + name
                + "': persistent dirty bitmaps need a qcow2 image (this one is " + image.format() + ")"));
    }
}
