package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.qcow4j.FormatException;
import org.qcow4j.QcowException;
import org.qcow4j.format.Header;
import org.qcow4j.format.RefcountBlock;
import org.qcow4j.io.FileStorage;

/**
 * The cluster allocator of an image opened for writing: the refcount table (whole, in memory), its refcount blocks
 * through a bounded {@link TableCache}, and the rules that keep them consistent on disk after a crash.
 *
 * <p>Refcounts only grow between flushes: a cluster given back ({@link #freeLater}) keeps its refcount until the
 * image's next flush has written the L2 and L1 tables that stopped using it ({@link #applyFrees}), so a refcount
 * block may be written at any moment without ever counting a used cluster as free. A new refcount block describes
 * itself (it is placed inside the range it counts, as QEMU does when it can), and the refcount table grows by moving
 * to a larger copy: blocks, then the copy, then the header, each forced before the next points at it.
 */
public final class RefcountTable {
    private final String filename;
    private final FileStorage file;
    private final int clusterBits;
    private final long clusterSize;
    private final int order;
    /** log2 of the clusters one refcount block counts. */
    private final int blockBits;
    private final TableCache<ByteBuffer> blocks;
    private long[] table;
    private long tableOffset;
    private int tableClusters;
    private final BitSet dirtyEntries = new BitSet();
    /** Host byte ranges (offset, length) given back, applied at the next flush after the tables stop using them. */
    private final List<long[]> pendingFrees = new ArrayList<>();
    /**
     * The clusters holding metadata (header, L1 and refcount tables, L2 tables, refcount blocks), as QEMU's cached
     * overlap checks know them: never handed out, never written with guest data, whatever a damaged refcount says.
     * One entry per metadata cluster, so bounded by the L1 and refcount table limits.
     */
    private final Set<Long> metadata = new HashSet<>();
    /** No cluster below this index is free. */
    private long freeHint;
    /** Clusters at and past this index have never been written since the file was opened: they read as zeros. */
    private long zeroFrom;
    /**
     * Where the next compressed stream may go, inside the cluster the last one ended in (QEMU's
     * {@code free_byte_offset}), or 0.
     */
    private long freeByteOffset;
    private boolean growing;

    RefcountTable(String filename, FileStorage file, Header h, long cacheBytes) throws IOException {
        this.filename = filename;
        this.file = file;
        this.clusterBits = h.clusterBits();
        this.clusterSize = h.clusterSize();
        this.order = h.refcountOrder();
        this.blockBits = clusterBits + 3 - order;
        this.tableOffset = h.refcountTableOffset();
        this.tableClusters = h.refcountTableClusters();
        this.blocks = new TableCache<>((int) Math.min(Integer.MAX_VALUE, cacheBytes / clusterSize), this::loadBlock);
        int entries = (int) (tableClusters * clusterSize / 8); // bounded by Header's 8 MiB limit
        this.table = new long[entries];
        file.read(tableOffset, entries * 8).order(ByteOrder.BIG_ENDIAN).asLongBuffer().get(table);
        for (int i = 0; i < entries; i++) {
            long off = table[i] & RefcountBlock.TABLE_OFFSET_MASK;
            if (off == 0) {
                continue;
            }
            String why = (off & (clusterSize - 1)) != 0 ? "refcount block not aligned to the cluster size"
                    : off > file.length() - clusterSize ? "refcount block past the end of the file (" + file.length() + " bytes)"
                    : off < clusterSize ? "refcount block in the header cluster" : null;
            if (why != null) {
                throw new FormatException(filename, "refcount table entry " + i, FormatException.hex(table[i]), why);
            }
            table[i] = off;
            markMetadata(off, 1, "refcount block " + i);
        }
        markMetadata(0, 1, "header");
        markMetadata(tableOffset, tableClusters, "refcount table");
        this.zeroFrom = (file.length() + clusterSize - 1) >>> clusterBits;
    }

    /**
     * Records that {@code clusters} clusters at {@code offset} hold metadata; {@code what} names it for the error
     * when a damaged image has two structures in one cluster.
     */
    void markMetadata(long offset, long clusters, String what) throws FormatException {
        for (long c = offset >>> clusterBits; c < (offset >>> clusterBits) + clusters; c++) {
            if (!metadata.add(c)) {
                throw new FormatException(filename, what, FormatException.hex(offset),
                        "overlaps other metadata at cluster " + c);
            }
        }
    }

    void unmarkMetadata(long offset, long clusters) {
        for (long c = offset >>> clusterBits; c < (offset >>> clusterBits) + clusters; c++) {
            metadata.remove(c);
        }
    }

    /**
     * Refuses a guest data write to {@code [offset, offset + length)} that would land on metadata or past what the
     * image has allocated: only a damaged L2 entry can ask for either.
     */
    void checkDataWrite(long offset, long length) throws FormatException {
        long end = offset + length;
        if (end > allocatedEnd()) {
            throw new FormatException(filename, "host offset of a data write", FormatException.hex(offset),
                    "past the end of the image (" + allocatedEnd() + " bytes)");
        }
        for (long c = offset >>> clusterBits; c <= (end - 1) >>> clusterBits; c++) {
            if (metadata.contains(c)) {
                throw new FormatException(filename, "host offset of a data write", FormatException.hex(offset),
                        "would overwrite metadata in cluster " + c);
            }
        }
    }

    private ByteBuffer loadBlock(long offset) throws IOException {
        return file.read(offset, (int) clusterSize);
    }

    /** The refcount of cluster {@code index} (0 where no block counts it). */
    long refcount(long index) throws IOException {
        long ti = index >>> blockBits;
        if (ti >= table.length || table[(int) ti] == 0) {
            return 0;
        }
        return RefcountBlock.get(blocks.get(table[(int) ti]), (int) (index & ((1L << blockBits) - 1)), order);
    }

    /** The end of the last cluster handed out or present in the file. */
    long allocatedEnd() {
        return zeroFrom << clusterBits;
    }

    /**
     * Allocates {@code n} contiguous free clusters (refcount 0 to 1, in memory) and returns the host offset of the
     * first. Missing refcount blocks are created inside the range they count.
     */
    long allocate(long n) throws IOException {
        long start = freeHint;
        while (!isFree(start)) {
            start++;
        }
        freeHint = start; // nothing below the first free cluster is free: later searches start here
        search:
        while (true) {
            for (long i = 0; i < n; i++) {
                if (!isFree(start + i)) {
                    start += i + 1;
                    continue search;
                }
            }
            for (long ti = start >>> blockBits; ti <= (start + n - 1) >>> blockBits; ti++) {
                if (ti >= table.length || table[(int) ti] == 0) {
                    if (n < 1L << blockBits) {
                        createBlock(ti, Math.max(start, ti << blockBits));
                        continue search; // the block took a cluster of the run
                    }
                    // A run as long as a block's range cannot hold its blocks (each would split it again, for ever):
                    // they go after it, the first one of a new range counting itself.
                    long at = start + n;
                    while (!isFree(at)) {
                        at++;
                    }
                    long atTi = at >>> blockBits;
                    int tableLength = table.length;
                    createBlock(atTi < table.length && table[(int) atTi] != 0 ? ti : atTi, at);
                    if (table.length != tableLength) {
                        continue search; // the grown table's clusters may lie in the run
                    }
                    // The run is untouched (the block went after it): no need to scan it again, which made a
                    // run needing many blocks cost their number times its length. Block ti may still be missing.
                    ti--;
                }
            }
            break;
        }
        for (long i = 0; i < n; i++) {
            add(start + i, 1);
        }
        if (start == freeHint) {
            freeHint = start + n;
        }
        zeroFrom = Math.max(zeroFrom, start + n);
        if (blocks.dirtyCount() > blocks.capacity()) {
            writeBlocks(); // refcount blocks only ever hold increments until a flush applies the frees: safe to write
        }
        return start << clusterBits;
    }

    /**
     * Allocates {@code size} bytes (1 to a cluster) for a compressed stream, as QEMU's {@code qcow2_alloc_bytes}:
     * right after the previous stream while its cluster's refcount allows, spilling into the next cluster only when
     * that is the one allocated next, else at the start of a new cluster. Every cluster the stream touches counts it
     * once. Returns the host byte offset.
     */
    long allocateBytes(int size) throws IOException {
        if (size <= 0 || size > clusterSize) {
            throw new IllegalArgumentException("compressed stream of " + size + " bytes for " + clusterSize + "-byte clusters");
        }
        long offset = freeByteOffset;
        if (offset != 0) {
            long count = refcount(offset >>> clusterBits);
            if (count == 0 || count == RefcountBlock.max(order)) {
                offset = 0; // freed since (never to be reused as a half), or counted as often as it can be
            }
        }
        long counted = -1; // a new cluster: allocate() already counts the stream in it
        if (offset == 0 || clusterSize - (offset & (clusterSize - 1)) < size) {
            long fresh = allocate(1);
            counted = fresh >>> clusterBits;
            if (offset == 0 || ((offset + clusterSize - 1) & ~(clusterSize - 1)) != fresh) {
                offset = fresh;
            }
        }
        for (long c = offset >>> clusterBits; c <= (offset + size - 1) >>> clusterBits; c++) {
            if (c != counted) {
                add(c, 1);
            }
        }
        freeByteOffset = ((offset + size) & (clusterSize - 1)) == 0 ? 0 : offset + size;
        return offset;
    }

    /** Whether cluster {@code index} may be handed out; refuses a damaged refcount of 0 for metadata. */
    private boolean isFree(long index) throws IOException {
        if (refcount(index) != 0) {
            return false;
        }
        if (metadata.contains(index)) {
            throw new FormatException(filename, "refcount of cluster " + index, "0", "the cluster holds metadata");
        }
        return true;
    }

    /**
     * Gives back {@code length} host bytes at {@code offset} once the tables that used them are on disk. Adjacent
     * ranges merge, so discarding a large range costs one entry, not one per cluster.
     */
    void freeLater(long offset, long length) {
        long[] last = pendingFrees.isEmpty() ? null : pendingFrees.get(pendingFrees.size() - 1);
        if (last != null && last[0] + last[1] == offset && ((offset & (clusterSize - 1)) == 0)) {
            last[1] += length;
        } else {
            pendingFrees.add(new long[] {offset, length});
        }
    }

    boolean hasPendingFrees() {
        return !pendingFrees.isEmpty();
    }

    /**
     * Lowers the refcounts of every cluster given back since the last flush (the tables no longer use them). A
     * cluster a damaged entry named but no refcount counts is skipped (QEMU reports and leaks it), so a failure
     * can never apply a decrement twice.
     */
    void applyFrees() throws IOException {
        List<long[]> frees = new ArrayList<>(pendingFrees);
        pendingFrees.clear();
        for (long[] f : frees) {
            for (long c = f[0] >>> clusterBits; c <= (f[0] + f[1] - 1) >>> clusterBits; c++) {
                if (refcount(c) > 0) {
                    add(c, -1);
                }
            }
        }
    }

    private void add(long index, long delta) throws IOException {
        long ti = index >>> blockBits;
        if (ti >= table.length || table[(int) ti] == 0) {
            throw new FormatException(filename, "refcount of cluster " + index, "none", "cluster is not counted by any refcount block");
        }
        ByteBuffer block = blocks.getForUpdate(table[(int) ti]);
        int i = (int) (index & ((1L << blockBits) - 1));
        long old = RefcountBlock.get(block, i, order);
        long max = RefcountBlock.max(order);
        if (delta < 0 ? old == 0 : old == max) {
            throw new FormatException(filename, "refcount of cluster " + index, Long.toUnsignedString(old),
                    delta < 0 ? "freeing a cluster that is already free" : "refcount overflow");
        }
        RefcountBlock.set(block, i, order, old + delta);
        if (delta < 0 && old == 1) {
            freeHint = Math.min(freeHint, index);
            if (freeByteOffset >>> clusterBits == index) {
                freeByteOffset = 0; // the rest of a freed cluster is not a place for the next compressed stream
            }
        }
    }

    /**
     * Creates the missing refcount block {@code ti} at the free cluster {@code at}: inside its own range, counting
     * itself, or in a range another block already counts. When the table is too short for it, grows the table only
     * (whose new clusters may have taken {@code at}: the caller searches again either way).
     */
    private void createBlock(long ti, long at) throws IOException {
        if (ti >= table.length) {
            grow(ti + 1);
            return;
        }
        ByteBuffer block = ByteBuffer.allocate((int) clusterSize);
        boolean countsItself = at >>> blockBits == ti;
        if (countsItself) {
            RefcountBlock.set(block, (int) (at & ((1L << blockBits) - 1)), order, 1);
        }
        long offset = at << clusterBits;
        markMetadata(offset, 1, "new refcount block");
        blocks.putDirty(offset, block);
        table[(int) ti] = offset;
        dirtyEntries.set((int) ti);
        if (!countsItself) {
            add(at, 1);
        }
        zeroFrom = Math.max(zeroFrom, at + 1);
    }

    /**
     * Moves the refcount table to a larger copy of at least {@code minEntries} entries (1.5 times the old size
     * at least, as QEMU grows it): the copy's clusters are allocated with the new entries already in memory, then
     * the blocks, the copy and the header are written, each forced before the next refers to it.
     */
    private void grow(long minEntries) throws IOException {
        if (growing) {
            throw new QcowException(filename, "refcount table growth did not converge");
        }
        long perCluster = clusterSize / 8;
        long entries = Math.max(minEntries, table.length + table.length / 2 + 1);
        entries = (entries + perCluster - 1) / perCluster * perCluster;
        if (entries * 8 > Header.MAX_REFTABLE_BYTES) {
            throw new QcowException(filename, "image too large: its refcount table would exceed "
                    + Header.MAX_REFTABLE_BYTES / (1024 * 1024) + " MiB");
        }
        long oldOffset = tableOffset;
        int oldClusters = tableClusters;
        growing = true;
        try {
            table = Arrays.copyOf(table, (int) entries);
            long clusters = entries / perCluster;
            long offset = allocate(clusters);
            writeBlocks();
            file.force();
            ByteBuffer out = ByteBuffer.allocate((int) (entries * 8));
            out.asLongBuffer().put(table);
            file.writeFully(out, offset);
            file.force();
            ByteBuffer field = ByteBuffer.allocate(12).putLong(offset).putInt((int) clusters).flip();
            file.writeFully(field, Header.REFCOUNT_TABLE_AT);
            file.force();
            tableOffset = offset;
            tableClusters = (int) clusters;
            dirtyEntries.clear();
            unmarkMetadata(oldOffset, oldClusters);
            markMetadata(offset, clusters, "new refcount table");
        } finally {
            growing = false;
        }
        // Nothing on disk refers to the old table any more: its clusters are free at once.
        for (long c = oldOffset >>> clusterBits; c < (oldOffset >>> clusterBits) + oldClusters; c++) {
            add(c, -1);
        }
    }

    /** Writes the dirty refcount blocks (not forced). */
    void writeBlocks() throws IOException {
        for (Map.Entry<Long, ByteBuffer> e : blocks.dirtyTables()) {
            file.writeFully(e.getValue().duplicate().clear(), e.getKey());
            blocks.markClean(e.getKey());
        }
    }

    boolean hasDirtyEntries() {
        return !dirtyEntries.isEmpty();
    }

    boolean hasDirtyBlocks() {
        return blocks.dirtyCount() > 0;
    }

    /** Writes the refcount table entries of new blocks (not forced); the blocks must be on disk already. */
    void writeEntries() throws IOException {
        for (int i = dirtyEntries.nextSetBit(0); i >= 0; i = dirtyEntries.nextSetBit(i + 1)) {
            file.writeFully(ByteBuffer.allocate(8).putLong(0, table[i]), tableOffset + i * 8L);
        }
        dirtyEntries.clear();
    }
}
