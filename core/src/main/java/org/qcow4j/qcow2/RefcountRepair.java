package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.qcow4j.QcowException;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;

/**
 * The repairs of {@code qemu-img check -r leaks|all} that fix single things in place, as QEMU 7.2 makes them: a
 * stored refcount set to the computed one (a cluster it frees discarded), a COPIED flag of the active L1 or L2
 * tables set or cleared, the file grown to a refcount block past its end, and at the end the dirty and corrupt
 * bits cleared. {@link RefcountScan} finds and reports what is to repair; this class writes, and counts what it
 * fixed. Without a writer (a check, or a repair's dry run) it writes nothing: a dry run only decides what could be
 * repaired.
 */
final class RefcountRepair {
    private final CheckContext c;

    RefcountRepair(CheckContext c) {
        this.c = c;
    }

    /**
     * Sets the stored refcount of {@code cluster} to {@code refcount}, the computed one: a corruption fixed if the
     * stored one was {@code tooLow}, else a leak.
     */
    void setRefcount(long cluster, long refcount, boolean tooLow) throws QcowException {
        try {
            c.stored.set(cluster, refcount, c.writer);
        } catch (StoredRefcounts.UnreadableRefcount e) {
            throw new QcowException(c.filename, "cannot repair the refcount of cluster " + cluster);
        } catch (IOException e) {
            throw new QcowException(c.filename, "write failed (refcount of cluster " + cluster + "): " + CheckContext.describe(e));
        }
        if (refcount == 0) {
            discard(cluster);
        }
        if (tooLow) {
            c.corruptionsFixed++;
        } else {
            c.leaksFixed++;
        }
    }

    /** A leak repair brought the refcount of {@code cluster} to 0: QEMU discards it, so the file reads zeros there. */
    private void discard(long cluster) throws QcowException {
        long offset = cluster << c.clusterBits;
        long end = Math.min(offset + c.clusterSize, c.storage.length()); // a discard does not make the file longer
        if (end > offset) {
            c.write(ByteBuffer.allocate((int) (end - offset)), offset);
        }
    }

    /** Whether wrong COPIED flags are repaired (in the mode and at the point QEMU's {@code check_oflag_copied} is). */
    boolean repairsCopiedFlags() {
        // QEMU: -r all always repairs; -r leaks only if the refcounts are now right (no errors, leaks or corruptions).
        return c.writer != null && (c.fixErrors || (c.fixLeaks && c.checkErrors == 0 && c.corruptions == 0 && c.leaks == 0));
    }

    /** Writes entry {@code index} of the active L1 table, its COPIED flag repaired. */
    void writeL1Entry(int index, long entry) throws QcowException {
        c.write(ByteBuffer.allocate(8).order(ByteOrder.BIG_ENDIAN).putLong(0, entry), c.header.l1TableOffset() + 8L * index);
        c.corruptionsFixed++;
    }

    /** Writes the L2 table at {@code offset} with the COPIED flags of {@code repaired} of its entries repaired. */
    void writeL2Table(long offset, long[] table, int repaired) throws QcowException {
        // QEMU writes the whole table back (one cluster).
        ByteBuffer b = ByteBuffer.allocate((int) c.clusterSize).order(ByteOrder.BIG_ENDIAN);
        b.asLongBuffer().put(table);
        c.write(b, offset);
        c.corruptionsFixed += repaired;
    }

    /**
     * QEMU's repair of refcount block {@code index} at {@code offset}, past the end of the file: the file grows to
     * end with that cluster, which the caller then references (being zeros, it leaves the rebuild to QEMU's next
     * steps); returns whether it grew. If the file cannot grow the structure is rebuilt instead. A dry run only
     * decides whether it could grow.
     */
    boolean growFileForRefcountBlock(int index, long offset) throws IOException {
        if (Long.compareUnsigned(offset, Long.MAX_VALUE - c.clusterSize) > 0) {
            c.report.accept("ERROR could not resize image: Invalid argument");
            c.rebuild = true;
            return false;
        }
        long newLength = offset + c.clusterSize;
        if (c.sizeToClusters(newLength) > CheckContext.MAX_CLUSTERS) {
            // QEMU would grow the file (sparse) and count its clusters; qcow4j does not make such a file.
            c.unrepairable("refcount block " + index + " is outside image, at offset " + offset + ": qcow4j does not grow"
                    + " the file to " + newLength + " bytes");
            return false;
        }
        if (c.writer == null) {
            c.corruptions--; // a dry run: the file could grow
            c.corruptionsFixed++;
            return false;
        }
        try {
            StoredRefcounts.writeFully(c.writer, ByteBuffer.allocate(1), newLength - 1); // sparse up to the block
        } catch (IOException e) {
            c.report.accept("ERROR could not resize image: " + CheckContext.describe(e));
            c.rebuild = true;
            return false;
        }
        c.reopenStorage(c.stored.table().length);
        c.nbClusters = Math.max(c.nbClusters, c.sizeToClusters(c.fileLength));
        c.computed.ensureCapacity(c.nbClusters + 1, c.filename);
        c.corruptions--;
        c.corruptionsFixed++;
        return true;
    }

    /**
     * QEMU's {@code qcow2_mark_clean} and {@code qcow2_mark_consistent} at the end of a repair that leaves no
     * corruptions and no check errors: the dirty and corrupt bits are cleared, once all else is on disk.
     */
    void markClean() throws QcowException {
        long features = c.header.incompatibleFeatures();
        long clean = features & ~(Feature.DIRTY.mask() | Feature.CORRUPT.mask());
        if (c.writer == null || c.checkErrors != 0 || c.corruptions != 0 || clean == features) {
            return;
        }
        c.force();
        c.write(ByteBuffer.allocate(8).order(ByteOrder.BIG_ENDIAN).putLong(0, clean), Header.INCOMPATIBLE_FEATURES_AT);
    }
}
