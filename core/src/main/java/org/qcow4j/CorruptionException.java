package org.qcow4j;

/**
 * Damage met while writing that QEMU answers by marking the image corrupt ({@code qcow2_signal_corruption}): a
 * write would land on metadata, or a refcount block the allocation needs is not where a block can be. The request
 * fails, the corrupt bit is set in the header (version 3 images; QEMU's rewrite of a version 2 header has nowhere to
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
