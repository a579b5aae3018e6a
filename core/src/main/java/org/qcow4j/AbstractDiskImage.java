package org.qcow4j;

/**
 * A skeleton for disk images without a backing file: the name, format and size every such image reports, and
 * the range check of its reads. Raw files, concatenations and a filesystem's metadata image extend it; so may an
 * application's own image (a device, an object in a store) that it wants to convert or serve.
 */
public abstract class AbstractDiskImage implements DiskImage {
    private final String filename;
    private final String format;
    private final long size;

    /**
     * An image named {@code filename}, of {@code format} ("raw" for plain bytes), {@code size} guest bytes long (an
     * image that can be resized overrides {@link #size()}).
     */
    protected AbstractDiskImage(String filename, String format, long size) {
        this.filename = filename;
        this.format = format;
        this.size = size;
    }

    @Override
    public String filename() {
        return filename;
    }

    @Override
    public String format() {
        return format;
    }

    @Override
    public long size() {
        return size;
    }

    /** None: such images stand alone. */
    @Override
    public DiskImage backing() {
        return null;
    }

    /** Refuses an access of {@code length} bytes at {@code offset} that does not lie inside the virtual disk. */
    protected final void checkRange(long offset, long length) {
        long size = size();
        if (offset < 0 || length < 0 || offset > size - length) {
            throw new IndexOutOfBoundsException(length + " bytes at " + offset + " outside the virtual disk of " + size
                    + " bytes");
        }
    }
}
