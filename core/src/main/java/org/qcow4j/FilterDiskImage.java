package org.qcow4j;

import java.io.IOException;
import java.util.Optional;

/**
 * A disk image that stands in front of another and changes how it is read (as {@code java.io.FilterInputStream}
 * does for streams): its name, format, size, backing file, qcow2 metadata and VM state area are the inner image's,
 * and closing it closes the inner image. A filter gives {@link #read} and {@link #extentAt}; block status ({@link #blockStatus})
 * goes through its {@code extentAt}, and it has no dirty bitmaps of its own, as {@link DiskImage}'s defaults say.
 */
public abstract class FilterDiskImage implements DiskImage {
    /** The image read through this one. */
    protected final DiskImage in;

    protected FilterDiskImage(DiskImage in) {
        this.in = in;
    }

    @Override
    public String filename() {
        return in.filename();
    }

    @Override
    public String format() {
        return in.format();
    }

    @Override
    public long size() {
        return in.size();
    }

    @Override
    public DiskImage backing() {
        return in.backing();
    }

    @Override
    public Optional<Qcow2Metadata> qcow2() {
        return in.qcow2();
    }

    /** The inner image's: QEMU's filters pass VM state requests on to the node beneath. */
    @Override
    public Optional<VmState> vmState() {
        return in.vmState();
    }

    @Override
    public void close() throws IOException {
        in.close();
    }
}
