package org.qcow4j.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.BitSet;
import org.qcow4j.QcowException;

/**
 * An image file with positional reads and writes (no shared file position, so threads never contend).
 * Reads past the end of the file return zeros, as QEMU's block layer does. Opened through {@link OpenFiles}, with the
 * locks its {@link Access} takes. A failed read, write or flush is a {@link FileIOException} naming the file; writes
 * and flushes consult {@link WriteFaults} first (fault-injection tests).
 */
public final class FileStorage implements AutoCloseable {
    private final Path path;
    private final OpenFile file;
    private final FileChannel channel;
    private volatile long length;
    private volatile WriteCheck writeCheck;

    /**
     * A check run before each write of new content ({@link #writeFully}, {@link #writeEntries}; not zeroing, extension
     * or truncation), as QEMU runs its pre-write overlap checks: it throws to refuse the write, nothing written.
     */
    @FunctionalInterface
    public interface WriteCheck {
        void before(long pos, long length) throws IOException;
    }

    private FileStorage(Path path, OpenFile file) throws IOException {
        this.path = path;
        this.file = file;
        this.channel = file.channel();
        this.length = channel.size();
    }

    /**
     * Opens {@code path} as {@code access} says.
     *
     * @throws org.qcow4j.ImageLockedException when another process holds the image in a way {@code access} cannot
     *         share
     */
    public static FileStorage open(Path path, Access access) throws IOException {
        OpenFile f = OpenFiles.open(path, access, path.toString());
        try {
            return new FileStorage(path, f);
        } catch (IOException | RuntimeException e) {
            f.close();
            throw e;
        }
    }

    public Path path() {
        return path;
    }

    public long length() {
        return length;
    }

    /** Fills {@code dst} from {@code pos}; the part past end of file is zero-filled. */
    public void readFully(ByteBuffer dst, long pos) throws IOException {
        try {
            while (dst.hasRemaining()) {
                if (pos >= length) {
                    Zeros.fill(dst);
                    return;
                }
                int n = channel.read(dst, pos);
                if (n < 0) {
                    Zeros.fill(dst);
                    return;
                }
                pos += n;
            }
        } catch (IOException e) {
            throw failed("read failed at offset " + pos, e);
        }
    }

    /**
     * Writes all of {@code src} at {@code pos}, growing the file if need be.
     *
     * @throws QcowException naming the file when the write fails (a full disk, an I/O error)
     */
    /**
     * Writes the entries of a table of big-endian 64-bit values that {@code which} marks, entry {@code i} at {@code
     * tableOffset + 8 * i}: each run of marked entries in one write (at most 64 Ki entries each), so that a table
     * with millions of changed entries costs a few writes, not millions. Bytes of unmarked entries are not written.
     */
    public void writeEntries(long[] values, BitSet which, long tableOffset) throws IOException {
        final int maxRun = 1 << 16;
        ByteBuffer buf = null;
        for (int i = which.nextSetBit(0); i >= 0; ) {
            int end = Math.min(which.nextClearBit(i), i + maxRun);
            if (buf == null || buf.capacity() < (end - i) * 8) {
                buf = ByteBuffer.allocate(Math.min(maxRun, which.cardinality()) * 8);
            }
            buf.clear();
            buf.asLongBuffer().put(values, i, end - i);
            buf.limit((end - i) * 8);
            writeFully(buf, tableOffset + i * 8L);
            i = which.nextSetBit(end);
        }
    }

    /** Installs {@code check} for every later write of new content (null removes it). */
    public void setWriteCheck(WriteCheck check) {
        writeCheck = check;
    }

    public void writeFully(ByteBuffer src, long pos) throws IOException {
        WriteCheck check = writeCheck;
        if (check != null) {
            check.before(pos, src.remaining());
        }
        write(src, pos, WriteFaults.Op.WRITE);
    }

    private void write(ByteBuffer src, long pos, WriteFaults.Op op) throws IOException {
        long end = pos + src.remaining();
        try {
            WriteFaults.check(path, op, pos);
            while (src.hasRemaining()) {
                pos += channel.write(src, pos);
            }
        } catch (IOException e) {
            throw failed("write failed at offset " + pos, e);
        }
        if (end > length) {
            synchronized (this) {
                length = Math.max(length, end);
            }
        }
    }

    /** Makes the file at least {@code size} bytes long (the new part reads as zeros). */
    public void extendTo(long size) throws IOException {
        if (size > length && size > channel.size()) {
            write(ByteBuffer.allocate(1), size - 1, WriteFaults.Op.EXTEND);
        }
    }

    /**
     * Makes {@code [pos, pos + len)} read as zeros without growing the file: what QEMU's discard passthrough leaves
     * where it punches a hole ({@code FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE}). The JDK cannot punch holes, so
     * the bytes inside the file are written as zeros; past its end they read as zeros already.
     */
    public void zero(long pos, long len) throws IOException {
        long end = Math.min(pos + len, length);
        ByteBuffer zeros = null;
        ByteBuffer old = null;
        for (long p = pos; p < end; ) {
            int n = (int) Math.min(end - p, 1 << 20);
            if (zeros == null || zeros.capacity() < n) {
                zeros = ByteBuffer.allocate(n);
                old = ByteBuffer.allocate(n);
            }
            // A piece that reads as zeros already (a hole, a preallocated cluster never written) is left alone:
            // writing it would allocate disk blocks where QEMU's punched hole frees them.
            readFully(old.clear().limit(n), p);
            if (!Zeros.isZero(old, 0, n)) {
                write(zeros.clear().limit(n), p, WriteFaults.Op.WRITE);
            }
            p += n;
        }
    }

    /**
     * Makes {@code [pos, end)} allocated on disk and reading as zeros, as a preallocating truncation (QEMU's falloc
     * and full) leaves it: the JDK has no fallocate, so zeros are written, from the file's end only.
     */
    public void allocateZeros(long end) throws IOException {
        ByteBuffer zeros = null;
        for (long p = length; p < end; ) {
            int n = (int) Math.min(end - p, 1 << 20);
            if (zeros == null || zeros.capacity() < n) {
                zeros = ByteBuffer.allocate(n);
            }
            write(zeros.clear().limit(n), p, WriteFaults.Op.EXTEND);
            p += n;
        }
    }

    /** Cuts the file to {@code size} bytes (QEMU truncates an image file whose tail a shrink freed). */
    public void truncate(long size) throws IOException {
        try {
            WriteFaults.check(path, WriteFaults.Op.EXTEND, size);
            channel.truncate(size);
        } catch (IOException e) {
            throw failed("truncate failed at " + size, e);
        }
        synchronized (this) {
            length = Math.min(length, size);
        }
    }

    /** Forces written data (and the file's length) to the disk; a failure is a {@link QcowException} naming the file. */
    public void force() throws IOException {
        try {
            WriteFaults.check(path, WriteFaults.Op.FORCE, -1);
            // fdatasync, as QEMU's flush: the data and what reading it back needs (the file's size), not timestamps
            channel.force(false);
        } catch (IOException e) {
            throw failed("flush failed", e);
        }
    }

    private QcowException failed(String what, IOException e) {
        return e instanceof QcowException q ? q
                : new FileIOException(path.toString(), what + ": " + (e.getMessage() != null ? e.getMessage() : e), e);
    }

    /** Reads {@code len} bytes at {@code pos} into a new heap buffer; {@code len} must already be bounded. */
    public ByteBuffer read(long pos, int len) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(len);
        readFully(b, pos);
        return b.flip();
    }

    @Override
    public void close() throws IOException {
        file.close();
    }
}
