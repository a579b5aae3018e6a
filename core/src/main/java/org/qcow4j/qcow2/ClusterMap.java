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
        this.l2Cache = new TableCache<>((int) Math.min(Integer.MAX_VALUE, cacheBytes / geo.clusterSize()), this::load);
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
     * Sets the L2 entry (and with extended L2 its bitmap) of {@code guest}, allocating or copying its L2 table
     * through {@code refcounts} first. The old table of a copy is given back once the new one is on disk.
     */
    void set(long guest, long entry, long bitmap, RefcountTable refcounts) throws IOException {
        int i = (int) geo.l1Index(guest);
        long old = l1[i];
        long offset = L1Entry.l2Offset(old);
        long[] table;
        if (offset != 0 && (old & L1Entry.COPIED) != 0) {
            table = l2Cache.getForUpdate(offset);
        } else {
            long[] copy = offset == 0 ? new long[tableLongs] : l2Cache.get(offset).clone();
            long fresh = refcounts.allocate(1);
            refcounts.markMetadata(fresh, 1, "new L2 table");
            l2Cache.putDirty(fresh, copy);
            table = copy;
            if (offset != 0) {
                l2Cache.remove(offset);
                refcounts.unmarkMetadata(offset, 1);
                refcounts.freeLater(offset, geo.clusterSize());
            }
            l1[i] = fresh | L1Entry.COPIED;
            dirtyL1.set(i);
        }
        int s = slot(guest);
        table[s] = entry;
        if (geo.extendedL2()) {
            table[s + 1] = bitmap;
        }
    }

    /** Forgets L2 table {@code i} (the caller has given back its entries): its L1 entry becomes 0. */
    void dropTable(int i, RefcountTable refcounts) {
        long offset = L1Entry.l2Offset(l1[i]);
        if (offset != 0) {
            l2Cache.remove(offset);
            refcounts.unmarkMetadata(offset, 1);
            refcounts.freeLater(offset, geo.clusterSize());
            l1[i] = 0;
            dirtyL1.set(i);
        }
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
        for (int i = dirtyL1.nextSetBit(0); i >= 0; i = dirtyL1.nextSetBit(i + 1)) {
            storage.writeFully(ByteBuffer.allocate(8).putLong(0, l1[i]), l1Offset + i * 8L);
        }
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
