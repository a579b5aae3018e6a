package org.qcow4j;

/**
 * What {@link Images#compare} found, as {@code qemu-img compare} reports it.
 *
 * @param verdict      identical, or the first difference found
 * @param offset       for {@link Verdict#CONTENT_MISMATCH}, the guest offset of the first 512-byte sector that
 *                     differs; for {@link Verdict#STATUS_MISMATCH}, where the block status first differs; else 0
 * @param sizeMismatch the images have different virtual sizes (qemu-img's "Warning: Image size mismatch!", printed
 *                     once the common part compared equal; in strict mode the verdict is {@link Verdict#SIZE_MISMATCH}
 *                     instead)
 */
public record CompareResult(Verdict verdict, long offset, boolean sizeMismatch) {
    /** The outcomes, in qemu-img compare's words. */
    public enum Verdict {
        /** "Images are identical." (exit 0): the guest data is the same; past the shorter image's end all zeros. */
        IDENTICAL,
        /** "Content mismatch at offset N!" (exit 1). */
        CONTENT_MISMATCH,
        /** Strict mode: "Strict mode: Image size mismatch!" (exit 1). */
        SIZE_MISMATCH,
        /** Strict mode: "Strict mode: Offset N block status mismatch!" (exit 1). */
        STATUS_MISMATCH
    }

    /** Whether the images compared equal (exit code 0). */
    public boolean identical() {
        return verdict == Verdict.IDENTICAL;
    }
}
