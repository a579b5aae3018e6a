package org.qcow4j.cli;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.qcow4j.DiskImage;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WritableImage;

/**
 * The work of {@code io}'s commands on the open image, once {@link IoArgs} has accepted their arguments: read
 * (verified, dumped), write, discard, truncate, length, flush and abort, with qemu-io's checks against the image,
 * its report lines ({@link IoFormat}) and its "read failed: ..." lines. Each returns 0 or a negative errno.
 */
final class IoExecutor {
    /** Reads are done in pieces of this size (unless dumped with -v), so a 2 GiB read needs no 2 GiB buffer. */
    private static final int READ_CHUNK = 4 << 20;

    /** One request on the image, timed and reported by {@link #timed}. */
    @FunctionalInterface
    private interface ImageCall {
        void run() throws IOException;
    }

    private final DiskImage image;
    private final WritableImage writable;
    private final PrintWriter out;
    private final Stderr err;
    private final boolean debug;
    private final Runnable abort;

    /**
     * @param image    the open image, or null (then {@link IoShell} runs only the commands that need none)
     * @param abort    what {@code abort} does after flushing the output (the process ends, image untouched)
     */
    IoExecutor(DiskImage image, PrintWriter out, Stderr err, boolean debug, Runnable abort) {
        this.image = image;
        this.writable = image instanceof WritableImage w && !w.readOnly() ? w : null;
        this.out = out;
        this.err = err;
        this.debug = debug;
        this.abort = abort;
    }

    /** Whether an image is open: most commands need one. */
    boolean hasImage() {
        return image != null;
    }

    /** Whether the image may be written: the commands that write need that. */
    boolean writable() {
        return writable != null;
    }

    // ---------------------------------------------------------------- read

    int read(IoArgs.Read a) {
        long offset = a.offset();
        long count = a.count();
        if (a.vmstate()) {
            return failed("read", IoErrno.ENOTSUP); // -b: its sectors were checked by IoArgs; no VM state here
        }
        if (!inRange(offset, count)) {
            return failed("read", IoErrno.EIO);
        }

        boolean whole = a.dump() && !a.quiet();
        byte[] buf;
        try {
            buf = new byte[(int) (whole ? count : Math.min(count, READ_CHUNK))];
        } catch (OutOfMemoryError e) {
            return failed("read", IoErrno.ENOMEM);
        }
        byte[] expected = a.verify() ? filled(Math.min(buf.length, a.patternCount()), a.pattern()) : null;
        boolean mismatch = false;
        long nanos = 0;
        for (long done = 0; done < count; ) {
            int n = (int) Math.min(count - done, whole ? count : READ_CHUNK);
            int at = whole ? (int) done : 0;
            long t1 = System.nanoTime();
            try {
                image.read(ByteBuffer.wrap(buf, at, n), offset + done);
            } catch (IOException | RuntimeException e) {
                return ioError("read", e, true);
            }
            nanos += System.nanoTime() - t1;
            if (a.verify() && !mismatch) {
                mismatch = !matches(buf, at, done, n, a.patternOffset(), a.patternCount(), expected);
            }
            done += n;
        }
        int ret = 0;
        if (mismatch) {
            out.println("Pattern verification failed at offset " + (offset + a.patternOffset()) + ", " + a.patternCount()
                    + " bytes");
            ret = IoErrno.EINVAL;
        }
        if (a.quiet()) {
            return ret;
        }
        if (a.dump()) {
            IoFormat.dump(out, buf, 0, offset, count);
        }
        IoFormat.report(out, "read", nanos, offset, count, count, 1, a.csv());
        return ret;
    }

    /** Whether the piece {@code buf[at, at+n)} (at {@code done} in the request) holds the pattern where it should. */
    private static boolean matches(byte[] buf, int at, long done, int n, long patternOffset, long patternCount, byte[] expected) {
        long from = Math.max(done, patternOffset);
        long to = Math.min(done + n, patternOffset + patternCount);
        for (long p = from; p < to; ) {
            int len = (int) Math.min(to - p, expected.length);
            int start = at + (int) (p - done);
            if (Arrays.mismatch(buf, start, start + len, expected, 0, len) >= 0) {
                return false;
            }
            p += len;
        }
        return true;
    }

    private static byte[] filled(long length, int value) {
        byte[] b = new byte[(int) Math.max(1, length)];
        Arrays.fill(b, (byte) value);
        return b;
    }

    /** The block layer's request check: past the end of the image is EIO. */
    private boolean inRange(long offset, long count) {
        long size = image.size();
        return offset >= 0 && count >= 0 && offset <= size && size - offset >= count;
    }

    // ---------------------------------------------------------------- write, discard

    int write(IoArgs.Write a) {
        long count = a.count();
        byte[] buf = null;
        if (!a.zero()) {
            if (count > Integer.MAX_VALUE) {
                return failed("write", IoErrno.EINVAL); // only with -n, which needs -z
            }
            try {
                buf = a.sourceFile() != null ? fromFile(a.sourceFile(), (int) count) : filled(count, a.pattern());
            } catch (OutOfMemoryError e) {
                return failed("write", IoErrno.ENOMEM);
            }
            if (buf == null) {
                return IoErrno.EINVAL;
            }
        }
        if (a.vmstate() || a.compressed()) {
            return failed("write", IoErrno.ENOTSUP);
        }
        byte[] data = buf;
        return timed("write", "wrote", a.offset(), count, a.csv(), a.quiet(), () -> {
            if (count > 0) {
                if (a.zero()) {
                    writable.writeZeroes(a.offset(), count, a.unmap());
                } else {
                    writable.write(ByteBuffer.wrap(data, 0, (int) count), a.offset());
                }
            }
            if (a.fua()) {
                writable.flush();
            }
        });
    }

    /** qemu_io_alloc_from_file: the file's first bytes, repeated to fill {@code count}; null after an error. */
    private byte[] fromFile(String name, int count) {
        byte[] buf = new byte[count];
        int n;
        try (InputStream in = Files.newInputStream(Path.of(name))) {
            n = in.readNBytes(buf, 0, count);
        } catch (IOException | RuntimeException e) {
            err.println(name + ": " + IoErrno.strerror(IoErrno.of(e)));
            return null;
        }
        if (n == 0 && count > 0) {
            err.println(name + ": file is empty");
            return null;
        }
        for (int at = n; at < count; at += n) {
            System.arraycopy(buf, 0, buf, at, Math.min(n, count - at));
        }
        return buf;
    }

    int discard(IoArgs.Discard a) {
        return timed("discard", "discard", a.offset(), a.count(), a.csv(), a.quiet(), () -> {
            if (a.count() > 0) {
                writable.discard(a.offset(), a.count());
            }
        });
    }

    /**
     * A request done in one go (write, discard): past the end of the image it fails with EIO, else it is timed and
     * reported as {@code done} ("wrote") unless {@code quiet}.
     */
    private int timed(String op, String done, long offset, long count, boolean csv, boolean quiet, ImageCall call) {
        if (!inRange(offset, count)) {
            return failed(op, IoErrno.EIO);
        }
        long t1 = System.nanoTime();
        try {
            call.run();
        } catch (IOException | RuntimeException e) {
            return ioError(op, e, true);
        }
        long nanos = System.nanoTime() - t1;
        if (!quiet) {
            IoFormat.report(out, done, nanos, offset, count, count, 1, csv);
        }
        return 0;
    }

    // ---------------------------------------------------------------- truncate, length, flush, abort

    int truncate(IoArgs.Truncate a) {
        long size = a.size();
        String mode = a.mode();
        boolean qcow2 = image.format().equals("qcow2");
        if (qcow2 && size % 512 != 0) {
            err.error("The new size must be a multiple of 512");
            return IoErrno.EINVAL;
        }
        if (qcow2 && !mode.equals("off") && size < image.size()) {
            err.error("Preallocation can't be used for shrinking an image");
            return IoErrno.EINVAL;
        }
        if (!mode.equals("off")) {
            err.error("Unsupported preallocation mode '" + mode + "'");
            return IoErrno.ENOTSUP;
        }
        long oldSize = image.size();
        boolean needsZeroFlags = version2WithBacking() && image.backing().size() > oldSize
                && size > alignUp(oldSize, clusterSize());
        try {
            writable.resize(size); // opened with OpenOptions.withQemuLayout: qemu-io's file, byte for byte
        } catch (UnsupportedFeatureException e) {
            if (!needsZeroFlags) {
                return ioError("truncate", e, false);
            }
            // QEMU must zero the new clusters to hide a longer backing file, and a version 2 image has no zero flag
            // (qcow2_subcluster_zeroize's -ENOTSUP): it fails once the L1 table has grown, and so does the library.
            err.error("Failed to zero out new clusters: " + IoErrno.strerror(IoErrno.ENOTSUP));
            return IoErrno.ENOTSUP;
        } catch (IOException | RuntimeException e) {
            return ioError("truncate", e, false);
        }
        return 0;
    }

    private boolean version2WithBacking() {
        return image.backing() != null && image.qcow2().map(q -> q.header().version() == 2).orElse(false);
    }

    private long clusterSize() {
        return image.qcow2().orElseThrow().header().clusterSize();
    }

    private static long alignUp(long value, long alignment) {
        return (value + alignment - 1) / alignment * alignment;
    }

    int length() {
        out.println(IoFormat.cvtstr(image.size()));
        return 0;
    }

    int flush() {
        if (writable != null) {
            try {
                writable.flush();
            } catch (IOException | RuntimeException e) {
                // qemu-io prints nothing for a failed flush; the exit code says it.
                return ioError("flush", e, false);
            }
        }
        return 0;
    }

    int abort() {
        out.flush();
        err.flush();
        abort.run();
        return 0;
    }

    // ---------------------------------------------------------------- errors

    /** qemu-io's "read failed: Input/output error" line for a request refused before or by the I/O. */
    private int failed(String op, int errno) {
        out.println(op + " failed: " + IoErrno.strerror(errno));
        return errno;
    }

    /**
     * A failed request: qemu-io's "read failed: Input/output error" line on stdout (when {@code report}), the
     * library's own message on stderr (QEMU would log it too, e.g. a corruption), the errno returned.
     */
    int ioError(String op, Throwable e, boolean report) {
        int errno = IoErrno.of(e);
        if (report) {
            failed(op, errno);
        }
        if (!(e instanceof OutOfMemoryError)) {
            err.error(IoErrno.describe(e));
        }
        if (debug) {
            e.printStackTrace(err);
        }
        return errno;
    }
}
