package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.qcow4j.CorruptionException;
import org.qcow4j.FormatException;
import org.qcow4j.RefusedRequestException;
import org.qcow4j.format.Header;
import org.qcow4j.format.RefcountBlock;
import org.qcow4j.io.FileStorage;
import org.qcow4j.io.Zeros;

/**
 * The cluster allocator of an image opened for writing: the refcount table (whole, in memory), its refcount blocks
 * through a bounded {@link TableCache}, and the rules that keep them consistent on disk after a crash.
 *
 * <p>It places every cluster where QEMU 7.2's allocator (block/qcow2-refcount.c) places it, so that an image written
 * here is byte for byte the image QEMU writes: a first-fit search from QEMU's {@code free_cluster_index}, which
 * advances past every allocation and moves back down when a refcount drops to 0 ({@code alloc_clusters_noref},
 * {@code update_refcount}); a missing refcount block is taken at that index, after the run being allocated, and the
 * run is searched again ({@code alloc_refcount_block}'s {@code -EAGAIN}); a full refcount table is replaced by
 * self-describing blocks and a larger table at the start of the next block's range ({@code qcow2_refcount_area}).
 *
 * <p>Crash safety differs from QEMU's in one way and only in the order of writes, never in what ends up in the file:
 * refcounts only grow between flushes. A cluster given back ({@link #free}) counts as free at once for the search,
 * as in QEMU, but its refcount is lowered in the blocks only when the image's next flush has written the L2 and L1
 * tables that stopped using it ({@link #applyFrees}); and before such a cluster is handed out again, the allocator
 * asks for that flush ({@link #setReuseBarrier}). So a refcount block may be written at any moment without ever
 * counting a used cluster as free, and a freed cluster never holds new data while a table on disk still points at
 * it. Clusters freed by a discard are zeroed in the file as QEMU's discard passthrough punches them
 * ({@link Discard#passedThrough}).
 */
public final class RefcountTable {
    /** Why clusters are freed: QEMU's {@code qcow2_discard_type}, which decides whether the file gets a hole. */
    enum Discard {
        /** Copy-on-write of a cluster a write replaced ({@code QCOW2_DISCARD_NEVER}): kept as it is. */
        NEVER(false),
        /** Truncation and L1 shrinking ({@code QCOW2_DISCARD_ALWAYS}): punched. */
        ALWAYS(true),
        /**
         * A guest discard or a zero write that may unmap ({@code QCOW2_DISCARD_REQUEST}): punched, as qemu-io opens
         * images with {@code discard=unmap}.
         */
        REQUEST(true),
        /** Old L1 and refcount tables, copied L2 tables ({@code QCOW2_DISCARD_OTHER}, off by default): kept. */
        OTHER(false),
        /**
         * Clusters a snapshot operation frees: the deleted snapshot's L1, L2 and data clusters, old snapshot tables
         * ({@code QCOW2_DISCARD_SNAPSHOT}, on by default): punched (qemu-img snapshot's file shows zeros there).
         */
        SNAPSHOT(true);

        final boolean passedThrough;

        Discard(boolean passedThrough) {
            this.passedThrough = passedThrough;
        }
    }

    /** What the allocator calls before it hands out a cluster freed since the last flush: that flush. */
    @FunctionalInterface
    interface ReuseBarrier {
        void flush() throws IOException;
    }

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
    /**
     * Clusters given back since the last flush, one decrement each: whole runs {@code [start, end)} merged when
     * adjacent (so discarding a large range costs one entry), and further decrements of a cluster already in a run
     * (compressed clusters sharing a host cluster) counted apart.
     */
    private final TreeMap<Long, Long> pendingRuns = new TreeMap<>();
    private final Map<Long, Integer> pendingExtra = new HashMap<>();
    /** Host byte ranges {offset, length} to zero, as QEMU's queued discards ({@code update_refcount_discard}). */
    private final List<long[]> discards = new ArrayList<>();
    /**
     * The clusters holding metadata (header, L1 and refcount tables, L2 tables, refcount blocks), as QEMU's cached
     * overlap checks know them: never handed out, never written with guest data, whatever a damaged refcount says.
     * One entry per metadata cluster, so bounded by the L1 and refcount table limits.
     */
    private final Set<Long> metadata = new HashSet<>();
    /** QEMU's {@code free_cluster_index}: where the search for free clusters starts. */
    private long freeIndex;
    /** Clusters at and past this index have never been written since the file was opened: they read as zeros. */
    private long zeroFrom;
    /**
     * Where the next compressed stream may go, inside the cluster the last one ended in (QEMU's
     * {@code free_byte_offset}), or 0.
     */
    private long freeByteOffset;
    private ReuseBarrier barrier = () -> { };
    /** Table entries holding an offset no refcount block can have (not cluster aligned): index to offset. */
    private final Map<Integer, Long> unaligned = new HashMap<>();

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
            if ((off & (clusterSize - 1)) != 0) {
                // QEMU opens it and signals corruption when an allocation first needs the block: so does this
                unaligned.put(i, off);
                table[i] = 0;
                continue;
            }
            String why = off > file.length() - clusterSize ? "refcount block past the end of the file (" + file.length() + " bytes)"
                    : off < clusterSize ? "refcount block in the header cluster" : null;
            if (why != null) {
                throw new FormatException(filename, "refcount table entry " + i, FormatException.hex(table[i]), why);
            }
            table[i] = off;
            markMetadata(off, 1, "refcount block " + i);
        }
        markMetadata(0, 1, "header");
        markMetadata(tableOffset, tableClusters, "refcount table");
        if (h.crypto() != null && h.crypto().length() > 0) {
            // the LUKS header and key material: no guest data may go there
            markMetadata(h.crypto().offset(), (h.crypto().length() + clusterSize - 1) / clusterSize, "encryption header");
        }
        this.zeroFrom = (file.length() + clusterSize - 1) >>> clusterBits;
    }

    /** Sets what runs before a cluster freed since the last flush is handed out again (the image's flush). */
    void setReuseBarrier(ReuseBarrier barrier) {
        this.barrier = barrier;
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

    /** The refcount of cluster {@code index} as stored in its block (0 where no block counts it). */
    long refcount(long index) throws IOException {
        long ti = index >>> blockBits;
        checkAligned(ti);
        if (ti >= table.length || table[(int) ti] == 0) {
            return 0;
        }
        return RefcountBlock.get(blocks.get(table[(int) ti]), (int) (index & ((1L << blockBits) - 1)), order);
    }

    /** The refcount QEMU would see: the stored one less the decrements waiting for the next flush. */
    long liveRefcount(long index) throws IOException {
        long stored = refcount(index);
        return stored == 0 ? 0 : stored - pending(index);
    }

    /** The end of the last cluster handed out or present in the file. */
    long allocatedEnd() {
        return zeroFrom << clusterBits;
    }

    /** Whether cluster {@code index} has never been written since the file was opened (it reads as zeros). */
    boolean neverWritten(long index) {
        return index >= zeroFrom;
    }

    // ------------------------------------------------------------------------------------------ allocation

    /**
     * Allocates {@code n} contiguous clusters and returns the host offset of the first: QEMU's
     * {@code qcow2_alloc_clusters} (a first-fit search from the free index, then the refcounts, searching again
     * when a refcount block had to be created).
     */
    long allocate(long n) throws IOException {
        while (true) {
            long start = allocNoref(n);
            if (increment(start, n)) {
                return start << clusterBits;
            }
        }
    }

    /**
     * Allocates as many of the {@code n} clusters at {@code offset} as are free there, up to the first used one, and
     * returns how many: QEMU's {@code qcow2_alloc_clusters_at}, which keeps a write's clusters contiguous. The free
     * index does not move.
     */
    long allocateAt(long offset, long n) throws IOException {
        if (n == 0) {
            return 0;
        }
        long start = offset >>> clusterBits;
        while (true) {
            long i = 0;
            while (i < n && liveRefcount(start + i) == 0) {
                checkNotMetadata(start + i);
                i++;
            }
            if (i == 0) {
                return 0;
            }
            reuse(start, i);
            if (increment(start, i)) {
                return i;
            }
        }
    }

    /**
     * Allocates {@code size} bytes (1 to a cluster) for a compressed stream, as QEMU's {@code qcow2_alloc_bytes}:
     * right after the previous stream while its cluster's refcount allows, spilling into the next cluster only when
     * that is the one allocated next, else at the start of a new cluster. Every cluster the stream touches counts it
     * once. Returns the host byte offset. Unlike QEMU, the rest of a cluster freed since the last stream went there
     * is not used (QEMU goes on writing into it, even once it has been handed out again): see {@link #free}.
     */
    long allocateBytes(int size) throws IOException {
        if (size <= 0 || size > clusterSize) {
            throw new IllegalArgumentException("compressed stream of " + size + " bytes for " + clusterSize + "-byte clusters");
        }
        long offset = freeByteOffset;
        if (offset != 0) {
            long count = liveRefcount(offset >>> clusterBits);
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

    /**
     * QEMU's {@code alloc_clusters_noref}: the first run of {@code n} free clusters from the free index, which ends
     * past it. Queued discards are done first, as QEMU does before it allocates; a run holding clusters freed since
     * the last flush gets that flush first.
     */
    private long allocNoref(long n) throws IOException {
        processDiscards();
        search:
        while (true) {
            if (n > 0 && !hasPendingFrees()) { // (no clusters asked: QEMU returns the free index as it is)
                freeIndex = nextUncounted(freeIndex); // past a run of used clusters a block at a time
            }
            for (long i = 0; i < n; i++) {
                long c = freeIndex++;
                if (liveRefcount(c) != 0) {
                    continue search;
                }
                checkNotMetadata(c);
            }
            long start = freeIndex - n;
            reuse(start, n);
            return start;
        }
    }

    /**
     * The first cluster from {@code from} whose stored refcount is 0: with no decrement pending, the first one the
     * search would take. Reads each refcount block once (an image full of data is searched from its start at open).
     */
    private long nextUncounted(long from) throws IOException {
        long c = from;
        int per = 1 << blockBits;
        while (true) {
            long ti = c >>> blockBits;
            checkAligned(ti);
            if (ti >= table.length || table[(int) ti] == 0) {
                return c;
            }
            ByteBuffer block = blocks.get(table[(int) ti]);
            for (int at = (int) (c & (per - 1)); at < per; at++, c++) {
                if (RefcountBlock.get(block, at, order) == 0) {
                    return c;
                }
            }
        }
    }

    /** Flushes before clusters freed since the last flush are reused (see the class comment). */
    private void reuse(long start, long n) throws IOException {
        if (!hasPending(start, n)) {
            return;
        }
        barrier.flush();
        if (hasPending(start, n)) {
            throw new IllegalStateException("the flush before reusing clusters left decrements pending");
        }
    }

    /** QEMU's {@code qcow2_get_refcount} and {@code alloc_refcount_block} meeting a misplaced block: corruption. */
    private void checkAligned(long ti) throws CorruptionException {
        if (!unaligned.isEmpty() && ti < table.length && unaligned.containsKey((int) ti)) {
            long off = unaligned.get((int) ti);
            throw new CorruptionException(filename, "refcount table entry " + ti, FormatException.hex(off),
                    "refcount block not aligned to the cluster size", "Refblock offset " + FormatException.hex(off)
                    + " unaligned (reftable index: " + (ti == 0 ? "0" : FormatException.hex(ti)) + ")"); // C's %#x
        }
    }

    /**
     * A damaged refcount of 0 for metadata must not hand the cluster out: QEMU's overlap check would stop the write
     * and mark the image corrupt (for the header cluster, in its words).
     */
    private void checkNotMetadata(long index) throws FormatException {
        if (metadata.contains(index)) {
            throw new CorruptionException(filename, "refcount of cluster " + index, "0", "the cluster holds metadata",
                    index == 0 ? "Preventing invalid write on metadata (overlaps with qcow2_header)" : null);
        }
    }

    /**
     * QEMU's {@code update_refcount} adding one to {@code n} clusters from {@code start}. Returns false when a
     * refcount block had to be created first ({@code -EAGAIN}): the increments made so far are undone, the free index
     * goes back to {@code start}, and the caller searches again.
     */
    private boolean increment(long start, long n) throws IOException {
        long oldTi = -1;
        for (long i = 0; i < n; i++) {
            long c = start + i;
            long ti = c >>> blockBits;
            if (ti != oldTi && !ensureBlock(c)) {
                // "If the caller needs to restart the search for free clusters, try the same ones first"
                freeIndex = Math.min(freeIndex, start);
                for (long j = 0; j < i; j++) {
                    add(start + j, -1);
                }
                return false;
            }
            oldTi = ti;
            add(c, 1);
        }
        zeroFrom = Math.max(zeroFrom, start + n);
        if (blocks.dirtyCount() > blocks.capacity()) {
            writeBlocks(); // refcount blocks only ever hold increments until a flush applies the frees: safe to write
        }
        return true;
    }

    /**
     * QEMU's {@code alloc_refcount_block}: true if the block counting cluster {@code index} exists; otherwise creates
     * it (at the free index, counting itself when it falls in its own range) and returns false ({@code -EAGAIN}).
     */
    private boolean ensureBlock(long index) throws IOException {
        long ti = index >>> blockBits;
        checkAligned(ti);
        if (ti < table.length && table[(int) ti] != 0) {
            return true;
        }
        long at = allocNoref(1);
        ByteBuffer block = ByteBuffer.allocate((int) clusterSize);
        if (at >>> blockBits == ti) {
            RefcountBlock.set(block, (int) (at & ((1L << blockBits) - 1)), order, 1); // "the block describes itself"
        } else if (!increment(at, 1)) {
            return false; // "Described somewhere else": that block had to be created first
        }
        long offset = at << clusterBits;
        markMetadata(offset, 1, "new refcount block");
        blocks.putDirty(offset, block);
        zeroFrom = Math.max(zeroFrom, at + 1);
        if (ti < table.length) {
            table[(int) ti] = offset;
            dirtyEntries.set((int) ti);
            return false; // "The new refcount block may be where the caller intended to put its data"
        }
        // The table is full: new self-describing blocks and a larger table at the start of the next block's range.
        long blocksUsed = Math.max(index + 1, at + 1);
        blocksUsed = (blocksUsed + (1L << blockBits) - 1) >>> blockBits;
        refcountArea(blocksUsed << blockBits, (int) ti, offset);
        return false;
    }

    /**
     * QEMU's {@code qcow2_refcount_metadata_size}: the refcount blocks needed to count {@code clusters} clusters and
     * themselves and their table, with the table half as large again when {@code generous}.
     */
    private long refblocksFor(long clusters, boolean generous) {
        long perTableCluster = clusterSize / 8;
        long perBlock = 1L << blockBits;
        long tableClusters = 0;
        long blockCount = 0;
        long last;
        long n = 0;
        do {
            last = n;
            blockCount = (clusters + tableClusters + blockCount + perBlock - 1) / perBlock;
            tableClusters = (blockCount + perTableCluster - 1) / perTableCluster;
            n = clusters + blockCount + tableClusters;
            if (n == last && generous) {
                clusters += (tableClusters + 1) / 2;
                n = 0;
                generous = false;
            }
        } while (n != last);
        return blockCount;
    }

    /**
     * QEMU's {@code qcow2_refcount_area(bs, start, 0, false, newIndex, newBlock)}: from cluster {@code start} on,
     * the missing refcount blocks up to the end of the new structures, then the new table (1.5 times what is needed),
     * all counted as used by the blocks covering them; the blocks are written, then the table, then the header
     * switched, each forced before the next refers to it. The old table is freed at once: nothing on disk refers to
     * it any more.
     */
    private void refcountArea(long start, int newIndex, long newBlock) throws IOException {
        refcountArea(start, 0, false, newIndex, newBlock);
    }

    /**
     * QEMU's {@code qcow2_refcount_area(bs, start, additional, exact, newIndex, newBlock)} in general: as above, the
     * blocks also covering {@code additional} clusters past the new structures, the table exactly as large as needed
     * when {@code exact} ({@code newIndex} < 0: no block to hook in). Returns the cluster after the new structures,
     * where the {@code additional} clusters may go (a preallocating resize puts its data there).
     */
    long refcountArea(long start, long additional, boolean exact, int newIndex, long newBlock) throws IOException {
        long total = refblocksFor(start + additional, !exact);
        long perCluster = clusterSize / 8;
        long tableSize = exact ? total : total + (total + 1) / 2;
        tableSize = (tableSize + perCluster - 1) / perCluster * perCluster;
        if (total * 8 > Header.MAX_REFTABLE_BYTES || tableSize * 8 > Header.MAX_REFTABLE_BYTES) {
            throw new RefusedRequestException(filename, RefusedRequestException.Reason.TOO_LARGE,
                    "image too large: its refcount table would exceed " + Header.MAX_REFTABLE_BYTES / (1024 * 1024) + " MiB");
        }
        long newClusters = tableSize / perCluster;
        int maxIndex = table.length - 1;
        while (maxIndex > 0 && table[maxIndex] == 0) {
            maxIndex--;
        }
        long[] newTable = new long[(int) tableSize];
        System.arraycopy(table, 0, newTable, 0, (int) Math.min(tableSize, tableSize > maxIndex ? maxIndex + 1 : tableSize));
        if (newIndex >= 0) {
            newTable[newIndex] = newBlock;
        }
        long areaIndex = start >>> blockBits;
        long missing = 0;
        for (long i = areaIndex; i < total; i++) {
            if (newTable[(int) i] == 0) {
                missing++;
            }
        }
        long newTableAt = start + missing; // clusters
        long end = newTableAt + newClusters;
        long blockAt = start;
        for (long i = areaIndex; i < total; i++) {
            ByteBuffer block;
            if (newTable[(int) i] != 0) {
                block = blocks.getForUpdate(newTable[(int) i]);
            } else {
                block = ByteBuffer.allocate((int) clusterSize);
                long offset = blockAt << clusterBits;
                markMetadata(offset, 1, "new refcount block");
                blocks.putDirty(offset, block);
                newTable[(int) i] = offset;
                blockAt++;
            }
            long firstCovered = i << blockBits;
            if (firstCovered < end) {
                long j = Math.max(start, firstCovered) - firstCovered;
                long endIndex = Math.min(end - firstCovered, 1L << blockBits);
                for (; j < endIndex; j++) {
                    RefcountBlock.set(block, (int) j, order, 1);
                }
            }
        }
        zeroFrom = Math.max(zeroFrom, end);
        writeBlocks();
        file.force();
        // QEMU hooked every earlier new block into the old table at once (alloc_refcount_block): it holds them too.
        writeEntries();
        file.force();
        ByteBuffer out = ByteBuffer.allocate((int) (tableSize * 8));
        out.asLongBuffer().put(newTable);
        file.writeFully(out, newTableAt << clusterBits);
        file.force();
        ByteBuffer field = ByteBuffer.allocate(12).putLong(newTableAt << clusterBits).putInt((int) newClusters).flip();
        file.writeFully(field, Header.REFCOUNT_TABLE_AT);
        file.force();
        long oldOffset = tableOffset;
        int oldClusters = tableClusters;
        table = newTable;
        tableOffset = newTableAt << clusterBits;
        tableClusters = (int) newClusters;
        dirtyEntries.clear();
        unmarkMetadata(oldOffset, oldClusters);
        markMetadata(tableOffset, newClusters, "new refcount table");
        for (long c = oldOffset >>> clusterBits; c < (oldOffset >>> clusterBits) + oldClusters; c++) {
            add(c, -1);
        }
        return end;
    }

    /**
     * One more reference to every cluster {@code [offset, offset + length)} touches (QEMU's {@code update_refcount}
     * with addend 1 on clusters in use, as a snapshot takes them): their refcount blocks exist already. A refcount at
     * its maximum is QEMU's {@code -ERANGE}.
     */
    void addReference(long offset, long length) throws IOException {
        if (length <= 0) {
            return;
        }
        for (long c = offset >>> clusterBits; c <= (offset + length - 1) >>> clusterBits; c++) {
            add(c, 1);
        }
    }

    /** How many of the {@code n} clusters from {@code first}, from the first on, a refcount block counts. */
    int countedPrefix(long first, long n) throws FormatException {
        long done = 0;
        while (done < n) {
            long c = first + done;
            long ti = c >>> blockBits;
            checkAligned(ti);
            if (ti >= table.length || table[(int) ti] == 0) {
                break;
            }
            done += (1L << blockBits) - (c & ((1L << blockBits) - 1));
        }
        return (int) Math.min(done, n);
    }

    /**
     * QEMU's {@code alloc_refcount_block} for cluster {@code c}, which no refcount block counts, as
     * {@code update_refcount} calls it for an increment: the block is created (or the table grown, refused as
     * {@link RefusedRequestException.Reason#TOO_LARGE} past QEMU's limit) and the caller must restart, QEMU's
     * {@code -EAGAIN}.
     */
    void addMissingBlock(long c) throws IOException {
        if (ensureBlock(c)) {
            throw new IllegalStateException("cluster " + c + " is counted already");
        }
    }

    // ------------------------------------------------------------------------------------------ runs of clusters

    /*
     * A snapshot walk counts every cluster of the image: these do, for a run of distinct clusters, what addReference,
     * free and liveRefcount do one cluster at a time, taking each refcount block once instead of once per cluster.
     */

    /**
     * {@link #addReference} of each of the {@code n} clusters from {@code first} in turn, stopping before the first
     * whose stored refcount is at its maximum (the ones before it keep their new reference, as QEMU's
     * {@code update_refcount} leaves them); each cluster's {@link #liveRefcount} after it goes to {@code live}.
     * Returns how many clusters gained a reference.
     */
    int addReferences(long first, int n, long[] live) throws IOException {
        long max = RefcountBlock.max(order);
        boolean anyPending = hasPendingFrees();
        int done = 0;
        while (done < n) {
            long c = first + done;
            int at = (int) (c & ((1L << blockBits) - 1));
            int count = (int) Math.min(n - done, (1L << blockBits) - at);
            ByteBuffer block = blocks.getForUpdate(blockOf(c));
            for (int k = 0; k < count; k++) {
                long old = RefcountBlock.get(block, at + k, order);
                if (Long.compareUnsigned(old, max) >= 0) {
                    return done + k;
                }
                RefcountBlock.set(block, at + k, order, old + 1);
                live[done + k] = anyPending ? old + 1 - pending(c + k) : old + 1;
            }
            done += count;
        }
        return n;
    }

    /**
     * {@link #free} of each of the {@code n} clusters from {@code first} in turn, and each cluster's
     * {@link #liveRefcount} after it in {@code live}.
     */
    void freeRun(long first, int n, Discard type, long[] live) throws IOException {
        if (hasPending(first, n)) {
            for (int k = 0; k < n; k++) { // some already lost a reference since the last flush: one at a time
                free((first + k) << clusterBits, clusterSize, type);
                live[k] = liveRefcount(first + k);
            }
            return;
        }
        long runStart = -1;
        ByteBuffer block = null; // of the current cluster; null where no block counts it
        for (int k = 0; k <= n; k++) {
            long c = first + k;
            int at = (int) (c & ((1L << blockBits) - 1));
            if (k < n && (k == 0 || at == 0)) {
                long ti = c >>> blockBits;
                checkAligned(ti);
                block = ti < table.length && table[(int) ti] != 0 ? blocks.get(table[(int) ti]) : null;
            }
            long stored = k < n && block != null ? RefcountBlock.get(block, at, order) : 0;
            if (stored == 0) { // a damaged entry naming a free cluster: left alone, as free() leaves it
                if (k < n) {
                    live[k] = 0;
                }
                if (runStart >= 0) {
                    addPendingRun(runStart, c);
                    runStart = -1;
                }
                continue;
            }
            if (runStart < 0) {
                runStart = c;
            }
            live[k] = stored - 1;
            if (stored == 1) {
                freeIndex = Math.min(freeIndex, c);
                if (freeByteOffset >>> clusterBits == c) {
                    freeByteOffset = 0;
                }
                if (type.passedThrough) {
                    queueDiscard(c << clusterBits, clusterSize);
                }
            }
        }
    }

    /** {@link #liveRefcount} of each of the {@code n} clusters from {@code first}, into {@code live}. */
    void liveRefcounts(long first, int n, long[] live) throws IOException {
        boolean anyPending = hasPending(first, n);
        int done = 0;
        while (done < n) {
            long c = first + done;
            int at = (int) (c & ((1L << blockBits) - 1));
            int count = (int) Math.min(n - done, (1L << blockBits) - at);
            long ti = c >>> blockBits;
            checkAligned(ti);
            ByteBuffer block = ti < table.length && table[(int) ti] != 0 ? blocks.get(table[(int) ti]) : null;
            for (int k = 0; k < count; k++) {
                long stored = block == null ? 0 : RefcountBlock.get(block, at + k, order);
                live[done + k] = stored == 0 || !anyPending ? stored : stored - pending(c + k);
            }
            done += count;
        }
    }

    /** The refcount block counting cluster {@code c}, which must exist (as in {@link #add}). */
    private long blockOf(long c) throws FormatException {
        long ti = c >>> blockBits;
        checkAligned(ti);
        if (ti >= table.length || table[(int) ti] == 0) {
            throw new FormatException(filename, "refcount of cluster " + c, "none", "cluster is not counted by any refcount block");
        }
        return table[(int) ti];
    }

    /** {@link #addPending} of the clusters {@code [start, end)}, none of them pending yet. */
    private void addPendingRun(long start, long end) {
        Map.Entry<Long, Long> before = pendingRuns.floorEntry(start);
        if (before != null && before.getValue() == start) {
            start = before.getKey();
            pendingRuns.remove(start);
        }
        Long next = pendingRuns.get(end);
        if (next != null) {
            pendingRuns.remove(end);
            end = next;
        }
        pendingRuns.put(start, end);
    }

    // ------------------------------------------------------------------------------------------ freeing

    /**
     * Gives back {@code length} host bytes at {@code offset} (every cluster they touch loses one reference), as
     * QEMU's {@code qcow2_free_clusters}: a cluster left unreferenced lowers the free index and, for a discard
     * passed through, is queued to be zeroed in the file. The stored refcounts change at the next flush
     * ({@link #applyFrees}).
     */
    void free(long offset, long length, Discard type) throws IOException {
        if (length <= 0) {
            return; // QEMU's update_refcount: nothing to do
        }
        long first = offset >>> clusterBits;
        long last = (offset + length - 1) >>> clusterBits;
        for (long c = first; c <= last; c++) {
            if (liveRefcount(c) == 0) {
                continue; // a damaged entry naming a free cluster: QEMU reports and leaks it; never decrement twice
            }
            addPending(c);
            if (liveRefcount(c) == 0) {
                freeIndex = Math.min(freeIndex, c);
                if (freeByteOffset >>> clusterBits == c) {
                    freeByteOffset = 0; // the rest of a freed cluster is not a place for the next compressed stream
                }
                if (type.passedThrough) {
                    queueDiscard(c << clusterBits, clusterSize);
                }
            }
        }
    }

    private void addPending(long c) {
        Map.Entry<Long, Long> e = pendingRuns.floorEntry(c);
        if (e != null && c < e.getValue()) {
            pendingExtra.merge(c, 1, Integer::sum);
            return;
        }
        long start = c;
        long end = c + 1;
        if (e != null && e.getValue() == c) {
            start = e.getKey();
            pendingRuns.remove(start);
        }
        Long next = pendingRuns.get(end);
        if (next != null) {
            pendingRuns.remove(end);
            end = next;
        }
        pendingRuns.put(start, end);
    }

    private long pending(long c) {
        Map.Entry<Long, Long> e = pendingRuns.floorEntry(c);
        long n = e != null && c < e.getValue() ? 1 : 0;
        Integer extra = pendingExtra.get(c);
        return extra == null ? n : n + extra;
    }

    private boolean hasPending(long start, long n) {
        if (pendingRuns.isEmpty() && pendingExtra.isEmpty()) {
            return false;
        }
        Map.Entry<Long, Long> e = pendingRuns.floorEntry(start + n - 1);
        if (e != null && e.getValue() > start) {
            return true;
        }
        for (long c = start; c < start + n && !pendingExtra.isEmpty(); c++) {
            if (pendingExtra.containsKey(c)) {
                return true;
            }
        }
        return false;
    }

    boolean hasPendingFrees() {
        return !pendingRuns.isEmpty() || !pendingExtra.isEmpty();
    }

    /**
     * Lowers the stored refcounts of every cluster given back since the last flush (the tables no longer use them).
     * The free index is left alone: it moved when the clusters were freed, as QEMU's does.
     */
    void applyFrees() throws IOException {
        List<long[]> runs = new ArrayList<>();
        for (Map.Entry<Long, Long> e : pendingRuns.entrySet()) {
            runs.add(new long[] {e.getKey(), e.getValue()});
        }
        Map<Long, Integer> extra = new HashMap<>(pendingExtra);
        pendingRuns.clear();
        pendingExtra.clear();
        for (long[] r : runs) {
            decrementRun(r[0], r[1]);
        }
        for (Map.Entry<Long, Integer> e : extra.entrySet()) {
            for (int i = 0; i < e.getValue(); i++) {
                if (refcount(e.getKey()) > 0) {
                    add(e.getKey(), -1, false);
                }
            }
        }
    }

    /** One reference less for each cluster of {@code [start, end)} counted above 0, a refcount block at a time. */
    private void decrementRun(long start, long end) throws IOException {
        int per = 1 << blockBits;
        for (long c = start; c < end; ) {
            long ti = c >>> blockBits;
            int at = (int) (c & (per - 1));
            int count = (int) Math.min(end - c, per - at);
            checkAligned(ti);
            if (ti < table.length && table[(int) ti] != 0) { // else every refcount there is 0: nothing to lower
                ByteBuffer block = blocks.get(table[(int) ti]);
                ByteBuffer update = null;
                for (int k = 0; k < count; k++) {
                    long old = RefcountBlock.get(block, at + k, order);
                    if (old > 0) {
                        if (update == null) {
                            update = blocks.getForUpdate(table[(int) ti]);
                        }
                        RefcountBlock.set(update, at + k, order, old - 1);
                    }
                }
            }
            c += count;
        }
    }

    /** QEMU's {@code update_refcount_discard}: adjacent ranges merge into one. */
    private void queueDiscard(long offset, long length) {
        for (long[] d : discards) {
            if (d[0] + d[1] == offset) {
                d[1] += length;
                return;
            }
            if (offset + length == d[0]) {
                d[0] = offset;
                d[1] += length;
                return;
            }
        }
        discards.add(new long[] {offset, length});
    }

    /**
     * QEMU's {@code qcow2_process_discards}: the queued ranges become holes in its file; here they are zeroed (the
     * same bytes), as far as the file reaches.
     */
    void processDiscards() throws IOException {
        if (discards.isEmpty()) {
            return;
        }
        List<long[]> todo = new ArrayList<>(discards);
        discards.clear();
        for (long[] d : todo) {
            file.zero(d[0], d[1]);
        }
    }

    private void add(long index, long delta) throws IOException {
        add(index, delta, true);
    }

    /**
     * Changes a stored refcount; a refcount dropping to 0 lowers the free index when {@code lowersFreeIndex} (QEMU's
     * {@code update_refcount}), but not when a flush applies a decrement QEMU made long ago: its free index moved then,
     * and allocations since may have moved it on past the cluster.
     */
    private void add(long index, long delta, boolean lowersFreeIndex) throws IOException {
        long ti = index >>> blockBits;
        checkAligned(ti);
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
        if (lowersFreeIndex && delta < 0 && old == 1) {
            freeIndex = Math.min(freeIndex, index);
        }
    }

    // ------------------------------------------------------------------------------------------ shrinking

    /**
     * QEMU's {@code qcow2_shrink_reftable} (after a truncation, with every decrement applied): refcount blocks that
     * count nothing but themselves leave the table (written whole) and are freed. Returns whether any did.
     */
    boolean shrinkTable() throws IOException {
        long[] kept = table.clone();
        boolean any = false;
        for (int i = 0; i < table.length; i++) {
            long off = table[i];
            if (off == 0) {
                continue;
            }
            ByteBuffer block = blocks.get(off).duplicate().clear();
            boolean unused;
            if (i == off >>> (blockBits + clusterBits)) {
                int own = (int) ((off >>> clusterBits) & ((1L << blockBits) - 1));
                ByteBuffer copy = ByteBuffer.allocate((int) clusterSize).put(block).clear();
                RefcountBlock.set(copy, own, order, 0);
                unused = isZero(copy);
            } else {
                unused = isZero(block);
            }
            if (unused) {
                kept[i] = 0;
                any = true;
            }
        }
        if (!any) {
            return false;
        }
        ByteBuffer out = ByteBuffer.allocate(table.length * 8);
        out.asLongBuffer().put(kept);
        file.writeFully(out, tableOffset);
        file.force();
        for (int i = 0; i < table.length; i++) {
            if (table[i] != 0 && kept[i] == 0) {
                long off = table[i];
                // qcow2_discard_refcount_block: its own refcount, in the block covering it, goes to 0.
                long c = off >>> clusterBits;
                long coveringIndex = c >>> blockBits;
                long covering = table[(int) coveringIndex];
                ByteBuffer cb = blocks.getForUpdate(covering);
                RefcountBlock.set(cb, (int) (c & ((1L << blockBits) - 1)), order, 0);
                freeIndex = Math.min(freeIndex, c);
                blocks.remove(off);
                unmarkMetadata(off, 1);
                queueDiscard(off, clusterSize);
                table[i] = 0;
            }
        }
        dirtyEntries.clear();
        processDiscards();
        return true;
    }

    private static boolean isZero(ByteBuffer b) {
        return Zeros.isZero(b, 0, b.limit());
    }

    /** QEMU's {@code qcow2_get_last_cluster}: the last cluster of a file of {@code length} bytes still in use, or -1. */
    long lastUsedCluster(long length) throws IOException {
        for (long i = ((length + clusterSize - 1) >>> clusterBits) - 1; i >= 0; i--) {
            if (liveRefcount(i) > 0) {
                return i;
            }
        }
        return -1;
    }

    /** The file was cut at {@code clusters} clusters: what lies past it reads as zeros again. */
    void truncated(long clusters) {
        zeroFrom = Math.min(zeroFrom, clusters);
    }

    // ------------------------------------------------------------------------------------------ write-back

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
        file.writeEntries(table, dirtyEntries, tableOffset);
        dirtyEntries.clear();
    }

    /** Entries of the refcount table now (it may grow as clusters are allocated); for {@link RefcountOrderChange}. */
    int tableSize() {
        return table.length;
    }

    /** The offset of refcount block {@code i}, or 0. */
    long tableEntry(int i) {
        return table[i];
    }

    long tableOffset() {
        return tableOffset;
    }

    /** log2 of the clusters one refcount block counts. */
    int blockBits() {
        return blockBits;
    }

    /** For tests of the allocator's bookkeeping: the free index. */
    long freeIndex() {
        return freeIndex;
    }

    @Override
    public String toString() {
        return "RefcountTable[" + filename + ", table at " + tableOffset + " (" + tableClusters + " clusters), "
                + Arrays.stream(table).filter(t -> t != 0).count() + " blocks, free index " + freeIndex + "]";
    }
}
