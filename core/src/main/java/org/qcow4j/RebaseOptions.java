package org.qcow4j;

import java.util.function.DoubleConsumer;

/**
 * How {@link Images#rebase} gives an image a new backing file, as {@code qemu-img rebase}'s options say.
 *
 * @param backingFile   the new backing file's name, stored in the image as given (a relative name is taken from the
 *                      image's directory, as QEMU resolves it); "" or null: no backing file (the image is flattened
 *                      in safe mode)
 * @param backingFormat the new backing file's format ({@code -F}), stored in the header; null: none, which QEMU
 *                      refuses for a named backing file ("backing format must be specified")
 * @param unsafe        {@code -u}: only the header changes; the old backing file is not opened (it may be missing)
 * @param open          how the image is opened ({@code -f} as its format, {@code -t} writethrough)
 * @param forceShare    {@code -U}: the new backing file is read whatever other processes do with it
 * @param progress      told the share done, 0 to 100, as qemu-img's {@code -p} counts it; may be null
 */
public record RebaseOptions(String backingFile, String backingFormat, boolean unsafe, OpenOptions open,
                            boolean forceShare, DoubleConsumer progress) {
    /** Safe mode onto {@code backingFile} in {@code backingFormat}, the image's format probed. */
    public static RebaseOptions safe(String backingFile, String backingFormat) {
        return new RebaseOptions(backingFile, backingFormat, false, OpenOptions.defaults(), false, null);
    }

    /** Only the header rewritten ({@code -u}). */
    public static RebaseOptions unsafe(String backingFile, String backingFormat) {
        return new RebaseOptions(backingFile, backingFormat, true, OpenOptions.defaults(), false, null);
    }

    public RebaseOptions withOpen(OpenOptions o) {
        return new RebaseOptions(backingFile, backingFormat, unsafe, o, forceShare, progress);
    }

    public RebaseOptions withForceShare(boolean share) {
        return new RebaseOptions(backingFile, backingFormat, unsafe, open, share, progress);
    }

    public RebaseOptions withProgress(DoubleConsumer p) {
        return new RebaseOptions(backingFile, backingFormat, unsafe, open, forceShare, p);
    }
}
