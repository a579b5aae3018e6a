package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.WritableImage;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.format.RefcountBlock;
import org.qcow4j.io.Access;
import org.qcow4j.io.FileStorage;

/**
 * QEMU's {@code qcow2_make_empty} (what {@code qemu-img commit} does to the overlay it committed): a version 3 image
 * without snapshots, bitmaps or data file whose L1 table and three clusters fit one refcount block is reset to an
 * empty image ({@code make_completely_empty}: header, refcount table, one refcount block, zeroed L1 table, the file
 * cut after them); any other image has every cluster discarded in full (entries made unallocated, clusters freed and
 * punched).
 *
 * <p>The reset writes in QEMU's order, under the dirty bit, so a crash at any point leaves an image that the next
 * writable open repairs (QEMU's and qcow4j's both rebuild a dirty image's refcounts): the dirty bit forced; the L1
 * table zeroed (the data is meant to go); clusters 1 to 2 + L1 zeroed; the header pointed at the new L1 table and a
 * one-cluster refcount table at cluster 1, forced; the table's first entry, forced; the refcount block counting the
 * header, table, block and L1 table, forced; then the header rewritten whole without the dirty bit
 * ({@code qcow2_mark_clean}), and the file cut.
 */
public final class Qcow2MakeEmpty {
    private Qcow2MakeEmpty() {
    }

    /** Empties the qcow2 image {@code path} as QEMU's {@code qcow2_make_empty} does. */
    public static void makeEmpty(Path path, OpenOptions options) throws IOException {
        if (HeaderUpdate.read(path, path.toString()).has(Feature.BITMAPS)) {
            discardAll(path, options); // the writable open keeps the bitmaps as QEMU's does
            return;
        }
        Header h = HeaderUpdate.openedHeader(path, path.toString());
        long cs = h.clusterSize();
        long l1Clusters = (Integer.toUnsignedLong(h.l1Size()) * 8 + cs - 1) / cs;
        if (h.version() >= 3 && h.nbSnapshots() == 0 && !h.has(Feature.BITMAPS)
                && 3 + l1Clusters <= RefcountBlock.entries(h.clusterBits(), h.refcountOrder())
                && h.cryptMethod() != Header.CRYPT_LUKS && !h.has(Feature.EXTERNAL_DATA_FILE)) {
            completely(path, h, l1Clusters);
        } else {
            discardAll(path, options);
        }
    }

    /** QEMU's fallback: {@code qcow2_cluster_discard} of the whole disk with {@code QCOW2_DISCARD_SNAPSHOT}, in full. */
    private static void discardAll(Path path, OpenOptions options) throws IOException {
        WritableImage opened = Qcow2Image.openWritable(path, options.withQemuLayout(true));
        try (WritableImage closing = opened) {
            if (!(opened instanceof Qcow2Image q) || q.readOnly()) {
                throw new QcowException(path.toString(), "cannot be emptied (not a writable qcow2 image)");
            }
            q.discardAllInFull();
        }
    }

    /** QEMU's {@code make_completely_empty}. */
    private static void completely(Path path, Header h, long l1Clusters) throws IOException {
        long cs = h.clusterSize();
        try (FileStorage f = FileStorage.open(path, Access.WRITE)) {
            // qcow2_mark_dirty: refcounts will be broken utterly
            f.writeFully(ByteBuffer.allocate(8).putLong(0, h.incompatibleFeatures() | Feature.DIRTY.mask()),
                    Header.INCOMPATIBLE_FEATURES_AT);
            f.force();
            writeZeros(f, h.l1TableOffset(), l1Clusters * cs);
            writeZeros(f, cs, (2 + l1Clusters) * cs);
            ByteBuffer tables = ByteBuffer.allocate(20).putLong(3 * cs).putLong(cs).putInt(1).flip();
            f.writeFully(tables, 40); // l1_table_offset, refcount_table_offset, refcount_table_clusters
            f.force();
            f.writeFully(ByteBuffer.allocate(8).putLong(0, 2 * cs), cs);
            f.force();
            ByteBuffer block = ByteBuffer.allocate((int) cs);
            for (int i = 0; i < 3 + l1Clusters; i++) {
                RefcountBlock.set(block, i, h.refcountOrder(), 1);
            }
            f.writeFully(block, 2 * cs);
            f.force();
            Header clean = h.withTables(3 * cs, h.l1Size(), cs, 1).withFeatures(h.version(),
                    h.incompatibleFeatures() & ~Feature.DIRTY.mask(), h.compatibleFeatures(), h.autoclearFeatures());
            byte[] cluster0 = clean.qemuCluster0();
            if (cluster0 == null) {
                throw new QcowException(path.toString(), "the header no longer fits in cluster 0");
            }
            HeaderUpdate.write(f, cluster0);
            f.truncate((3 + l1Clusters) * cs);
            f.force();
        }
    }

    /** Zeros written over {@code [pos, pos + len)}, the file grown to hold them (QEMU's write_zeroes on the file). */
    private static void writeZeros(FileStorage f, long pos, long len) throws IOException {
        ByteBuffer zeros = ByteBuffer.allocate((int) Math.min(len, 1 << 20));
        for (long p = pos; p < pos + len; ) {
            int n = (int) Math.min(pos + len - p, zeros.capacity());
            f.writeFully(zeros.clear().limit(n), p);
            p += n;
        }
    }
}
