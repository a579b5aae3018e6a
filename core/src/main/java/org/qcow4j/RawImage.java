package org.qcow4j;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A raw disk image: guest offset = file offset. Like QEMU, the size is the file length rounded up to whole
 * 512-byte sectors, the tail past the end of the file reading as zeros. Every byte of the file counts as data
 * (the JDK cannot ask the file system for holes, so unlike qemu-img holes are not reported as zero).
 */
final class RawImage implements DiskImage {
    private final String filename;
    private final FileStorage storage;
    private final long size;

    RawImage(String filename, FileStorage storage) {
        this.filename = filename;
        this.storage = storage;
        this.size = (storage.length() + 511) & ~511L;
    }

    @Override
    public String filename() {
        return filename;
    }

    @Override
    public String format() {
        return "raw";
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public DiskImage backing() {
        return null;
    }

    @Override
    public void read(ByteBuffer dst, long offset) throws IOException {
        if (offset < 0 || offset > size - dst.remaining()) {
            throw new IndexOutOfBoundsException("read of " + dst.remaining() + " bytes at " + offset
                    + " outside the virtual disk of " + size + " bytes");
        }
        storage.readFully(dst, offset);
    }

    @Override
    public Extent extentAt(long offset, long maxLength) {
        long fileEnd = storage.length();
        if (offset < fileEnd) {
            return new Extent(offset, Math.min(maxLength, fileEnd - offset), 0, true, false, true, offset);
        }
        return new Extent(offset, Math.min(maxLength, size - offset), 0, true, true, false, offset);
    }

    @Override
    public void close() throws IOException {
        storage.close();
    }
}
