package org.qcow4j.ops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.function.DoubleConsumer;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.ImageOperationException;
import org.qcow4j.Images;
import org.qcow4j.IoBuffers;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.RebaseOptions;
import org.qcow4j.WritableImage;
import org.qcow4j.io.Access;
import org.qcow4j.io.OpenFile;
import org.qcow4j.io.OpenFiles;
import org.qcow4j.qcow2.ChainOpener;
import org.qcow4j.qcow2.HeaderUpdate;

/**
 * {@code qemu-img rebase} (qemu-img.c's {@code img_rebase}). Safe mode: for every range the image does not allocate
 * itself, in qemu-img's 2 MiB steps, the old backing chain and the new one are read (zeros past the end of either, and
 * where the new one is a layer of the old chain, only ranges some layer above it allocates), compared 512 bytes at a
 * time, and the runs that differ are written into the image with the old chain's content (zeros written as zeros
 * where the old chain has ended); then the header names the new backing file. The image reads the same at every
 * moment: its writes copy what the old backing file shows, and the header changes only once they are flushed, in one
 * write of cluster 0. Unsafe mode ({@code -u}) only rewrites the header. The image's write locks are held throughout.
 */
public final class Rebase {
    /** qemu-img's IO_BUF_SIZE: the step of the comparison. */
    static final int IO_BUF_SIZE = 2 << 20;
    private static final int SECTOR = 512;

    private Rebase() {
    }

    public static void rebase(Path path, RebaseOptions options) throws IOException {
        String name = path.toString();
        String backing = options.backingFile() == null || options.backingFile().isEmpty() ? null : options.backingFile();
        if (!options.unsafe() && options.backingFile() == null) {
            throw new IllegalArgumentException("safe mode needs a backing file name (\"\" for none)");
        }
        DoubleConsumer progress = options.progress() == null ? p -> { } : options.progress();
        try (OpenFile hold = OpenFiles.open(path, Access.WRITE, name)) {
            if (options.unsafe()) {
                changeBackingFile(null, path, name, backing, options.backingFormat());
            } else {
                copyDifferences(path, name, backing, options, progress);
            }
        }
        progress.accept(100);
    }

    /** QEMU's {@code bdrv_change_backing_file} with {@code require} true, and qemu-img's words for its errors. */
    private static void changeBackingFile(WritableImage open, Path path, String name, String backing, String format)
            throws IOException {
        String target = backing == null ? "(null)" : backing;
        if (backing != null && format == null) {
            throw new ImageOperationException(name, "no format given for the new backing file " + backing
                    + " (QEMU requires -F)", "Could not change the backing file to '" + target
                    + "': backing format must be specified");
        }
        try {
            if (open == null || !HeaderUpdate.changeBackingFile(open, backing, format)) {
                HeaderUpdate.changeBackingFile(path, backing, format);
            }
        } catch (HeaderUpdate.RefusedException e) {
            String why = e.refusal() == HeaderUpdate.Refusal.NO_SPACE ? "No space left in the file header"
                    : e.refusal().strerror();
            throw new ImageOperationException(name, e.getMessage().substring(name.length() + 2),
                    "Could not change the backing file to '" + target + "': " + why, e);
        }
    }

    private static void copyDifferences(Path path, String name, String backing, RebaseOptions options,
                                        DoubleConsumer progress) throws IOException {
        try (WritableImage image = Images.openWritable(path, options.open())) {
            DiskImage old = image.backing();
            DiskImage prefix = null;
            int prefixDepth = 0;
            DiskImage opened = null;
            try {
                if (backing != null) {
                    String resolved = ChainOpener.resolveRelative(name, backing);
                    int depth = 1;
                    for (DiskImage d = old; d != null; d = d.backing(), depth++) {
                        if (sameFile(d.filename(), resolved)) {
                            prefix = d;
                            prefixDepth = depth;
                            break;
                        }
                    }
                    if (prefix == null) {
                        opened = openNewBacking(name, backing, resolved, options);
                    }
                }
                DiskImage fresh = prefix != null ? prefix : opened;
                compare(image, old, fresh, prefixDepth, progress);
                image.flush();
                // before the image closes, as QEMU does: closing stores its persistent bitmaps after the header
                changeBackingFile(ManagedImage.driver(image), path, name, backing, options.backingFormat());
            } finally {
                if (opened != null) {
                    opened.close();
                }
            }
        }
    }

    private static DiskImage openNewBacking(String name, String backing, String resolved, RebaseOptions options)
            throws IOException {
        OpenOptions o = OpenOptions.defaults().withFormat(options.backingFormat()).withForceShare(options.forceShare());
        try {
            return Images.open(Path.of(resolved), o);
        } catch (QcowException e) {
            throw new ImageOperationException(name, "cannot open the new backing file " + backing + ": "
                    + e.getMessage(), null, e);
        } catch (java.nio.file.NoSuchFileException e) {
            throw new ImageOperationException(name, "the new backing file " + resolved + " does not exist", null, e);
        }
    }

    /** Whether two names are the same file (QEMU's {@code bdrv_find_backing_image} compares real paths). */
    private static boolean sameFile(String a, String b) {
        try {
            return Path.of(a).toRealPath().equals(Path.of(b).toRealPath());
        } catch (IOException e) {
            return false;
        }
    }

    /** img_rebase's loop over the image. */
    private static void compare(WritableImage image, DiskImage old, DiskImage fresh, int prefixDepth,
                                DoubleConsumer progress) throws IOException {
        long size = image.size();
        long oldSize = old == null ? 0 : old.size();
        long newSize = fresh == null ? 0 : fresh.size();
        ByteBuffer bufOld = IoBuffers.allocate(IO_BUF_SIZE);
        ByteBuffer bufNew = IoBuffers.allocate(IO_BUF_SIZE);
        float step = size == 0 ? 0 : (float) 100 / (size / Math.min(size, IO_BUF_SIZE));
        float done = 0;
        long n;
        for (long offset = 0; offset < size; offset += n) {
            n = Math.min(IO_BUF_SIZE, size - offset);
            long[] top = allocated(image, offset, n, 1);
            n = top[1];
            if (top[0] != 0) {
                continue;
            }
            if (prefixDepth > 0 && offset < oldSize) {
                long[] above = allocated(image, offset, Math.min(n, oldSize - offset), prefixDepth);
                n = above[1];
                if (above[0] == 0) {
                    continue;
                }
            } // past the old backing file's end the image read zeros: compared (qemu-img 7.2's stable fix, 024)
            if (readsZero(old, oldSize, offset, n) && readsZero(fresh, newSize, offset, n)) {
                done += step; // both read as zeros: qemu-img reads and compares them, and writes nothing
                progress.accept(Math.min(done, 100));
                continue;
            }
            boolean oldIsZero = false;
            if (offset >= oldSize) {
                zero(bufOld, (int) n);
                oldIsZero = true;
            } else {
                n = Math.min(n, oldSize - offset);
                old.read(bufOld.clear().limit((int) n), offset);
            }
            if (offset >= newSize) {
                zero(bufNew, (int) n);
            } else {
                n = Math.min(n, newSize - offset);
                fresh.read(bufNew.clear().limit((int) n), offset);
            }
            int written = 0;
            while (written < n) {
                int run = sameRun(bufOld, bufNew, written, (int) n);
                if (run < 0) { // they differ over -run bytes
                    run = -run;
                    if (oldIsZero) {
                        image.writeZeroes(offset + written, run, false);
                    } else {
                        image.write(bufOld.duplicate().limit(written + run).position(written), offset + written);
                    }
                }
                written += run;
            }
            done += step;
            progress.accept(Math.min(done, 100));
        }
    }

    /** Whether all {@code n} bytes at {@code offset} of {@code image} (zeros past its {@code size}) read as zeros. */
    private static boolean readsZero(DiskImage image, long size, long offset, long n) throws IOException {
        long end = Math.min(offset + n, size);
        for (long p = offset; p < end; ) {
            Extent e = image.extentAt(p, end - p);
            if (!e.zero() || e.data()) {
                return false;
            }
            p = e.end();
        }
        return true;
    }

    private static void zero(ByteBuffer b, int n) {
        b.clear().limit(n);
        org.qcow4j.io.Zeros.fill(b);
    }

    /**
     * qemu-img's {@code compare_buffers} from {@code from} to {@code end}: the length of the run of 512-byte sectors
     * that all differ (negative) or are all equal (positive), as the first one does.
     */
    private static int sameRun(ByteBuffer a, ByteBuffer b, int from, int end) {
        int i = Math.min(end - from, SECTOR);
        boolean differ = a.slice(from, i).mismatch(b.slice(from, i)) >= 0;
        while (from + i < end) {
            int len = Math.min(end - from - i, SECTOR);
            if ((a.slice(from + i, len).mismatch(b.slice(from + i, len)) >= 0) != differ) {
                break;
            }
            i += len;
        }
        return differ ? -i : i;
    }

    /**
     * Whether some layer above depth {@code below} allocates the bytes at {@code offset} (QEMU's
     * {@code bdrv_is_allocated_above}; {@code below} 1 is {@code bdrv_is_allocated} of the image alone), and for how
     * many of the next {@code n} bytes that stays so: {allocated ? 1 : 0, length}.
     */
    static long[] allocated(DiskImage image, long offset, long n, int below) throws IOException {
        Extent e = image.extentAt(offset, n);
        boolean allocated = e.present() && e.depth() < below;
        long end = e.end();
        while (end < offset + n) {
            Extent next = image.extentAt(end, offset + n - end);
            if ((next.present() && next.depth() < below) != allocated) {
                break;
            }
            end = next.end();
        }
        return new long[] {allocated ? 1 : 0, end - offset};
    }
}
