package org.qcow4j.ops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.qcow4j.AbstractDiskImage;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;

/** Several images read as one disk, one after the other (qemu-img convert's multiple inputs). */
public final class ConcatenatedImage extends AbstractDiskImage {
    private final List<DiskImage> parts;
    private final long[] starts;

    ConcatenatedImage(List<DiskImage> parts) {
        super(parts.get(0).filename(), parts.get(0).format(), totalSize(parts));
        this.parts = List.copyOf(parts);
        this.starts = new long[parts.size()];
        for (int i = 1; i < parts.size(); i++) {
            starts[i] = starts[i - 1] + parts.get(i - 1).size();
        }
    }

    private static long totalSize(List<DiskImage> parts) {
        long total = 0;
        for (DiskImage p : parts) {
            total = Math.addExact(total, p.size());
        }
        return total;
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
        throw new IndexOutOfBoundsException("offset " + offset + " past the end of " + size() + " bytes");
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
