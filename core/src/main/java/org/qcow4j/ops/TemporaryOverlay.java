package org.qcow4j.ops;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.OpenOptions;
import org.qcow4j.WritableImage;
import org.qcow4j.qcow2.ChainOpener;
import org.qcow4j.qcow2.Qcow2Image;

/**
 * QEMU's {@code snapshot=on} ({@code qemu-io -s}): the image is opened read-only as the backing file of a new
 * temporary qcow2 overlay (default options, the image's size) that takes the writes and is deleted when closed, so
 * the image itself never changes. The overlay goes where QEMU puts it: {@code $TMPDIR}, else {@code /var/tmp}.
 */
public final class TemporaryOverlay {
    private TemporaryOverlay() {
    }

    public static WritableImage open(Path image, OpenOptions options) throws IOException {
        long size;
        String format;
        try (DiskImage base = new ChainOpener(options).open(image.toString(), options.format(), 0, null)) {
            size = base.size();
            format = base.format();
        }
        CreateOptions d = CreateOptions.defaults(size);
        CreateOptions overlay = new CreateOptions(d.size(), d.version(), d.clusterBits(), d.refcountOrder(),
                d.compressionType(), d.extendedL2(), d.lazyRefcounts(), null, false, d.preallocation(),
                image.toAbsolutePath().toString(), format);
        Path tmp = Files.createTempFile(directory(), "vl.", "");
        try {
            Conversion.create(tmp, overlay);
            WritableImage w = Qcow2Image.openWritable(tmp, options.withFormat("qcow2"));
            return ManagedImage.of(w, options, () -> Files.deleteIfExists(tmp));
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(tmp);
            throw e;
        }
    }

    /** QEMU's get_tmp_filename: $TMPDIR, else /var/tmp (here: else java.io.tmpdir if /var/tmp is not there). */
    private static Path directory() {
        String env = System.getenv("TMPDIR");
        if (env != null && !env.isEmpty()) {
            return Path.of(env);
        }
        Path varTmp = Path.of("/var/tmp");
        return Files.isDirectory(varTmp) && Files.isWritable(varTmp) ? varTmp : Path.of(System.getProperty("java.io.tmpdir"));
    }
}
