package org.qcow4j.ops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SeekableByteChannel;
import java.util.List;
import java.util.Optional;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.OpenOptions;
import org.qcow4j.OpenOptions.DetectZeroes;
import org.qcow4j.Qcow2Metadata;
import org.qcow4j.VmState;
import org.qcow4j.WritableImage;
import org.qcow4j.io.ImageChannel;
import org.qcow4j.io.Zeros;

/**
 * A writable image with the request rules of its {@link OpenOptions} applied over the driver's, as QEMU's block layer
 * applies them above the format driver: a flush after every write ({@code writethrough}), discards ignored and zero
 * writes never unmapping ({@code discard=ignore}), all-zero data written as zeroes ({@code detect-zeroes}), what a
 * read touches copied up from below first ({@code copy-on-read}); and an action run once the image is closed (a
 * temporary overlay deleted). Everything else is the driver's.
 */
public final class ManagedImage implements WritableImage {
    /** What runs after the image is closed, even if closing failed. */
    @FunctionalInterface
    public interface AfterClose {
        void run() throws IOException;
    }

    private final WritableImage image;
    private final boolean writethrough;
    private final boolean discard;
    private final DetectZeroes detectZeroes;
    private final boolean copyOnRead;
    private final AfterClose afterClose;

    private ManagedImage(WritableImage image, OpenOptions options, AfterClose afterClose) {
        this.image = image;
        this.writethrough = options.writethrough();
        this.discard = options.discard();
        this.detectZeroes = options.detectZeroes();
        this.copyOnRead = options.copyOnRead();
        this.afterClose = afterClose;
    }

    /** {@code image} with the rules of {@code options}; {@code image} itself when they change nothing. */
    public static WritableImage of(WritableImage image, OpenOptions options) {
        if (!options.writethrough() && options.discard() && options.detectZeroes() == DetectZeroes.OFF
                && !options.copyOnRead()) {
            return image;
        }
        return new ManagedImage(image, options, null);
    }

    /** The driver's image beneath the rules (for operations the rules do not concern, such as a resize). */
    static WritableImage driver(WritableImage image) {
        return image instanceof ManagedImage m ? driver(m.image) : image;
    }

    /** {@code image} with the rules of {@code options}, and {@code afterClose} run once it is closed. */
    public static WritableImage of(WritableImage image, OpenOptions options, AfterClose afterClose) {
        return new ManagedImage(image, options, afterClose);
    }

    @Override
    public void write(ByteBuffer src, long offset) throws IOException {
        if (detectZeroes != DetectZeroes.OFF && isZero(src)) {
            int n = src.remaining();
            image.writeZeroes(offset, n, detectZeroes == DetectZeroes.UNMAP && discard);
            src.position(src.limit());
        } else {
            image.write(src, offset);
        }
        writtenThrough();
    }

    private static boolean isZero(ByteBuffer b) {
        return Zeros.isZero(b, b.position(), b.limit());
    }

    @Override
    public void writeCompressed(ByteBuffer src, long offset) throws IOException {
        image.writeCompressed(src, offset);
        writtenThrough();
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        image.writeZeroes(offset, length, mayUnmap && discard);
        writtenThrough();
    }

    private void writtenThrough() throws IOException {
        if (writethrough) {
            image.flush();
        }
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        if (discard) {
            image.discard(offset, length);
        }
    }

    @Override
    public void flush() throws IOException {
        image.flush();
    }

    @Override
    public void resize(long newSize) throws IOException {
        image.resize(newSize);
    }

    @Override
    public SeekableByteChannel channel() {
        return new ImageChannel(this);
    }

    @Override
    public boolean readOnly() {
        return image.readOnly();
    }

    @Override
    public List<String> warnings() {
        return image.warnings();
    }

    @Override
    public List<String> repairDiagnostics() {
        return image.repairDiagnostics();
    }

    @Override
    public String filename() {
        return image.filename();
    }

    @Override
    public String format() {
        return image.format();
    }

    @Override
    public long size() {
        return image.size();
    }

    @Override
    public DiskImage backing() {
        return image.backing();
    }

    @Override
    public void read(ByteBuffer dst, long offset) throws IOException {
        if (copyOnRead && dst.hasRemaining()) {
            copyUp(offset, dst.remaining());
        }
        image.read(dst, offset);
    }

    /** The largest piece copied up at once (QEMU's bounce buffer is at most 16 MiB). */
    private static final int COPY_CHUNK = 1 << 20;

    /**
     * QEMU's bdrv_co_do_copy_on_readv: the clusters around {@code [offset, offset + length)} that the image does not
     * allocate itself are written with what reads there (zeros as a zero write), so the image has them from now on.
     */
    private void copyUp(long offset, long length) throws IOException {
        long size = image.size();
        if (offset < 0 || length < 0 || offset > size - length) {
            return; // the read itself refuses the range
        }
        long cluster = image.qcow2().map(q -> q.header().clusterSize()).orElse(512L);
        long end = Math.min(size, (offset + length + cluster - 1) / cluster * cluster);
        for (long pos = offset / cluster * cluster; pos < end; ) {
            Extent e = image.extentAt(pos, end - pos);
            if (e.depth() != 0 || !e.present()) {
                for (long at = pos; at < pos + e.length(); ) {
                    int n = (int) Math.min(COPY_CHUNK, pos + e.length() - at);
                    ByteBuffer data = ByteBuffer.allocate(n);
                    image.read(data, at);
                    if (isZero(data.flip())) {
                        image.writeZeroes(at, n, false);
                    } else {
                        image.write(data, at);
                    }
                    at += n;
                }
            }
            pos += e.length();
        }
    }

    @Override
    public Extent extentAt(long offset, long maxLength) throws IOException {
        return image.extentAt(offset, maxLength);
    }

    @Override
    public Extent blockStatus(long offset, long maxLength) throws IOException {
        return image.blockStatus(offset, maxLength);
    }

    @Override
    public Optional<Qcow2Metadata> qcow2() {
        return image.qcow2();
    }

    @Override
    public Optional<org.qcow4j.DirtyBitmaps> dirtyBitmaps() {
        return image.dirtyBitmaps();
    }

    /**
     * The driver's area, its requests past this image's rules as QEMU's go past the block layer's; but a write is
     * flushed with {@code writethrough} ({@code blk_save_vmstate} flushes when the write cache is off).
     */
    @Override
    public Optional<VmState> vmState() {
        return image.vmState().map(area -> !writethrough ? area : new VmState() {
            @Override
            public long offset() {
                return area.offset();
            }

            @Override
            public void read(ByteBuffer dst, long pos) throws IOException {
                area.read(dst, pos);
            }

            @Override
            public void write(ByteBuffer src, long pos) throws IOException {
                area.write(src, pos);
                image.flush();
            }
        });
    }

    @Override
    @SuppressWarnings("try") // the resource is there to run the action whatever closing the image does
    public void close() throws IOException {
        try (AutoCloseableAction after = afterClose == null ? null : afterClose::run) {
            image.close();
        }
    }

    /** {@link AfterClose} as a resource. */
    private interface AutoCloseableAction extends AutoCloseable {
        @Override
        void close() throws IOException;
    }
}
