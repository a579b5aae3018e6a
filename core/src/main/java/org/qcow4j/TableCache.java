package org.qcow4j;

import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A bounded LRU cache of metadata tables (L2 tables; refcount blocks later) keyed by host offset.
 * Memory is {@code capacity} tables whatever the image size. Safe for concurrent readers: a miss loads
 * outside the lock, so two threads may load the same table once each, which is harmless for immutable tables.
 */
final class TableCache {
    /** Loads the table stored at a host offset. */
    @FunctionalInterface
    interface Loader {
        long[] load(long hostOffset) throws IOException;
    }

    private final int capacity;
    private final Loader loader;
    private final LinkedHashMap<Long, long[]> tables;

    TableCache(int capacity, Loader loader) {
        this.capacity = Math.max(1, capacity);
        this.loader = loader;
        this.tables = new LinkedHashMap<>(16, 0.75f, true) {
            private static final long serialVersionUID = 1L;

            @Override
            protected boolean removeEldestEntry(Map.Entry<Long, long[]> eldest) {
                return size() > TableCache.this.capacity;
            }
        };
    }

    long[] get(long hostOffset) throws IOException {
        synchronized (tables) {
            long[] t = tables.get(hostOffset);
            if (t != null) {
                return t;
            }
        }
        long[] loaded = loader.load(hostOffset);
        synchronized (tables) {
            tables.put(hostOffset, loaded);
        }
        return loaded;
    }
}
