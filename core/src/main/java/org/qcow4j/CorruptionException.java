package org.qcow4j;

/**
 * Damage that QEMU answers by marking the image corrupt ({@code qcow2_signal_corruption}): a write would land on
 * metadata, a refcount block the allocation needs is not where a block can be, or a read or write meets an L2 entry
 * QEMU calls corrupt (an invalid extended L2 bitmap, an unaligned host offset). The request
 * fails, the corrupt bit is set in the header of an image opened for writing (version 3 images; QEMU's rewrite of a version 2 header has nowhere to
 * keep it), and the image takes no more writes; {@code qemu-img check -r all} repairs it. {@link #qemuWords()} is
 * QEMU's description of the event, where this is the same event as QEMU's ("Preventing invalid allocation of L2
 * table at offset 0").
 */
public class CorruptionException extends FormatException {
    private static final long serialVersionUID = 1L;

    public CorruptionException(String file, String field, Object value, String reason, String qemuWords) {
        super(file, field, value, reason, qemuWords);
    }
}
