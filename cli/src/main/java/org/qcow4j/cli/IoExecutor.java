package org.qcow4j.cli;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.IntConsumer;
import org.qcow4j.CorruptionException;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.Qcow2Metadata;
import org.qcow4j.QcowException;
import org.qcow4j.RefusedRequestException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.VmState;
import org.qcow4j.WritableImage;

/**
 * The work of {@code io}'s commands, once {@link IoArgs} has accepted their arguments: the requests on the open image
 * (read, readv, write, writev, aio_read, aio_write, discard, truncate, flush), the queries (length, alloc, map,
 * info), the session (open, close, reopen), and sleep, sigraise and abort; with qemu-io's checks against the image,
 * its report lines ({@link IoFormat}) and its "read failed: ..." lines. Each returns 0 or a negative errno.
 *
 * <p>aio requests are done at once, in order, but their completion (the report line, a failure, a pattern mismatch)
 * is printed where qemu-io prints it: when the next command that waits for I/O runs, at aio_flush, or at exit.
 */
final class IoExecutor {
    /** Reads are done in pieces of this size (unless dumped with -v), so a 2 GiB read needs no 2 GiB buffer. */
    private static final int CHUNK = 4 << 20;
    /** The options reopen may change (others: "Cannot change the option"). */
    private static final Set<String> REOPEN_OPTIONS = Set.of("read-only", "cache.direct", "cache.no-flush", "discard",
            "detect-zeroes", "auto-read-only"); // and qcow2's own (Qcow2RuntimeOptions)

    /** Where a read takes its bytes from: the disk, or the VM state area. */
    @FunctionalInterface
    private interface Source {
        void read(ByteBuffer dst, long offset) throws IOException;
    }

    /** One request on the image, timed and reported by {@link #timed}. */
    @FunctionalInterface
    private interface ImageCall {
        void run() throws IOException;
    }

    private IoOpen.Opened current;
    private DiskImage image;
    private WritableImage writable;
    /** QEMU's {@code signaled_corruption}: the opened image's first corruption event was printed. */
    private boolean signaledCorruption;
    private final PrintWriter out;
    private final Stderr err;
    private final boolean debug;
    private final boolean imageOpts;
    private final IntConsumer raise;
    /**
     * The completions of aio requests not printed yet, in order: those refused before any I/O (past the end of the
     * image), which qemu-io completes in a bottom half at once, and those done, which complete when their I/O has.
     */
    private final List<Runnable> refusedAio = new ArrayList<>();
    private final List<Runnable> pendingAio = new ArrayList<>();

    /**
     * @param opened    the open image, or null (then {@link IoShell} runs only the commands that need none)
     * @param imageOpts {@code --image-opts}: open's operand is an option string
     * @param raise     what raising a signal does ({@link IoSignals#raise}; tests record it): called with output
     *                  flushed as qemu-io flushes it, for a signal that has an effect
     */
    IoExecutor(IoOpen.Opened opened, PrintWriter out, Stderr err, boolean debug, boolean imageOpts, IntConsumer raise) {
        this.out = out;
        this.err = err;
        this.debug = debug;
        this.imageOpts = imageOpts;
        this.raise = raise;
        use(opened);
    }

    /** The program's {@code --object} definitions, as the first image opened carried them. */
    private QemuObjects objects;

    private void use(IoOpen.Opened opened) {
        if (opened != null && opened.request().flags().objects != null) {
            objects = opened.request().flags().objects;
        }
        current = opened;
        signaledCorruption = false;
        image = opened == null ? null : opened.image();
        writable = opened != null && opened.writable() ? (WritableImage) opened.image() : null;
    }

    /** Whether an image is open: most commands need one. */
    boolean hasImage() {
        return image != null;
    }

    /** Whether the image may be written: the commands that write need that. */
    boolean writable() {
        return writable != null;
    }

    // ---------------------------------------------------------------- read, readv, aio_read

    /** What a read saw: the data (when dumped), whether the pattern matched, the time spent; or the errno. */
    private record ReadResult(byte[] data, boolean mismatch, long nanos, int errno, Throwable failure) {
    }

    /**
     * Reads {@code count} bytes at {@code offset} in pieces (whole when {@code keep}, for a dump), checking the range
     * {@code [patternOffset, patternOffset + patternCount)} of it against {@code pattern} when {@code verify}.
     */
    private ReadResult readChecked(long offset, long count, boolean keep, boolean verify, int pattern, long patternOffset,
                                   long patternCount) {
        if (!inRange(offset, count)) {
            return new ReadResult(null, false, 0, IoErrno.EIO, null);
        }
        return readChecked(image::read, offset, count, keep, verify, pattern, patternOffset, patternCount);
    }

    /** {@link #readChecked} from {@code source}, which checks the range itself. */
    private ReadResult readChecked(Source source, long offset, long count, boolean keep, boolean verify, int pattern,
                                   long patternOffset, long patternCount) {
        byte[] buf;
        try {
            buf = new byte[(int) (keep ? count : Math.min(count, CHUNK))];
        } catch (OutOfMemoryError e) {
            return new ReadResult(null, false, 0, IoErrno.ENOMEM, null);
        }
        byte[] expected = verify ? filled(Math.min(buf.length, patternCount), pattern) : null;
        boolean mismatch = false;
        long nanos = 0;
        for (long done = 0; done < count; ) {
            int n = (int) Math.min(count - done, keep ? count : CHUNK);
            int at = keep ? (int) done : 0;
            long t1 = System.nanoTime();
            try {
                source.read(ByteBuffer.wrap(buf, at, n), offset + done);
            } catch (IOException | RuntimeException e) {
                return new ReadResult(null, false, 0, IoErrno.of(e), e);
            }
            nanos += System.nanoTime() - t1;
            if (verify && !mismatch) {
                mismatch = !matches(buf, at, done, n, patternOffset, patternCount, expected);
            }
            done += n;
        }
        return new ReadResult(buf, mismatch, nanos, 0, null);
    }

    int read(IoArgs.Read a) {
        drainAio();
        VmState area = a.vmstate() ? image.vmState().orElse(null) : null;
        if (a.vmstate() && area == null) {
            return failed("read", IoErrno.ENOTSUP); // bdrv_co_readv_vmstate: no driver down the chain has one (raw)
        }
        ReadResult r = area != null
                ? readChecked(area::read, a.offset(), a.count(), a.dump() && !a.quiet(), a.verify(), a.pattern(),
                        a.patternOffset(), a.patternCount())
                : readChecked(a.offset(), a.count(), a.dump() && !a.quiet(), a.verify(), a.pattern(),
                        a.patternOffset(), a.patternCount());
        if (r.errno() != 0) {
            return failure("read", r);
        }
        int ret = 0;
        if (r.mismatch()) {
            out.println("Pattern verification failed at offset " + (a.offset() + a.patternOffset()) + ", "
                    + a.patternCount() + " bytes");
            ret = IoErrno.EINVAL;
        }
        if (a.quiet()) {
            return ret;
        }
        if (a.dump()) {
            IoFormat.dump(out, r.data(), 0, a.offset(), a.count());
        }
        IoFormat.report(out, "read", r.nanos(), a.offset(), a.count(), a.count(), 1, a.csv());
        return ret;
    }

    int readv(IoArgs.Vector a) {
        drainAio();
        ReadResult r = readChecked(a.offset(), a.total(), a.dump() && !a.quiet(), a.verify(), a.pattern(), 0, a.total());
        if (r.errno() != 0) {
            return failure("readv", r);
        }
        int ret = 0;
        if (r.mismatch()) {
            out.println("Pattern verification failed at offset " + a.offset() + ", " + a.total() + " bytes");
            ret = IoErrno.EINVAL;
        }
        if (!a.quiet()) {
            if (a.dump()) {
                IoFormat.dump(out, r.data(), 0, a.offset(), a.total());
            }
            IoFormat.report(out, "read", r.nanos(), a.offset(), a.total(), a.total(), 1, a.csv());
        }
        return ret;
    }

    /** aio_read: done now, its completion printed later (a failure or mismatch does not fail the command). */
    int aioRead(IoArgs.Vector a) {
        if (a == null) {
            return 0; // -i
        }
        ReadResult r = readChecked(a.offset(), a.total(), a.dump() && !a.quiet(), a.verify(), a.pattern(), 0, a.total());
        (r.errno() != 0 && r.failure() == null ? refusedAio : pendingAio).add(() -> {
            if (r.errno() != 0) {
                failure("readv", r);
                return;
            }
            if (r.mismatch()) {
                out.println("Pattern verification failed at offset " + a.offset() + ", " + a.total() + " bytes");
            }
            if (!a.quiet()) {
                if (a.dump()) {
                    IoFormat.dump(out, r.data(), 0, a.offset(), a.total());
                }
                IoFormat.report(out, "read", r.nanos(), a.offset(), a.total(), a.total(), 1, a.csv());
            }
        });
        return 0;
    }

    /** "read failed: ..." for a read that failed, the library's own line on stderr for a real failure. */
    private int failure(String op, ReadResult r) {
        return r.failure() != null ? ioError(op, r.failure(), true) : failed(op, r.errno());
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

    // ---------------------------------------------------------------- write, writev, aio_write, discard

    int write(IoArgs.Write a) {
        long count = a.count();
        byte[] buf = null;
        if (!a.zero() && (a.sourceFile() != null || a.compressed() || a.vmstate())) {
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
        drainAio();
        if (a.vmstate()) {
            return writeVmState(buf, a);
        }
        byte[] data = buf;
        return timed("write", "wrote", a.offset(), count, a.csv(), a.quiet(), () -> {
            if (count > 0) {
                if (a.zero()) {
                    writable.writeZeroes(a.offset(), count, a.unmap());
                } else if (a.compressed()) {
                    writable.writeCompressed(ByteBuffer.wrap(data, 0, (int) count), a.offset());
                } else if (data != null) {
                    writable.write(ByteBuffer.wrap(data, 0, (int) count), a.offset());
                } else {
                    writePattern(a.offset(), count, a.pattern());
                }
            }
            if (a.fua()) {
                writable.flush();
            }
        });
    }

    /**
     * write -b: qemu-io's {@code do_save_vmstate}, the whole buffer in one request (as QEMU's, so that clusters land
     * where its allocation puts them); ENOTSUP for a format without a VM state area (raw).
     */
    private int writeVmState(byte[] data, IoArgs.Write a) {
        VmState area = image.vmState().orElse(null);
        if (area == null) {
            return failed("write", IoErrno.ENOTSUP);
        }
        long t1 = System.nanoTime();
        try {
            area.write(ByteBuffer.wrap(data, 0, (int) a.count()), a.offset());
        } catch (IOException | RuntimeException e) {
            return ioError("write", e, true);
        }
        long nanos = System.nanoTime() - t1;
        if (!a.quiet()) {
            IoFormat.report(out, "wrote", nanos, a.offset(), a.count(), a.count(), 1, a.csv());
        }
        return 0;
    }

    /** {@code count} bytes of {@code pattern} at {@code offset}, in pieces: no buffer as large as the request. */
    private void writePattern(long offset, long count, int pattern) throws IOException {
        byte[] chunk = filled(Math.min(count, CHUNK), pattern);
        for (long done = 0; done < count; ) {
            int n = (int) Math.min(count - done, chunk.length);
            writable.write(ByteBuffer.wrap(chunk, 0, n), offset + done);
            done += n;
        }
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
        if (n == 0) {
            err.println(name + ": file is empty"); // (also for a length of 0, as qemu-io)
            return null;
        }
        for (int at = n; at < count; at += n) {
            System.arraycopy(buf, 0, buf, at, Math.min(n, count - at));
        }
        return buf;
    }

    int writev(IoArgs.Vector a) {
        drainAio();
        return timed("writev", "wrote", a.offset(), a.total(), a.csv(), a.quiet(), () -> {
            writePattern(a.offset(), a.total(), a.pattern());
            if (a.fua()) {
                writable.flush();
            }
        });
    }

    /** aio_write: done now, its completion printed later (a failure does not fail the command). */
    int aioWrite(IoArgs.Vector a) {
        if (a == null) {
            return 0; // -i
        }
        long t1 = System.nanoTime();
        Throwable failure = null;
        int errno = 0;
        if (!inRange(a.offset(), a.total()) || (a.zero() && a.total() > IoFormat.REQUEST_MAX_BYTES)) {
            errno = IoErrno.EIO;
        } else {
            try {
                if (a.zero()) {
                    writable.writeZeroes(a.offset(), a.total(), a.unmap());
                } else {
                    writePattern(a.offset(), a.total(), a.pattern());
                }
                if (a.fua()) {
                    writable.flush();
                }
            } catch (IOException | RuntimeException e) {
                failure = e;
                errno = IoErrno.of(e);
            }
        }
        // qemu-io never starts the clock of a zero write: its time is the monotonic clock itself (the JVM's on Linux)
        long nanos = a.zero() ? System.nanoTime() : System.nanoTime() - t1;
        Throwable f = failure;
        int e = errno;
        (errno != 0 && failure == null ? refusedAio : pendingAio).add(() -> {
            if (e != 0) {
                if (f != null) {
                    ioError("aio_write", f, true);
                } else {
                    failed("aio_write", e);
                }
            } else if (!a.quiet()) {
                IoFormat.report(out, "wrote", nanos, a.offset(), a.total(), a.total(), 1, a.csv());
            }
        });
        return 0;
    }

    /**
     * Prints the completions of the aio requests made so far, as qemu-io does when it next waits for I/O (read, write,
     * discard, flush, truncate, sleep, aio_flush, open, close, reopen, exit; not alloc, map, info or length, which
     * find the image's metadata in memory and usually return before a request's I/O has completed).
     */
    void drainAio() {
        List<Runnable> done = new ArrayList<>(refusedAio);
        done.addAll(pendingAio);
        refusedAio.clear();
        pendingAio.clear();
        done.forEach(Runnable::run);
    }

    int aioFlush() {
        drainAio();
        return 0;
    }

    int discard(IoArgs.Discard a) {
        drainAio();
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

    // ---------------------------------------------------------------- truncate, length, flush

    int truncate(IoArgs.Truncate a) {
        drainAio();
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
        } catch (org.qcow4j.BitmapException e) {
            err.error(e.qemuWords()); // QEMU's truncate refuses an image with an inconsistent bitmap, in these words
            if (e.hint() != null) {
                err.println(e.hint());
            }
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
        drainAio();
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

    // ---------------------------------------------------------------- alloc, map, info

    /** Whether the bytes of {@code e} are allocated in the image itself (bdrv_is_allocated: data or zero, not below). */
    private static boolean allocated(Extent e) {
        return e.depth() == 0 && e.present();
    }

    int alloc(IoArgs.Alloc a) {
        long offset = a.offset();
        long count = a.count();
        long remaining = count;
        long sum = 0;
        long size = image.size();
        try {
            while (remaining > 0) {
                if (offset >= size) {
                    count -= remaining; // bdrv_is_allocated finds nothing past the end
                    break;
                }
                Extent e = image.extentAt(offset, Math.min(remaining, size - offset));
                if (allocated(e)) {
                    sum += e.length();
                }
                offset += e.length();
                remaining -= e.length();
            }
        } catch (IOException | RuntimeException e) {
            int errno = IoErrno.of(e);
            out.println("is_allocated failed: " + IoErrno.strerror(errno));
            err.error(IoErrno.describe(e));
            return errno;
        }
        out.println(sum + "/" + count + " bytes allocated at offset " + IoFormat.cvtstr(a.offset()));
        return 0;
    }

    int map() {
        long size = image.size();
        try {
            for (long offset = 0; offset < size; ) {
                Extent e = image.extentAt(offset, size - offset);
                boolean allocated = allocated(e);
                long num = e.length();
                while (offset + num < size) {
                    Extent next = image.extentAt(offset + num, size - offset - num);
                    if (allocated(next) != allocated) {
                        break;
                    }
                    num += next.length();
                }
                out.println(IoFormat.cvtstr(num) + " (0x" + Long.toHexString(num) + ") bytes "
                        + (allocated ? "    allocated" : "not allocated") + " at offset " + IoFormat.cvtstr(offset)
                        + " (0x" + Long.toHexString(offset) + ")");
                offset += num;
            }
        } catch (IOException | RuntimeException e) {
            err.error("Failed to get allocation status: " + IoErrno.strerror(IoErrno.of(e)));
            return IoErrno.of(e);
        }
        return 0;
    }

    /** info: the format, bdrv_get_info's cluster size and VM state offset, and the format-specific information. */
    int info() {
        if (current.spec().nbd() != null) {
            // over NBD bdrv_get_info fails: the format's name is all qemu-io prints (driver=nbd: its protocol's too)
            out.println("format name: " + image.format());
            if (image.format().equals("nbd")) {
                out.println("format name: " + (current.spec().nbd().unixPath() != null ? "nbd+unix" : "nbd+tcp"));
            }
            return 0;
        }
        if (current.spec().fileDriver()) {
            out.println("format name: file");
            out.println("format name: file"); // bdrv_file has the same format and protocol name
        } else {
            out.println("format name: " + image.format());
        }
        Qcow2Metadata q = image.qcow2().orElse(null);
        long clusterSize = 0;
        if (q != null) {
            clusterSize = q.header().geometry().clusterSize();
        }
        long vmStateOffset = image.vmState().map(VmState::offset).orElse(0L);
        out.println("cluster size: " + IoFormat.cvtstr(clusterSize));
        out.println("vm state offset: " + IoFormat.cvtstr(vmStateOffset));
        if (q != null) {
            out.println("Format specific information:");
            ImageInfo.dumpSpecific(out, ImageInfo.qcow2Specific(q));
        }
        return 0;
    }

    // ---------------------------------------------------------------- open, close, reopen

    int open(IoArgs.Open a) {
        if (current != null) {
            err.error("file open already, try 'help close'");
            return IoErrno.EINVAL;
        }
        try {
            IoOpen.Flags flags = a.flags();
            if (flags.objects == null) {
                flags.objects = objects; // the program's --object definitions
            }
            use(IoOpen.open(new IoOpen.Request(a.name(), a.options(), flags), err));
        } catch (IoOpen.Failed f) {
            f.report(err, debug);
            return IoErrno.EINVAL;
        }
        return 0;
    }

    int close() {
        drainAio();
        boolean closed = closeImage();
        use(null);
        return closed ? 0 : IoErrno.EIO;
    }

    /** At exit: the aio completions, then the image closed; false (reported) if closing failed. */
    boolean finish() {
        drainAio();
        boolean closed = image == null || closeImage();
        use(null);
        return closed;
    }

    /** Closes the image (the last writes made durable); false, with the reason on stderr, if that failed. */
    private boolean closeImage() {
        try {
            image.close();
            return true;
        } catch (IOException | RuntimeException e) {
            if (e instanceof QcowException q && q.qemuWords() != null && err.program() != Program.QCOW4J) {
                err.error(q.qemuWords()); // before what stdout still buffers, as qemu-io's stdio has it
            } else {
                out.flush();
                err.error(IoErrno.describe(e));
            }
            if (debug) {
                e.printStackTrace(err);
            }
            return false;
        }
    }

    /**
     * reopen: the image closed and opened again with the new flags and options (QEMU changes them in place). The
     * options are checked first, so a refused reopen leaves the image as it was; should the new open fail, the old
     * one is opened again.
     */
    int reopen(IoArgs.Reopen a) {
        drainAio();
        IoOpen.Request old = current.request();
        IoOpen.Flags f = old.flags().copy();
        Map<String, String> options = new LinkedHashMap<>(old.options());
        options.remove("read-only");
        f.readOnly = !writable();
        if (a.cache() != null) {
            f.cacheMode(a.cache());
        }
        if (a.writable() != null) {
            f.readOnly = !a.writable();
        }
        for (Map.Entry<String, String> e : a.options().entrySet()) {
            String k = e.getKey();
            if (k.equals("read-only") && a.writable() != null) {
                err.error("Cannot set both -r/-w and 'read-only'");
                return IoErrno.EINVAL;
            }
            if ((k.equals("cache.direct") || k.equals("cache.no-flush")) && a.cache() != null) {
                err.error("Cannot set both -c and the cache options");
                return IoErrno.EINVAL;
            }
            if (!REOPEN_OPTIONS.contains(k) && !Qcow2RuntimeOptions.isOption(k) && !e.getValue().equals(inEffect(k))) {
                err.error("Cannot change the option '" + childless(k) + "'");
                return IoErrno.EINVAL;
            }
        }
        Map<String, String> changed = new LinkedHashMap<>(a.options());
        String readOnly = changed.remove("read-only");
        options = Qcow2RuntimeOptions.join(changed, options);
        if (readOnly != null) {
            Boolean ro = ImageOptions.qapiBool(readOnly);
            if (ro == null) {
                err.error("Parameter 'read-only' expects 'on' or 'off'");
                return IoErrno.EINVAL;
            }
            if (ro && writable()) {
                err.error("Read-only block node '" + current.request().options().getOrDefault("node-name", "#block000")
                        + "' cannot support read-write users");
                return IoErrno.EINVAL;
            }
            f.readOnly = ro;
        }
        if (current.temporary()) {
            err.error("reopen of an image opened with -s is not supported by qcow4j (its temporary overlay would be lost)");
            return IoErrno.ENOTSUP;
        }
        IoOpen.Request request = new IoOpen.Request(old.name(), options, f);
        try {
            ImageSpec.of(request.name(), request.options()); // refused options leave the image open as it was
        } catch (ImageSpec.Refused e) {
            err.error(e.getMessage());
            return IoErrno.EINVAL;
        }
        if (!closeImage()) {
            use(null);
            return IoErrno.EIO;
        }
        try {
            use(IoOpen.open(request, err));
            return 0;
        } catch (IoOpen.Failed failed) {
            err.error(failed.reason());
            try {
                use(IoOpen.open(old, err));
            } catch (IoOpen.Failed again) {
                again.report(err, debug);
                use(null);
            }
            return IoErrno.EINVAL;
        }
    }

    /**
     * The value option {@code k} has now, for reopen's rule that an option it cannot change may be given again
     * unchanged: as given at open, or the driver in use (the image's format, the file's, the backing file's).
     */
    private String inEffect(String k) {
        String given = current.request().options().get(k);
        if (given != null) {
            return given;
        }
        return switch (k) {
            case "driver" -> image.format();
            case "file.driver" -> "file";
            case "backing.driver" -> image.backing() != null ? image.backing().format() : null;
            default -> null;
        };
    }

    /** An option's name as QEMU names it in "Cannot change the option": without the child node's prefix. */
    private static String childless(String k) {
        String name = k;
        while (name.startsWith("file.") || name.startsWith("backing.")) {
            name = name.substring(name.indexOf('.') + 1);
        }
        return name;
    }

    /** Whether {@code open}'s operand is an option string. */
    boolean imageOpts() {
        return imageOpts;
    }

    // ---------------------------------------------------------------- blkdebug, sleep, sigraise, abort

    /**
     * break, remove_break, resume, wait_break: blkdebug's, which qemu-io refuses for any other image; for a blkdebug
     * image (a pass-through here) they are refused by name.
     */
    int breakpoint(IoCommands command, List<String> argv) {
        if (current.spec().blkdebug()) {
            err.error(command.info.name() + ": blkdebug breakpoints are not supported by qcow4j");
            return IoErrno.ENOTSUP;
        }
        switch (command) {
            case BREAK -> out.println("Could not set breakpoint: " + IoErrno.strerror(IoErrno.ENOTSUP));
            case REMOVE_BREAK -> out.println("Could not remove breakpoint " + argv.get(1) + ": "
                    + IoErrno.strerror(IoErrno.ENOTSUP));
            case RESUME -> out.println("Could not resume request: " + IoErrno.strerror(IoErrno.ENOTSUP));
            default -> {
                // wait_break: qemu-io would wait for ever for a request that no image without blkdebug suspends
                err.error("wait_break: no request is ever suspended without blkdebug, which qcow4j does not have");
            }
        }
        return IoErrno.ENOTSUP;
    }

    int sleep(long ms) {
        drainAio();
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return 0;
    }

    /** sigraise: qemu-io flushes its output, then raises the signal (which may end the process). */
    int sigraise(int sig) {
        if (IoSignals.hasEffect(sig)) {
            out.flush();
            err.flush();
            raise.accept(sig);
        }
        return 0;
    }

    /**
     * abort: qemu-io's abort(3), SIGABRT with nothing flushed: what it printed to a pipe or file and had not written
     * yet is lost, as with qemu-io (whose stdout a terminal gets line by line, so a terminal sees it all).
     */
    int abort() {
        if (System.console() != null) {
            out.flush();
        }
        err.flush();
        raise.accept(IoSignals.SIGABRT);
        return 0;
    }

    // ---------------------------------------------------------------- errors

    /** qemu-io's "read failed: Input/output error" line for a request refused before or by the I/O. */
    private int failed(String op, int errno) {
        out.println(op + " failed: " + IoErrno.strerror(errno));
        return errno;
    }

    /**
     * A failed request: qemu-io's "read failed: Input/output error" line on stdout (when {@code report}); under
     * qcow4j's own name the library's message on stderr too (what failed, where), unless the image refused the
     * request as QEMU does (then the errno says it all); the errno returned.
     */
    int ioError(String op, Throwable e, boolean report) {
        int errno = IoErrno.of(e);
        if (e instanceof CorruptionException c && err.program() != Program.QCOW4J && !signaledCorruption) {
            // QEMU's qcow2_signal_corruption, on stderr while the request runs: fatal (the image marked corrupt) when
            // the image is writable, else a warning; either way once per opened image
            signaledCorruption = true;
            out.flush();
            String event = c.qemuWords() != null ? c.qemuWords() : c.getMessage().substring(c.file().length() + 2);
            err.println(writable != null
                    ? "qcow2: Marking image as corrupt: " + event + "; further corruption events will be suppressed"
                    : "qcow2: Image is corrupt: " + event + "; further non-fatal corruption events will be suppressed");
            err.flush();
        }
        if (report) {
            failed(op, errno);
        }
        // qemu-io itself says nothing more for a failed read or write (QEMU's driver returns the errno silently)
        if (err.program() == Program.QCOW4J && !(e instanceof OutOfMemoryError) && !(e instanceof RefusedRequestException)) {
            err.error(IoErrno.describe(e));
        }
        if (debug) {
            e.printStackTrace(err);
        }
        return errno;
    }
}
