package org.qcow4j.ops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.function.DoubleConsumer;
import org.qcow4j.CommitOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.ImageOperationException;
import org.qcow4j.Images;
import org.qcow4j.IoBuffers;
import org.qcow4j.OpenOptions;
import org.qcow4j.WritableImage;
import org.qcow4j.format.Feature;
import org.qcow4j.io.Access;
import org.qcow4j.io.OpenFile;
import org.qcow4j.io.OpenFiles;
import org.qcow4j.qcow2.ChainOpener;
import org.qcow4j.qcow2.Qcow2Image;
import org.qcow4j.qcow2.Qcow2MakeEmpty;

/**
 * {@code qemu-img commit} (qemu-img.c's {@code img_commit}, which runs QEMU's active commit, a mirror job from the
 * image into its base: block/mirror.c). The ranges some layer above the base allocates, rounded out to the job's
 * granularity (the base's cluster size within 4 KiB..64 KiB, 64 KiB for a raw base), are copied in order: runs of
 * data in pieces of at most 1 MiB, runs that read as zeros and cover whole clusters of the base as zero writes that
 * may unmap, anything shorter than a granule as data. The base grows first if it is smaller than the image, and is
 * flushed and closed before the image changes; then, unless {@code drop}, the image is emptied (QEMU's
 * {@code qcow2_make_empty}). Images between the image and a deeper base stay as they are, as in QEMU.
 *
 * <p>What is copied is read from the layers above the base through the image's chain, and from the base itself
 * (being written) through the writable base, so nothing is read from a stale view of the base. A crash while copying
 * leaves every image reading what it read before (the base's new clusters are those the layers above hide); a crash
 * while emptying leaves a dirty image that the next writable open repairs.
 */
public final class Commit {
    /** mirror.c's MAX_IO_BYTES: the longest run of data one operation copies. */
    static final int MAX_IO_BYTES = 1 << 20;
    /** mirror.c's DEFAULT_MIRROR_BUF_SIZE: the most dirty granules one iteration takes. */
    static final int BUF_SIZE = 16 << 20;

    private Commit() {
    }

    public static void commit(Path path, CommitOptions options) throws IOException {
        String name = path.toString();
        DoubleConsumer progress = options.progress() == null ? p -> { } : options.progress();
        try (OpenFile hold = OpenFiles.open(path, Access.WRITE, name)) {
            boolean bitmaps;
            try (DiskImage top = Images.open(path, options.open().withForceShare(false))) {
                // (a top marked corrupt stays read-only, and its bitmaps as they are)
                bitmaps = top.qcow2().isPresent() && top.qcow2().get().header().has(Feature.BITMAPS)
                        && !top.qcow2().get().header().has(Feature.CORRUPT);
                int depth = findBase(top, options.base(), name);
                DiskImage base = top;
                for (int i = 0; i < depth; i++) {
                    base = base.backing();
                }
                OpenOptions baseOptions = OpenOptions.defaults().withFormat(base.format()).withQemuLayout(true)
                        .withWritethrough(options.open().writethrough())
                        .withPassphrase(depth == 1 ? options.open().backingPassphrase() : null);
                try (WritableImage target = Images.openWritable(Path.of(base.filename()), baseOptions)) {
                    copy(top, depth, target, options.rateLimit(), progress);
                    target.flush();
                }
            }
            if (!options.drop()) {
                Qcow2MakeEmpty.makeEmpty(path, options.open());
            } else if (bitmaps) {
                // qemu-img opens the overlay for writing either way: its persistent bitmaps are stored anew
                Qcow2Image.openAndClose(path, null);
            }
        }
        progress.accept(100);
    }

    /**
     * The depth of the base in {@code top}'s chain: its backing file, or the layer {@code base} names as QEMU's
     * {@code bdrv_find_backing_image} finds it (the name resolved against each image in turn, compared by real path
     * with the file that image's backing name resolves to).
     */
    private static int findBase(DiskImage top, String base, String name) throws IOException {
        if (base == null) {
            if (top.backing() == null) {
                throw new ImageOperationException(name, "has no backing file to commit into",
                        "Image does not have a backing file");
            }
            return 1;
        }
        int depth = 0;
        for (DiskImage curr = top; curr.backing() != null; curr = curr.backing(), depth++) {
            try {
                String resolved = ChainOpener.resolveRelative(curr.filename(), base);
                if (Path.of(resolved).toRealPath().equals(Path.of(curr.backing().filename()).toRealPath())) {
                    return depth + 1;
                }
            } catch (IOException e) {
                // not this one (QEMU skips a name realpath cannot resolve)
            }
        }
        throw new ImageOperationException(name, "base " + base + " is not in the backing chain",
                "Did not find '" + base + "' in the backing chain of '" + name + "'");
    }

    /** The mirror job's granularity: bdrv_get_default_bitmap_granularity of the base. */
    private static long granularity(WritableImage base) {
        return base.qcow2().map(q -> Math.min(65536, Math.max(4096, q.header().clusterSize()))).orElse(65536L);
    }

    /** mirror_run: the base grown, then the dirty granules mirrored in order (mirror_iteration). */
    private static void copy(DiskImage top, int depth, WritableImage base, long rate, DoubleConsumer progress)
            throws IOException {
        long size = top.size();
        if (base.size() < size) {
            base.resize(size);
        }
        long g = granularity(base);
        long baseCluster = base.qcow2().map(q -> q.header().clusterSize()).orElse(0L);
        Source source = new Source(top, depth, base);
        long total = dirtyBytes(top, depth, size, g);
        ByteBuffer buf = IoBuffers.allocate(BUF_SIZE);
        long done = 0;
        long copied = 0;
        long started = System.nanoTime();
        long pos = 0;
        while (pos < size) {
            long[] dirty = nextDirty(top, depth, pos, size, g);
            if (dirty == null) {
                break;
            }
            long offset = dirty[0];
            while (offset < dirty[1]) {
                long chunks = Math.min((dirty[1] - offset + g - 1) / g, BUF_SIZE / g);
                while (chunks > 0 && offset < size) {
                    Extent e = source.extentAt(offset, chunks * g);
                    long io = e.data() ? Math.min(e.length(), MAX_IO_BYTES) : e.length();
                    io -= io % g;
                    boolean copy = true;
                    if (io < g) {
                        io = g;
                    } else if (!e.data() && (baseCluster == 0 || offset % baseCluster == 0 && io % baseCluster == 0)) {
                        copy = false;
                    }
                    io = Math.min(Math.min(io, size - offset), BUF_SIZE);
                    if (copy) {
                        source.read(buf.clear().limit((int) io), offset);
                        base.write(buf.flip(), offset);
                        copied += io;
                        throttle(rate, copied, started);
                    } else if (e.zero()) {
                        base.writeZeroes(offset, io, true);
                    } else {
                        base.discard(offset, io);
                    }
                    done += io;
                    progress.accept(total == 0 ? 100 : Math.min(100, 100.0 * done / total));
                    offset += io;
                    chunks -= (io + g - 1) / g;
                }
                if (offset >= size) {
                    break;
                }
            }
            pos = Math.max(offset, dirty[1]);
        }
    }

    /** Sleeps as long as the copy runs ahead of {@code rate} bytes per second (the job's rate limit). */
    private static void throttle(long rate, long copied, long started) throws IOException {
        if (rate <= 0) {
            return;
        }
        long due = started + (long) (copied * 1e9 / rate);
        long wait = due - System.nanoTime();
        if (wait > 0) {
            try {
                Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("commit interrupted");
            }
        }
    }

    /**
     * The next dirty range from {@code pos}: granules holding bytes some layer above the base allocates
     * (mirror_dirty_init's bdrv_is_allocated_above), consecutive ones merged; null when there is none.
     */
    private static long[] nextDirty(DiskImage top, int depth, long pos, long size, long g) throws IOException {
        long start = -1;
        long end = -1;
        for (long p = pos; p < size; ) {
            long[] run = Rebase.allocated(top, p, size - p, depth);
            if (run[0] != 0) {
                long s = p / g * g;
                long e = Math.min(size, (p + run[1] + g - 1) / g * g);
                if (start < 0) {
                    start = s;
                    end = e;
                } else if (s <= end) {
                    end = Math.max(end, e);
                } else {
                    break;
                }
            } else if (start >= 0 && p >= end) {
                break;
            }
            p += run[1];
        }
        return start < 0 ? null : new long[] {Math.max(start, pos), end};
    }

    /** The bytes the dirty ranges cover, for the progress share. */
    private static long dirtyBytes(DiskImage top, int depth, long size, long g) throws IOException {
        long total = 0;
        for (long pos = 0; pos < size; ) {
            long[] d = nextDirty(top, depth, pos, size, g);
            if (d == null) {
                break;
            }
            total += d[1] - d[0];
            pos = d[1];
        }
        return total;
    }

    /**
     * The mirror's source, the image's whole chain, read from the image's chain where a layer above the base
     * allocates the bytes and from the writable base (fresh) everywhere else.
     */
    private record Source(DiskImage top, int depth, WritableImage base) {
        Extent extentAt(long offset, long max) throws IOException {
            Extent e = top.extentAt(offset, max);
            if (e.present() && e.depth() < depth) {
                return e;
            }
            return base.extentAt(offset, e.length());
        }

        void read(ByteBuffer dst, long offset) throws IOException {
            long end = offset + dst.remaining();
            for (long p = offset; p < end; ) {
                Extent e = top.extentAt(p, end - p);
                boolean above = e.present() && e.depth() < depth;
                ByteBuffer part = dst.duplicate();
                part.limit(part.position() + (int) e.length());
                (above ? top : base).read(part, p);
                dst.position(dst.position() + (int) e.length());
                p += e.length();
            }
        }
    }
}
