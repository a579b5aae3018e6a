package org.qcow4j.cli;

import java.io.IOException;
import java.nio.file.Path;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.UnsupportedFeatureException;
import picocli.CommandLine.Option;

/** Opening images from command-line arguments, shared by the commands. */
final class ImageArgs {
    private ImageArgs() {
    }

    /** The input options every command takes, as qemu-img's. */
    static final class Options {
        @Option(names = "-f", paramLabel = "FMT", description = "Image format (qcow2 or raw); probed if omitted.")
        String format;

        @Option(names = {"-U", "--force-share"}, description = "Accepted for qemu-img compatibility: qcow4j opens "
                + "inputs read-only and takes no locks.")
        boolean forceShare;

        /** Opens {@code filename} read-only with its backing chain. */
        DiskImage open(String filename) throws IOException {
            if (format != null && !format.equals("qcow2") && !format.equals("raw")) {
                throw new UnsupportedFeatureException(filename, "image format '" + format + "' (qcow4j reads qcow2 and raw)");
            }
            return Images.open(Path.of(filename), OpenOptions.defaults().withFormat(format));
        }
    }

    /** Validates {@code --output}: "human" or "json". */
    static boolean json(String output) {
        if ("json".equals(output)) {
            return true;
        }
        if ("human".equals(output)) {
            return false;
        }
        throw new IllegalArgumentException("--output must be 'human' or 'json', not '" + output + "'");
    }
}
