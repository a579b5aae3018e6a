package org.qcow4j.ops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;

/** Several images read as one disk, one after the other (qemu-img convert's multiple inputs). */
public final class ConcatenatedImage implements DiskImage {
    private final List<DiskImage> parts;
    private final long[] starts;
    private final long size;

    ConcatenatedImage(List<DiskImage> parts) {
        this.parts = List.copyOf(parts);
        this.starts = new long[parts.size()];
        long total = 0;
        for (int i = 0; i < parts.size(); i++) {
            starts[i] = total;
            total = Math.addExact(total, parts.get(i).size());
        }
        this.size = total;
    }

    /** One image as it is, several concatenated. */
    static DiskImage of(List<DiskImage> parts) {
        return parts.size() == 1 ? parts.get(0) : new ConcatenatedImage(parts);
    }

    /** The part holding guest byte {@code offset} (empty parts hold none). */
    private int partAt(long offset) {
        for (int i = 0; i < parts.size(); i++) {
            if (offset < starts[i] + parts.get(i).size()) {
                return i;
            }
        }
        throw new IndexOutOfBoundsException("offset " + offset + " past the end of " + size + " bytes");
    }

    @Override
    public String filename() {
        return parts.get(0).filename();
    }

    @Override
    public String format() {
        return parts.get(0).format();
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
        while (dst.hasRemaining()) {
            int i = partAt(offset);
            long inPart = offset - starts[i];
            int n = (int) Math.min(dst.remaining(), parts.get(i).size() - inPart);
            parts.get(i).read(dst.slice(dst.position(), n), inPart);
            dst.position(dst.position() + n);
            offset += n;
        }
    }

    @Override
    public Extent extentAt(long offset, long maxLength) throws IOException {
        int i = partAt(offset);
        long inPart = offset - starts[i];
        Extent e = parts.get(i).extentAt(inPart, Math.min(maxLength, parts.get(i).size() - inPart));
        return new Extent(offset, e.length(), e.depth(), e.present(), e.zero(), e.data(), e.hostOffset());
    }

    @Override
    public void close() throws IOException {
        for (DiskImage d : parts) {
            d.close();
        }
    }
}
