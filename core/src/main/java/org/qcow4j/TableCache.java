package org.qcow4j;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A bounded LRU cache of metadata tables (L2 tables, refcount blocks) keyed by host offset.
 * Memory is {@code capacity} tables whatever the image size, plus the dirty tables: a table changed in memory and
 * not yet written is pinned until its owner writes it back (in the order crash safety needs) and calls
 * {@link #markClean}. Safe for concurrent readers: a miss loads outside the lock, so two threads may load the same
 * clean table once each, which is harmless.
 */
final class TableCache<T> {
    /** Loads the table stored at a host offset. */
    @FunctionalInterface
    interface Loader<T> {
        T load(long hostOffset) throws IOException;
    }

    private final int capacity;
    private final Loader<T> loader;
    private final LinkedHashMap<Long, T> tables = new LinkedHashMap<>(16, 0.75f, true);
    private final Set<Long> dirty = new HashSet<>();

    TableCache(int capacity, Loader<T> loader) {
        this.capacity = Math.max(1, capacity);
        this.loader = loader;
    }

    int capacity() {
        return capacity;
    }

    T get(long hostOffset) throws IOException {
        synchronized (tables) {
            T t = tables.get(hostOffset);
            if (t != null) {
                return t;
            }
        }
        T loaded = loader.load(hostOffset);
        synchronized (tables) {
            T raced = tables.putIfAbsent(hostOffset, loaded);
            evict();
            return raced != null ? raced : loaded;
        }
    }

    /** The cached table, loaded if need be, marked dirty: the caller changes it and it stays until written. */
    T getForUpdate(long hostOffset) throws IOException {
        T t = get(hostOffset);
        synchronized (tables) {
            T cached = tables.get(hostOffset);
            if (cached == null) { // evicted between the two steps by another thread: it was clean, so t is current
                tables.put(hostOffset, t);
                cached = t;
            }
            dirty.add(hostOffset);
            return cached;
        }
    }

    /** Adds a table made in memory (a new L2 table or refcount block), dirty. */
    void putDirty(long hostOffset, T table) {
        synchronized (tables) {
            tables.put(hostOffset, table);
            dirty.add(hostOffset);
            evict();
        }
    }

    /** Forgets a table whose cluster was freed. */
    void remove(long hostOffset) {
        synchronized (tables) {
            tables.remove(hostOffset);
            dirty.remove(hostOffset);
        }
    }

    /** The dirty tables, in ascending host offset order (so write-back is sequential). */
    List<Map.Entry<Long, T>> dirtyTables() {
        synchronized (tables) {
            List<Map.Entry<Long, T>> out = new ArrayList<>(dirty.size());
            for (Long off : dirty) {
                out.add(Map.entry(off, tables.get(off)));
            }
            out.sort(Map.Entry.comparingByKey());
            return out;
        }
    }

    int dirtyCount() {
        synchronized (tables) {
            return dirty.size();
        }
    }

    void markClean(long hostOffset) {
        synchronized (tables) {
            dirty.remove(hostOffset);
            evict();
        }
    }

    /** Drops least recently used clean tables while over capacity; dirty ones stay. */
    private void evict() {
        if (tables.size() <= capacity) {
            return;
        }
        Iterator<Long> it = tables.keySet().iterator();
        while (tables.size() > capacity && it.hasNext()) {
            if (!dirty.contains(it.next())) {
                it.remove();
            }
        }
    }
}
