package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import org.qcow4j.QcowException;
import org.qcow4j.format.Header;
import org.qcow4j.format.RefcountBlock;

/**
 * The refcount structure rebuild of {@code qemu-img check -r all} (QEMU's {@code rebuild_refcount_structure} and
 * the rebuild branch of {@code qcow2_check_refcounts}): new refcount blocks and table holding the computed
 * refcounts, written to clusters without a computed refcount, forced to disk before the header is switched to them;
 * then the references are counted again and the old structure's clusters, leaks now, repaired.
 */
final class RefcountRebuild {
    private final CheckContext c;
    private final RefcountScan scan;
    /**
     * During a rebuild, the clusters {@code [knownUsedFrom, knownUsedTo)} all have a computed refcount (the
     * rebuild only ever allocates), so a search for a free cluster starting among them may start at their end.
     */
    private long knownUsedFrom;
    private long knownUsedTo;

    RefcountRebuild(CheckContext c, RefcountScan scan) {
        this.c = c;
        this.scan = scan;
    }

    /**
     * QEMU's rebuild branch of {@code qcow2_check_refcounts}: a new structure is written, the references are counted
     * again against it, and the old structure's clusters (leaks now) are repaired. What the rebuild fixed is the
     * difference between the corruptions and leaks found before and after it; only leaks it made and could not
     * repair count as leaks.
     */
    void rebuildAndRecount(CheckSnapshotTable snapshots) throws IOException {
        c.report.accept("Rebuilding refcount structure");
        CheckContext.Counts old = c.counts();
        rebuildRefcountStructure();

        c.corruptions = 0;
        c.leaks = 0;
        // QEMU adds the allocation figures up again in the second count; counting them once keeps them meaningful
        // (qemu-img reports its double check's anyway).
        c.allocatedClusters = 0;
        c.fragmentedClusters = 0;
        c.compressedClusters = 0;
        c.rebuild = false;
        c.computed.clear();
        scan.calculateRefcounts(snapshots, false);

        CheckContext.Counts recounted = c.counts();
        c.restore(new CheckContext.Counts(0, 0, 0, 0, 0, c.unrepairable));
        scan.compareRefcounts(true, false);
        if (c.rebuild) {
            c.report.accept("ERROR rebuilt refcount structure is still broken");
        }
        long freshLeaks = c.leaks;
        c.restore(recounted);
        if (c.corruptions < old.corruptions()) {
            c.corruptionsFixed += old.corruptions() - c.corruptions;
        }
        if (c.leaks < old.leaks()) {
            c.leaksFixed += old.leaks() - c.leaks;
        }
        c.leaks += freshLeaks;
    }

    /**
     * QEMU's {@code rebuild_refcount_structure}: writes a new refcount structure holding the computed refcounts and
     * switches the header to it. Each range of clusters with a computed refcount gets a refcount block, allocated
     * among the computed refcounts (so the blocks count themselves) and written as a slice of them; then room for
     * the table is allocated the same way and the blocks covering it written again, until the table stops growing.
     *
     * <p>Crash safety: the clusters taken have no computed refcount, so nothing the check counted is overwritten
     * (guest data, L1 and L2 tables, snapshots, the old refcount table and the blocks it properly names); only a
     * block the old table cannot name (reserved bits, unaligned) may be reused. The blocks and table are forced to
     * disk before the header names them, in one write of its two fields, itself forced: until then the image is as
     * it was, the refcount structure as broken as before.
     */
    private void rebuildRefcountStructure() throws IOException {
        knownUsedFrom = 0;
        knownUsedTo = 0;
        long[] table = writeRefcountBlocks(0, c.nbClusters, new long[0]);
        long tableOffset;
        int tableClusters;
        int entries;
        do {
            // Each table allocated is left behind when the table grows; the leak repair afterwards frees it.
            entries = table.length;
            tableClusters = (int) c.sizeToClusters(entries * 8L);
            tableOffset = allocate(tableClusters, 0);
            long first = tableOffset >>> c.clusterBits;
            table = writeRefcountBlocks(first, first + tableClusters, table);
        } while (table.length != entries);

        ByteBuffer bytes = ByteBuffer.allocate(entries * 8).order(ByteOrder.BIG_ENDIAN);
        bytes.asLongBuffer().put(table);
        c.write(bytes, tableOffset);
        c.force();
        c.write(ByteBuffer.allocate(12).order(ByteOrder.BIG_ENDIAN).putLong(0, tableOffset).putInt(8, tableClusters),
                Header.REFCOUNT_TABLE_AT);
        c.force();

        c.refcountTableOffset = tableOffset;
        c.reopenStorage(entries);
    }

    /**
     * QEMU's {@code rebuild_refcounts_write_refblocks}: writes the refcount block of every block range with a
     * computed refcount from cluster {@code first} to {@code end}, allocating it first where {@code table} names
     * none; returns the table, a longer copy if it had to grow (by whole clusters, as QEMU grows it).
     */
    private long[] writeRefcountBlocks(long first, long end, long[] table) throws IOException {
        int order = c.header.refcountOrder();
        int blockBits = c.clusterBits + 3 - order;
        long perBlock = 1L << blockBits;
        ByteBuffer block = ByteBuffer.allocate((int) c.clusterSize).order(ByteOrder.BIG_ENDIAN);
        long firstFree = 0;
        for (long cluster = first; cluster < end; cluster++) {
            if (c.computed.getOrZero(cluster) == 0) {
                continue;
            }
            int index = (int) (cluster >>> blockBits); // below 2^25: at most 2^31 clusters, at least 64 per block
            long start = (long) index << blockBits;
            long blockOffset;
            if (index < table.length && table[index] != 0) {
                blockOffset = table[index]; // allocated in an earlier round; its range changed since
            } else {
                // Never in a block range already written: its block would miss the refcount.
                firstFree = Math.max(firstFree, start);
                blockOffset = allocate(1, firstFree);
                firstFree = blockOffset >>> c.clusterBits;
                if (firstFree >= end) {
                    end = firstFree + 1; // the block counting this one must be written too
                }
                if (index >= table.length) {
                    long entries = (((index + 1) * 8L + c.clusterSize - 1) & -c.clusterSize) / 8;
                    if (entries * 8 > Header.MAX_REFTABLE_BYTES) {
                        throw new QcowException(c.filename, "cannot rebuild the refcount structure: its table would need "
                                + entries * 8 + " bytes, more than QEMU's limit of " + Header.MAX_REFTABLE_BYTES
                                + " (the header still names the old one)");
                    }
                    table = Arrays.copyOf(table, (int) entries);
                }
                table[index] = blockOffset;
            }
            for (int j = 0; j < perBlock; j++) {
                RefcountBlock.set(block, j, order, c.computed.getOrZero(start + j));
            }
            c.write(block.clear(), blockOffset);
            cluster = start + perBlock - 1;
        }
        return table;
    }

    /**
     * QEMU's {@code alloc_clusters_imrt}: the first {@code count} contiguous clusters from {@code from} on without a
     * computed refcount (past the end of the file if need be) get refcount 1; returns the offset of the first.
     */
    private long allocate(int count, long from) throws QcowException {
        long cluster = count == 1 && from >= knownUsedFrom && from < knownUsedTo ? knownUsedTo : from;
        int contiguous = 0;
        for (; cluster < c.nbClusters && contiguous < count; cluster++) {
            contiguous = c.computed.get(cluster) == 0 ? contiguous + 1 : 0;
        }
        if (contiguous < count) {
            c.nbClusters = cluster + count - contiguous;
            c.computed.ensureCapacity(c.nbClusters + 1, c.filename);
        }
        cluster -= contiguous;
        for (int i = 0; i < count; i++) {
            c.computed.set(cluster + i, 1);
        }
        if (count == 1) {
            // Everything from where the search began up to the cluster taken is in use now.
            if (from < knownUsedFrom || from > knownUsedTo) {
                knownUsedFrom = from;
            }
            knownUsedTo = cluster + 1;
        }
        return cluster << c.clusterBits;
    }
}
