package org.qcow4j.qcow2;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A bounded LRU cache of metadata tables (L2 tables, refcount blocks) keyed by host offset.
 * Memory is {@code capacity} tables whatever the image size, plus the dirty tables: a table changed in memory and
 * not yet written is pinned (kept apart from the LRU order) until its owner writes it back, in the order crash
 * safety needs, and calls {@link #markClean}. Safe for concurrent readers: a miss loads outside the lock, so two
 * threads may load the same clean table once each, which is harmless.
 */
public final class TableCache<T> {
    /** Loads the table stored at a host offset. */
    @FunctionalInterface
    interface Loader<T> {
        T load(long hostOffset) throws IOException;
    }

    private final int capacity;
    private final Loader<T> loader;
    private final LinkedHashMap<Long, T> clean = new LinkedHashMap<>(16, 0.75f, true);
    private final Map<Long, T> dirty = new HashMap<>();

    TableCache(int capacity, Loader<T> loader) {
        this.capacity = Math.max(1, capacity);
        this.loader = loader;
    }

    int capacity() {
        return capacity;
    }

    T get(long hostOffset) throws IOException {
        synchronized (this) {
            T t = dirty.get(hostOffset);
            if (t == null) {
                t = clean.get(hostOffset);
            }
            if (t != null) {
                return t;
            }
        }
        T loaded = loader.load(hostOffset);
        synchronized (this) {
            T known = dirty.get(hostOffset);
            if (known == null) {
                known = clean.putIfAbsent(hostOffset, loaded);
                evict();
            }
            return known != null ? known : loaded;
        }
    }

    /** The cached table, loaded if need be, marked dirty: the caller changes it and it stays until written. */
    T getForUpdate(long hostOffset) throws IOException {
        T t = get(hostOffset);
        synchronized (this) {
            T d = dirty.get(hostOffset);
            if (d != null) {
                return d;
            }
            T c = clean.remove(hostOffset);
            // evicted between the two steps by another thread: it was clean, so t is current
            T table = c != null ? c : t;
            dirty.put(hostOffset, table);
            return table;
        }
    }

    /** Adds a table made in memory (a new L2 table or refcount block), dirty. */
    synchronized void putDirty(long hostOffset, T table) {
        clean.remove(hostOffset);
        dirty.put(hostOffset, table);
    }

    /** Forgets a table whose cluster was freed. */
    synchronized void remove(long hostOffset) {
        clean.remove(hostOffset);
        dirty.remove(hostOffset);
    }

    /** The dirty tables, in ascending host offset order (so write-back is sequential). */
    synchronized List<Map.Entry<Long, T>> dirtyTables() {
        List<Map.Entry<Long, T>> out = new ArrayList<>(dirty.entrySet());
        out.sort(Map.Entry.comparingByKey());
        return out;
    }

    synchronized int dirtyCount() {
        return dirty.size();
    }

    /** The table has been written: it joins the LRU order (as the most recently used). */
    synchronized void markClean(long hostOffset) {
        T t = dirty.remove(hostOffset);
        if (t != null) {
            clean.put(hostOffset, t);
            evict();
        }
    }

    /** Drops least recently used clean tables while the cache holds more than its capacity. */
    private void evict() {
        Iterator<Long> it = clean.keySet().iterator();
        while (clean.size() + dirty.size() > capacity && it.hasNext()) {
            it.next();
            it.remove();
        }
    }
}
