package org.qcow4j.raw;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.qcow4j.AbstractDiskImage;
import org.qcow4j.CreateOptions;
import org.qcow4j.Extent;
import org.qcow4j.Images;
import org.qcow4j.QcowException;
import org.qcow4j.RefusedRequestException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WritableImage;
import org.qcow4j.WriteRefusedException;
import org.qcow4j.io.Access;
import org.qcow4j.io.ImageChannel;
import org.qcow4j.io.OpenFile;
import org.qcow4j.io.OpenFiles;

/**
 * A raw file opened for writing ({@link Images#openWritable}), as QEMU's raw driver over a file: guest offset = file offset; the
 * size is the file length rounded up to whole 512-byte sectors (the tail past the end of the file reads as zeros
 * and writing there extends the file); resizing sets the file length. Java cannot punch holes, so zero writes and
 * discards write zeros (same content, the space stays allocated). A raw image whose format was probed refuses
 * writes that would make its first sector look like a qcow2 image, as QEMU restricts writes to block 0 of probed
 * raw images.
 */
public final class WritableRawImage extends AbstractDiskImage implements WritableImage {
    private static final int ZERO_CHUNK = 1 << 20;
    private static final byte[] QCOW2_MAGIC = {'Q', 'F', 'I', (byte) 0xfb};

    private final OpenFile file;
    private final FileChannel channel;
    private final boolean probed;
    private long size;

    private WritableRawImage(String filename, OpenFile file, boolean probed) throws IOException {
        super(filename, "raw", roundUp(file.channel().size()));
        this.file = file;
        this.channel = file.channel();
        this.probed = probed;
        this.size = roundUp(channel.size());
    }

    /** Opens {@code path} for writing; {@code probed}: the format was guessed, not given. */
    public static WritableRawImage open(Path path, boolean probed) throws IOException {
        if (!Files.exists(path)) {
            throw new NoSuchFileException(path.toString());
        }
        if (Files.isDirectory(path)) {
            throw new org.qcow4j.QcowException(path.toString(), "is a directory", null,
                    "Could not open '" + path + "': Is a directory");
        }
        if (!Files.isWritable(path)) {
            throw new AccessDeniedException(path.toString());
        }
        OpenFile file = OpenFiles.open(path, Access.WRITE, path.toString());
        try {
            return new WritableRawImage(path.toString(), file, probed);
        } catch (IOException | RuntimeException e) {
            file.close();
            throw e;
        }
    }

    private static long roundUp(long length) {
        return (length + 511) & ~511L;
    }

    @Override
    public synchronized long size() {
        return size;
    }

    @Override
    public synchronized void read(ByteBuffer dst, long offset) throws IOException {
        checkRange(offset, dst.remaining());
        long pos = offset;
        while (dst.hasRemaining()) {
            int n = channel.read(dst, pos);
            if (n < 0) {
                // Past the end of the file, inside the last sector: zeros.
                while (dst.hasRemaining()) {
                    dst.put((byte) 0);
                }
                break;
            }
            pos += n;
        }
    }

    @Override
    public synchronized Extent extentAt(long offset, long maxLength) {
        return new Extent(offset, Math.min(maxLength, size - offset), 0, true, false, true, offset);
    }

    @Override
    public synchronized void write(ByteBuffer src, long offset) throws IOException {
        checkRange(offset, src.remaining());
        if (probed && offset < QCOW2_MAGIC.length && src.hasRemaining()) {
            byte[] head = new byte[QCOW2_MAGIC.length];
            read(ByteBuffer.wrap(head, 0, (int) Math.min(head.length, size)), 0);
            for (int i = (int) offset; i < head.length && i - offset < src.remaining(); i++) {
                head[i] = src.get(src.position() + i - (int) offset);
            }
            if (Arrays.equals(head, QCOW2_MAGIC)) {
                throw new WriteRefusedException(filename(), "write to block 0 of a probed raw image would make it look like qcow2"
                        + " (give the format raw)");
            }
        }
        writeFully(src, offset);
    }

    /** Writes all of {@code src} at {@code pos}; a failure (a full disk, an I/O error) names the file. */
    private void writeFully(ByteBuffer src, long pos) throws IOException {
        try {
            while (src.hasRemaining()) {
                pos += channel.write(src, pos);
            }
        } catch (IOException e) {
            throw failed("write failed at offset " + pos, e);
        }
    }

    private QcowException failed(String what, IOException e) {
        return new QcowException(filename(), what + ": " + (e.getMessage() != null ? e.getMessage() : e), e);
    }

    @Override
    public synchronized void writeCompressed(ByteBuffer src, long offset) throws IOException {
        checkRange(offset, src.remaining());
        throw new RefusedRequestException(filename(), RefusedRequestException.Reason.NOT_SUPPORTED,
                "raw images have no compressed clusters");
    }

    @Override
    public synchronized void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        checkRange(offset, length);
        ByteBuffer zeros = ByteBuffer.allocate((int) Math.min(ZERO_CHUNK, Math.max(length, 1)));
        long pos = offset;
        long end = offset + length;
        while (pos < end) {
            zeros.clear().limit((int) Math.min(zeros.capacity(), end - pos));
            writeFully(zeros, pos);
            pos += zeros.limit();
        }
    }

    @Override
    public synchronized void discard(long offset, long length) throws IOException {
        writeZeroes(offset, length, true);
    }

    @Override
    public synchronized void flush() throws IOException {
        try {
            channel.force(false); // fdatasync, as QEMU flushes
        } catch (IOException e) {
            throw failed("flush failed", e);
        }
    }

    @Override
    public synchronized void resize(long newSize) throws IOException {
        if (newSize < 0) {
            throw new IllegalArgumentException("negative size " + newSize);
        }
        // The channel is the process's one descriptor of the file (closing another would drop its locks), and a
        // FileChannel only shrinks: grow by writing the last byte.
        if (newSize < channel.size()) {
            channel.truncate(newSize);
        } else if (newSize > channel.size()) {
            writeFully(ByteBuffer.allocate(1), newSize - 1);
        }
        size = roundUp(newSize);
    }

    /**
     * {@link #resize(long)}, growing as QEMU's file driver does with {@code preallocation}: {@code FALLOC} and
     * {@code FULL} allocate the new part (written as zeros: the JDK has no fallocate; the bytes are the same),
     * {@code METADATA} is refused as QEMU refuses it for raw images.
     */
    public synchronized void resize(long newSize, CreateOptions.Preallocation preallocation) throws IOException {
        if (preallocation == CreateOptions.Preallocation.METADATA) {
            throw new UnsupportedFeatureException(filename(), "preallocation=metadata on a raw image",
                    "Unsupported preallocation mode: metadata");
        }
        long oldLength = channel.size();
        if (preallocation == CreateOptions.Preallocation.OFF || newSize <= oldLength) {
            resize(newSize);
            return;
        }
        ByteBuffer zeros = ByteBuffer.allocate((int) Math.min(1 << 20, newSize - oldLength));
        for (long pos = oldLength; pos < newSize; ) {
            int n = (int) Math.min(zeros.capacity(), newSize - pos);
            writeFully(zeros.clear().limit(n), pos);
            pos += n;
        }
        size = roundUp(newSize);
    }

    @Override
    public SeekableByteChannel channel() {
        return new ImageChannel(this);
    }

    @Override
    public boolean readOnly() {
        return false;
    }

    @Override
    public List<String> warnings() {
        return List.of();
    }

    @Override
    public synchronized void close() throws IOException {
        file.close();
    }
}
