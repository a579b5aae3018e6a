package org.qcow4j.ops;

import java.io.IOException;
import org.qcow4j.CreateOptions.Preallocation;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WritableImage;
import org.qcow4j.qcow2.Qcow2Image;

/**
 * A resize with preallocation ({@code qemu-img resize --preallocation}), handed to the driver: qcow2 maps the new part
 * ({@code metadata}) or also allocates it ({@code falloc}, {@code full}), raw allocates it ({@code falloc}, {@code full}). Without preallocation it is
 * the image's own {@link WritableImage#resize}.
 */
public final class ImageResize {
    private ImageResize() {
    }

    public static void resize(WritableImage image, long newSize, Preallocation preallocation) throws IOException {
        if (preallocation == Preallocation.OFF) {
            image.resize(newSize);
            return;
        }
        if (!Qcow2Image.resize(ManagedImage.driver(image), newSize, preallocation)) {
            throw new UnsupportedFeatureException(image.filename(), "preallocation when resizing this image");
        }
    }
}
