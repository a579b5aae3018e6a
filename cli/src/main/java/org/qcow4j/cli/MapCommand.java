package org.qcow4j.cli;

import java.io.PrintWriter;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.QcowException;
import org.qcow4j.format.CFormat;

/** {@code map}: the allocation of every guest byte, as qemu-img map prints it. */
final class MapCommand extends Command {
    private static final CommandLine.Option START = CommandLine.Option.value("OFFSET", "First guest byte to map.",
            "-s", "--start-offset");
    private static final CommandLine.Option LENGTH = CommandLine.Option.value("LENGTH", "Bytes to map.", "-l", "--max-length");

    MapCommand() {
        super("map", "map [-f FMT] [--output=human|json] [-s OFFSET] [-l LENGTH] IMAGE",
                "Show which layer of the backing chain holds each range of the disk.",
                FORMAT, OUTPUT, START, LENGTH, FORCE_SHARE, OBJECT, IMAGE_OPTS);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        boolean json = ImageArgs.json(args);
        long startOffset = args.getLong("-s", 0);
        long maxLength = args.getLong("-l", -1);
        try (DiskImage d = ImageArgs.open(args, ImageArgs.oneImage(args))) {
            long end = maxLength < 0 ? d.size() : Math.min(d.size(), startOffset + maxLength);
            if (json) {
                out.print('[');
            } else {
                out.println(column("Offset") + column("Length") + column("Mapped to") + "File");
            }
            Extent run = null;
            boolean first = true;
            for (long pos = Math.max(0, startOffset); pos < end; ) {
                Extent e = d.blockStatus(pos, end - pos);
                pos = e.end();
                if (run != null && run.mergeableWith(e) && sameFile(d, run, e)) {
                    run = run.mergedWith(e);
                    continue;
                }
                if (run != null) {
                    first = print(out, d, run, json, first);
                }
                run = e;
            }
            if (run == null && json) {
                // qemu-img prints one empty entry for an empty range
                run = new Extent(Math.max(0, startOffset), 0, 0, false, false, false, -1);
            }
            if (run != null) {
                print(out, d, run, json, first);
            }
            if (json) {
                out.println(']');
            }
        }
        return ExitCodes.OK;
    }

    /** printf's {@code %-16s}. */
    private static String column(String s) {
        return s.length() >= 16 ? s : s + " ".repeat(16 - s.length());
    }

    private static boolean sameFile(DiskImage d, Extent a, Extent b) {
        return !a.hasHostOffset() || layerFile(d, a.depth()).equals(layerFile(d, b.depth()));
    }

    /** The file holding the data of layer {@code depth}: the image, or its external data file. */
    private static String layerFile(DiskImage d, int depth) {
        DiskImage layer = d;
        for (int i = 0; i < depth && layer.backing() != null; i++) {
            layer = layer.backing();
        }
        String data = layer.qcow2().isPresent() ? layer.qcow2().get().openedDataFile() : null; // null: no data file
        return data != null ? data : layer.filename();
    }

    private static boolean print(PrintWriter out, DiskImage d, Extent e, boolean json, boolean first) throws QcowException {
        if (json) {
            // built by hand: a Formatter parses its pattern on every call (and loads java.util.regex first)
            StringBuilder b = new StringBuilder(120).append(first ? "" : ",\n").append("{ \"start\": ").append(e.start())
                    .append(", \"length\": ").append(e.length()).append(", \"depth\": ").append(e.depth())
                    .append(", \"present\": ").append(e.present()).append(", \"zero\": ").append(e.zero())
                    .append(", \"data\": ").append(e.data());
            if (e.hasHostOffset()) {
                b.append(", \"offset\": ").append(e.hostOffset());
            }
            out.print(b.append('}'));
        } else {
            if (e.data() && !e.hasHostOffset()) {
                throw new QcowException(d.filename(), "File contains external, encrypted or compressed clusters.");
            }
            if (e.data() && !e.zero()) {
                out.println(column(CFormat.altHex(e.start())) + column(CFormat.altHex(e.length()))
                        + column(CFormat.altHex(e.hostOffset())) + layerFile(d, e.depth()));
            }
        }
        return false;
    }
}
