package org.qcow4j.cli;

import java.io.IOException;
import java.nio.file.Path;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.UnsupportedFeatureException;

/** Opening images from command-line arguments, shared by the commands. */
final class ImageArgs {
    private ImageArgs() {
    }

    /** Opens {@code filename} read-only; {@code format} is "qcow2", "raw" or null to probe. */
    static DiskImage open(String filename, String format) throws IOException {
        if (format != null && !format.equals("qcow2") && !format.equals("raw")) {
            throw new UnsupportedFeatureException(filename, "image format '" + format + "' (qcow4j reads qcow2 and raw)");
        }
        return Images.open(Path.of(filename), OpenOptions.defaults().withFormat(format));
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
