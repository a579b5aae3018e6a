package org.qcow4j.nbd.server;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.WritableImage;
import org.qcow4j.format.Header;
import org.qcow4j.nbd.NbdExport;
import org.qcow4j.nbd.wire.Protocol;

/**
 * An export as the protocol sees it: its size and transmission flags (qemu's {@code nbd_export_create}), and the
 * image operations behind each command, with qemu-nbd's per-device options (discard, detect-zeroes) applied.
 */
final class ServedExport {
    private final NbdExport export;
    private final DiskImage image;
    private final WritableImage writable;
    private final long size;
    private final int flags;
    /** The virtual sizes of the backing chain below the image, nearest first. */
    private final long[] backingSizes;
    /** The granularity at which a zero write is only metadata (a qcow2 v3 cluster); 0 if never. */
    private final long fastZeroGranularity;

    /**
     * @param multiConn whether the server lets several clients in at once ({@code -e N}, N != 1): then clients may
     *                  spread requests over several connections (CAN_MULTI_CONN), as qemu-nbd offers
     */
    ServedExport(NbdExport export, boolean multiConn) {
        this.export = export;
        this.image = export.image();
        this.writable = export.writable() ? (WritableImage) image : null;
        this.size = export.exportSize();
        int f = Protocol.FLAG_HAS_FLAGS | Protocol.FLAG_SEND_FLUSH | Protocol.FLAG_SEND_FUA | Protocol.FLAG_SEND_CACHE;
        if (multiConn) {
            f |= Protocol.FLAG_CAN_MULTI_CONN;
        }
        if (writable == null) {
            f |= Protocol.FLAG_READ_ONLY;
        } else {
            f |= Protocol.FLAG_SEND_TRIM | Protocol.FLAG_SEND_WRITE_ZEROES | Protocol.FLAG_SEND_FAST_ZERO;
        }
        this.flags = f;
        int n = 0;
        for (DiskImage b = image.backing(); b != null; b = b.backing()) {
            n++;
        }
        this.backingSizes = new long[n];
        n = 0;
        for (DiskImage b = image.backing(); b != null; b = b.backing()) {
            backingSizes[n++] = b.size();
        }
        this.fastZeroGranularity = image.qcow2().map(q -> {
            Header h = q.header();
            return h.version() >= 3 ? h.clusterSize() : 0L;
        }).orElse(0L);
    }

    NbdExport export() {
        return export;
    }

    String name() {
        return export.name();
    }

    long size() {
        return size;
    }

    /** The transmission flags, without SEND_DF (added when structured replies were negotiated). */
    int flags() {
        return flags;
    }

    boolean readOnly() {
        return writable == null;
    }

    void read(ByteBuffer dst, long offset) throws IOException {
        image.read(dst, offset);
    }

    Extent extentAt(long offset, long maxLength) throws IOException {
        return image.extentAt(offset, maxLength);
    }

    /** As QEMU's block status that wants zeros (base:allocation, sparse reads): holes in the file asked too. */
    Extent blockStatus(long offset, long maxLength) throws IOException {
        return image.blockStatus(offset, maxLength);
    }

    /**
     * The {@code qemu:allocation-depth} of the run {@code e} (or of its start, up to {@code end}): 1 for the image,
     * 2 for its backing file..., 0 where no layer allocates it. As QEMU's {@code bdrv_is_allocated_above}, bytes past
     * the end of a shorter backing file count as allocated in that file. Returns the depth and the run's end.
     */
    /** The dirty runs of the export's bitmap {@code index} within {@code [offset, offset + length)}. */
    java.util.List<long[]> dirtyRanges(int index, long offset, long length) throws IOException {
        org.qcow4j.DirtyBitmaps bitmaps = export.image().dirtyBitmaps()
                .orElseThrow(() -> new IOException("the image has no dirty bitmaps"));
        return bitmaps.dirtyRanges(export.bitmaps().get(index), offset, length);
    }

    long[] allocationDepth(Extent e, long end) {
        long runEnd = Math.min(end, e.end());
        if (e.present()) {
            return new long[] {e.depth() + 1, runEnd};
        }
        for (int i = 0; i < backingSizes.length; i++) {
            if (e.start() >= backingSizes[i]) {
                return new long[] {i + 2, runEnd};
            }
            runEnd = Math.min(runEnd, backingSizes[i]);
        }
        return new long[] {0, runEnd};
    }

    void write(ByteBuffer src, long offset, boolean fua) throws IOException {
        NbdExport.DetectZeroes dz = export.detectZeroes();
        if (dz != NbdExport.DetectZeroes.OFF && allZeros(src)) {
            writable.writeZeroes(offset, src.remaining(), dz == NbdExport.DetectZeroes.UNMAP);
        } else {
            writable.write(src, offset);
        }
        if (fua) {
            writable.flush();
        }
    }

    /**
     * A zero write. {@code mayUnmap} is the client's (no NO_HOLE), honoured only with {@code --discard=unmap}.
     * Returns false, having done nothing, when {@code fastOnly} and the image cannot do it by metadata alone.
     */
    boolean writeZeroes(long offset, long length, boolean mayUnmap, boolean fastOnly, boolean fua) throws IOException {
        if (fastOnly && !fastZero(offset, length)) {
            return false;
        }
        writable.writeZeroes(offset, length, mayUnmap && export.discard() == NbdExport.Discard.UNMAP);
        if (fua) {
            writable.flush();
        }
        return true;
    }

    private boolean fastZero(long offset, long length) {
        if (fastZeroGranularity == 0) {
            return false;
        }
        long end = offset + length;
        return offset % fastZeroGranularity == 0 && (end % fastZeroGranularity == 0 || end == image.size());
    }

    void trim(long offset, long length, boolean fua) throws IOException {
        if (export.discard() == NbdExport.Discard.UNMAP) {
            writable.discard(offset, length);
        }
        if (fua) {
            writable.flush();
        }
    }

    void flush() throws IOException {
        if (writable != null) {
            writable.flush();
        }
    }

    private static boolean allZeros(ByteBuffer b) {
        int i = b.position();
        int end = b.limit();
        for (; i + 8 <= end; i += 8) {
            if (b.getLong(i) != 0) {
                return false;
            }
        }
        for (; i < end; i++) {
            if (b.get(i) != 0) {
                return false;
            }
        }
        return true;
    }
}
