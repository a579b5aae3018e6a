package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.BitSet;
import java.util.Map;
import org.qcow4j.format.ClusterGeometry;
import org.qcow4j.format.L1Entry;
import org.qcow4j.io.FileStorage;

/**
 * The guest-to-host mapping of an image: the active L1 table (whole, in memory) and its L2 tables through a bounded
 * {@link TableCache}. For an image opened for writing it also changes entries: an L2 table is allocated when its
 * range has none and copied when it is shared (no COPIED flag); changed tables stay in memory, dirty, until the
 * image writes them back with {@link #writeTables()} and then {@link #writeL1()}, in that order.
 */
public final class ClusterMap {
    private final FileStorage storage;
    private final ClusterGeometry geo;
    private final TableCache<long[]> l2Cache;
    private final int tableLongs;
    private long[] l1;
    private long l1Offset;
    private final BitSet dirtyL1 = new BitSet();

    ClusterMap(FileStorage storage, ClusterGeometry geo, long[] l1, long l1Offset, long cacheBytes) {
        this.storage = storage;
        this.geo = geo;
        this.l1 = l1;
        this.l1Offset = l1Offset;
        this.tableLongs = (int) (geo.clusterSize() / 8);
        this.l2Cache = new TableCache<>((int) Math.min(Integer.MAX_VALUE, cacheBytes / geo.clusterSize()),
                new L2Loader(this));
    }

    /** Loads L2 tables for the cache (a class, not this::load: see Qcow2Image.open). */
    private record L2Loader(ClusterMap map) implements TableCache.Loader<long[]> {
        @Override
        public long[] load(long offset) throws IOException {
            return map.load(offset);
        }
    }

    private long[] load(long offset) throws IOException {
        long[] table = new long[tableLongs];
        storage.read(offset, (int) geo.clusterSize()).order(ByteOrder.BIG_ENDIAN).asLongBuffer().get(table);
        return table;
    }

    int l1Size() {
        return l1.length;
    }

    long l1Offset() {
        return l1Offset;
    }

    /** The offset of the L2 table for L1 index {@code i}, or 0 (also past the end of the L1 table). */
    long l2Offset(long i) {
        return i < l1.length ? L1Entry.l2Offset(l1[(int) i]) : 0;
    }

    /** The L2 table at {@code offset}, for reading: entry {@code i} at {@code [i]}, or {@code [2i]} and its bitmap at {@code [2i+1]}. */
    long[] table(long offset) throws IOException {
        return l2Cache.get(offset);
    }

    /** Index in a table array of the entry mapping {@code guest}. */
    int slot(long guest) {
        int i = geo.l2Index(guest);
        return geo.extendedL2() ? 2 * i : i;
    }

    /**
     * QEMU's {@code get_cluster_table}: makes sure the range of {@code guest} has an L2 table of its own (COPIED),
     * allocating one (QEMU's {@code l2_allocate}: before anything else the request allocates) or copying a shared one,
     * whose old cluster is then given back. Returns the table's host offset. QEMU does this for every write, zero
     * write and discard that reaches the range, whether or not an entry then changes.
     */
    long ensureTable(long guest, RefcountTable refcounts) throws IOException {
        int i = (int) geo.l1Index(guest);
        long old = l1[i];
        long offset = L1Entry.l2Offset(old);
        if (offset != 0 && (old & L1Entry.COPIED) != 0) {
            return offset;
        }
        long fresh = refcounts.allocate(1);
        long[] copy = offset == 0 ? new long[tableLongs] : l2Cache.get(offset).clone();
        refcounts.markMetadata(fresh, 1, "new L2 table");
        l2Cache.putDirty(fresh, copy);
        l1[i] = fresh | L1Entry.COPIED;
        dirtyL1.set(i);
        if (offset != 0) {
            l2Cache.remove(offset);
            refcounts.unmarkMetadata(offset, 1);
            refcounts.free(offset, geo.clusterSize(), RefcountTable.Discard.OTHER);
        }
        return fresh;
    }

    /**
     * Sets the L2 entry (and with extended L2 its bitmap) of {@code guest}, whose range has a table of its own
     * ({@link #ensureTable}).
     */
    void set(long guest, long entry, long bitmap) throws IOException {
        long offset = L1Entry.l2Offset(l1[(int) geo.l1Index(guest)]);
        long[] table = l2Cache.getForUpdate(offset);
        int s = slot(guest);
        table[s] = entry;
        if (geo.extendedL2()) {
            table[s + 1] = bitmap;
        }
    }

    /**
     * Forgets L2 table {@code i} (the caller has given back its entries): its L1 entry becomes 0 and the table's
     * cluster is freed as QEMU's {@code qcow2_shrink_l1_table} frees it.
     */
    void dropTable(int i, RefcountTable refcounts) throws IOException {
        long offset = L1Entry.l2Offset(l1[i]);
        if (offset != 0) {
            l2Cache.remove(offset);
            refcounts.unmarkMetadata(offset, 1);
            refcounts.free(offset, geo.clusterSize(), RefcountTable.Discard.ALWAYS);
        }
        l1[i] = 0;
        dirtyL1.set(i); // QEMU writes zeros over the dropped entries whatever they held
    }

    /** Active L1 entry {@code i}. */
    long l1Entry(int i) {
        return l1[i];
    }

    /** A copy of the active L1 table's entries. */
    long[] l1Copy() {
        return l1.clone();
    }

    /** Changes active L1 entry {@code i} in memory; it is written by {@link #writeL1()}. */
    void setL1Entry(int i, long entry) {
        l1[i] = entry;
        dirtyL1.set(i);
    }

    /**
     * Takes {@code entries} (as long as the table) as the active L1 table's content, which the caller has written at
     * its offset already (QEMU's snapshot goto): nothing is left to write.
     */
    void loadL1(long[] entries) {
        if (entries.length != l1.length) {
            throw new IllegalArgumentException(entries.length + " L1 entries for a table of " + l1.length);
        }
        l1 = entries.clone();
        dirtyL1.clear();
    }

    /** The L2 table at {@code offset} (of any L1 table), marked dirty: the caller changes it. */
    long[] tableForUpdate(long offset) throws IOException {
        return l2Cache.getForUpdate(offset);
    }

    /** Forgets the L2 table at {@code offset} (its cluster was freed), with any change to it: QEMU's cache discard. */
    void forget(long offset) {
        l2Cache.remove(offset);
    }

    /** Whether more tables are dirty than the cache holds: the image should write them back. */
    boolean overfull() {
        return l2Cache.dirtyCount() > l2Cache.capacity();
    }

    boolean dirty() {
        return l2Cache.dirtyCount() > 0 || !dirtyL1.isEmpty();
    }

    boolean hasDirtyL1() {
        return !dirtyL1.isEmpty();
    }

    /** Writes the dirty L2 tables (not forced). */
    void writeTables() throws IOException {
        ByteBuffer out = ByteBuffer.allocate((int) geo.clusterSize());
        for (Map.Entry<Long, long[]> e : l2Cache.dirtyTables()) {
            out.clear();
            out.asLongBuffer().put(e.getValue());
            storage.writeFully(out, e.getKey());
            l2Cache.markClean(e.getKey());
        }
    }

    /** Writes the changed L1 entries (not forced); the tables they point at must be on disk already. */
    void writeL1() throws IOException {
        storage.writeEntries(l1, dirtyL1, l1Offset);
        dirtyL1.clear();
    }

    /** A copy of the L1 table grown to {@code entries}, for the image to write elsewhere. */
    long[] grownL1(int entries) {
        return java.util.Arrays.copyOf(l1, entries);
    }

    /** Switches to the L1 table the header now points at (written whole, so nothing is dirty). */
    void replaceL1(long[] table, long offset) {
        this.l1 = table;
        this.l1Offset = offset;
        dirtyL1.clear();
    }
}
