package org.qcow4j.cli;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.UnsupportedFeatureException;

/** Argument handling shared by the commands. */
final class ImageArgs {
    private ImageArgs() {
    }

    /**
     * The file an image name on the command line names: QEMU's {@code file:} protocol prefix (how a name holding a
     * colon is written, {@code file:disk:1.qcow2}) is dropped; any other name is a path as given.
     */
    static Path path(String name) {
        return Path.of(name.startsWith("file:") ? name.substring("file:".length()) : name);
    }

    /**
     * Opens {@code filename} read-only with its backing chain, in the format given by {@code -f} (or probed), locked
     * as QEMU's readers lock unless {@code -U}.
     */
    static DiskImage open(CommandLine args, String filename) throws IOException {
        String format = args.get("-f", null);
        if (format != null && !format.equals("qcow2") && !format.equals("raw")) {
            throw new UnsupportedFeatureException(filename, "image format '" + format + "' (qcow4j reads qcow2 and raw)");
        }
        return Images.open(path(filename), OpenOptions.defaults().withFormat(format).withForceShare(args.has("-U")));
    }

    /** {@code --output}: true for json, false for human. */
    static boolean json(CommandLine args) throws CommandLine.UsageException {
        String output = args.get("--output", "human");
        return switch (output) {
            case "json" -> true;
            case "human" -> false;
            default -> throw CommandLine.UsageException.withoutHint("--output must be used with human or json as argument.");
        };
    }

    /** The single IMAGE argument. */
    static String oneImage(CommandLine args) throws CommandLine.UsageException {
        List<String> p = args.positionals();
        if (p.size() != 1) {
            throw new CommandLine.UsageException("Expecting one image file name");
        }
        return p.get(0);
    }
}
