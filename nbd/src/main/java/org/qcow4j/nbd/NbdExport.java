package org.qcow4j.nbd;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Objects;
import org.qcow4j.DiskImage;
import org.qcow4j.WritableImage;

/**
 * One export of an {@link NbdServer}: a name clients ask for, the image behind it and how it is served (qemu-nbd's
 * per-device options). The server never closes the image; whoever opened it does, after closing the server.
 *
 * @param name            the export name ({@code qemu-nbd -x}; "" by default), at most 4096 bytes in UTF-8
 * @param description     shown by {@code nbdinfo} ({@code -D}); null for none
 * @param image           the disk served
 * @param writable        whether clients may write: the image must then be a {@link WritableImage} that is not
 *                        {@linkplain WritableImage#readOnly() read-only}
 * @param allocationDepth whether the {@code qemu:allocation-depth} meta context is offered ({@code qemu-nbd -A})
 * @param discard         what a client's TRIM does ({@code --discard}; qemu-nbd ignores it by default)
 * @param detectZeroes    whether written blocks of zeros become zero writes ({@code --detect-zeroes})
 * @param bitmaps         the image's persistent dirty bitmaps offered as {@code qemu:dirty-bitmap:NAME} meta contexts
 *                        ({@code qemu-nbd -B NAME}), in the order they are listed
 */
public record NbdExport(String name, String description, DiskImage image, boolean writable, boolean allocationDepth,
                        Discard discard, DetectZeroes detectZeroes, List<String> bitmaps) {
    /** The longest name or description the protocol carries, as qemu-nbd's {@code NBD_MAX_STRING_SIZE}. */
    public static final int MAX_STRING_BYTES = 4096;

    /** {@code --discard}: whether TRIM (and zero writes that may unmap) give space back. */
    public enum Discard {
        /** TRIM succeeds and does nothing; zero writes keep clusters allocated (qemu-nbd's default). */
        IGNORE,
        /** TRIM discards whole clusters; zero writes without NO_HOLE may unmap them. */
        UNMAP
    }

    /** {@code --detect-zeroes}: whether a written block of zeros is stored as a zero write. */
    public enum DetectZeroes {
        /** Written as given (the default). */
        OFF,
        /** Stored as a zero write that keeps clusters allocated. */
        ON,
        /** Stored as a zero write that may unmap clusters (needs {@link Discard#UNMAP}). */
        UNMAP
    }

    /** Checks the fields. */
    public NbdExport {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(image, "image");
        Objects.requireNonNull(discard, "discard");
        Objects.requireNonNull(detectZeroes, "detectZeroes");
        bitmaps = List.copyOf(bitmaps);
        if (name.getBytes(StandardCharsets.UTF_8).length > MAX_STRING_BYTES) {
            throw new IllegalArgumentException("export name '" + name + "' too long");
        }
        if (description != null && description.getBytes(StandardCharsets.UTF_8).length > MAX_STRING_BYTES) {
            throw new IllegalArgumentException("export description '" + description + "' too long");
        }
        if (writable && !(image instanceof WritableImage w && !w.readOnly())) {
            throw new IllegalArgumentException("export '" + name + "': the image is not writable");
        }
        if (detectZeroes == DetectZeroes.UNMAP && discard != Discard.UNMAP) {
            throw new IllegalArgumentException(
                    "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap");
        }
    }

    /** A read-only export of {@code image} under {@code name}, with qemu-nbd's defaults. */
    public static NbdExport readOnly(String name, DiskImage image) {
        return new NbdExport(name, null, image, false, false, Discard.IGNORE, DetectZeroes.OFF, List.of());
    }

    /** A read-write export of {@code image} under {@code name}, with qemu-nbd's defaults. */
    public static NbdExport writable(String name, WritableImage image) {
        return new NbdExport(name, null, image, true, false, Discard.IGNORE, DetectZeroes.OFF, List.of());
    }

    /** This export with a description ({@code -D}). */
    public NbdExport withDescription(String text) {
        return new NbdExport(name, text, image, writable, allocationDepth, discard, detectZeroes, bitmaps);
    }

    /** This export offering {@code qemu:allocation-depth} or not ({@code -A}). */
    public NbdExport withAllocationDepth(boolean offered) {
        return new NbdExport(name, description, image, writable, offered, discard, detectZeroes, bitmaps);
    }

    /** This export with a discard mode ({@code --discard}). */
    public NbdExport withDiscard(Discard mode) {
        return new NbdExport(name, description, image, writable, allocationDepth, mode, detectZeroes, bitmaps);
    }

    /** This export with a zero-detection mode ({@code --detect-zeroes}). */
    public NbdExport withDetectZeroes(DetectZeroes mode) {
        return new NbdExport(name, description, image, writable, allocationDepth, discard, mode, bitmaps);
    }

    /** This export offering these bitmaps of its image as {@code qemu:dirty-bitmap:NAME} ({@code -B}). */
    public NbdExport withBitmaps(List<String> names) {
        return new NbdExport(name, description, image, writable, allocationDepth, discard, detectZeroes, names);
    }

    /** The size clients see: the image's, rounded down to 512 bytes as QEMU exports it. */
    public long exportSize() {
        return image.size() & ~511L;
    }
}
