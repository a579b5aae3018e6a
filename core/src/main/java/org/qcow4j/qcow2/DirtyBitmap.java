package org.qcow4j.qcow2;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * The bits of one dirty bitmap in memory: one bit per granule of {@code 2^granularityBits} guest bytes, as QEMU's
 * {@code HBitmap}. Kept in chunks of {@value #CHUNK_GRANULES} granules made when a bit in them is first set, so memory
 * follows what is dirty, not the disk size; the caller bounds the bitmap's size ({@link PersistentBitmaps}). Thread-safe:
 * writes in place mark bits under the image's shared lock.
 */
final class DirtyBitmap {
    private static final int CHUNK_BITS = 18;
    static final long CHUNK_GRANULES = 1L << CHUNK_BITS;
    private static final int CHUNK_WORDS = (int) (CHUNK_GRANULES / 64);

    private final int granularityBits;
    private long size;
    private long granules;
    private long[][] chunks;

    DirtyBitmap(int granularityBits, long size) {
        this.granularityBits = granularityBits;
        this.size = size;
        this.granules = granulesOf(size);
        this.chunks = new long[(int) ((granules + CHUNK_GRANULES - 1) >>> CHUNK_BITS)][];
    }

    private long granulesOf(long bytes) {
        return (bytes + (1L << granularityBits) - 1) >>> granularityBits;
    }

    int granularityBits() {
        return granularityBits;
    }

    synchronized long size() {
        return size;
    }

    synchronized long granules() {
        return granules;
    }

    /** Marks every granule {@code [offset, offset + length)} touches (QEMU's {@code bdrv_set_dirty}). */
    synchronized void setBytes(long offset, long length) {
        if (length <= 0 || offset >= size) {
            return;
        }
        long end = Math.min(size, offset + length);
        setGranules(offset >>> granularityBits, ((end - 1) >>> granularityBits) + 1);
    }

    /** Sets granules {@code [from, to)}. */
    synchronized void setGranules(long from, long to) {
        to = Math.min(to, granules);
        for (long g = from; g < to; ) {
            long[] chunk = chunk(g, true);
            long chunkEnd = Math.min(to, ((g >>> CHUNK_BITS) + 1) << CHUNK_BITS);
            for (; g < chunkEnd; ) {
                int word = (int) ((g >>> 6) & (CHUNK_WORDS - 1));
                int bit = (int) (g & 63);
                long n = Math.min(64 - bit, chunkEnd - g);
                long mask = n == 64 ? -1L : ((1L << n) - 1) << bit;
                chunk[word] |= mask;
                g += n;
            }
        }
    }

    synchronized boolean get(long granule) {
        long[] chunk = chunk(granule, false);
        return chunk != null && (chunk[(int) ((granule >>> 6) & (CHUNK_WORDS - 1))] & (1L << (granule & 63))) != 0;
    }

    private long[] chunk(long granule, boolean create) {
        int i = (int) (granule >>> CHUNK_BITS);
        if (chunks[i] == null && create) {
            chunks[i] = new long[CHUNK_WORDS];
        }
        return chunks[i];
    }

    synchronized void clear() {
        chunks = new long[chunks.length][];
    }

    /**
     * The next set granule at or after {@code from}, or -1: whole empty chunks and words are skipped, so a walk over a
     * sparse bitmap costs what is set.
     */
    synchronized long nextSet(long from) {
        for (long g = from; g < granules; ) {
            long[] chunk = chunks[(int) (g >>> CHUNK_BITS)];
            if (chunk == null) {
                g = ((g >>> CHUNK_BITS) + 1) << CHUNK_BITS;
                continue;
            }
            int word = (int) ((g >>> 6) & (CHUNK_WORDS - 1));
            long bits = chunk[word] & (-1L << (g & 63));
            if (bits != 0) {
                long found = (g & ~63L) + Long.numberOfTrailingZeros(bits);
                return found < granules ? found : -1;
            }
            g = (g & ~63L) + 64;
        }
        return -1;
    }

    /** The next clear granule at or after {@code from}, or {@link #granules()}. */
    synchronized long nextClear(long from) {
        for (long g = from; g < granules; ) {
            long[] chunk = chunks[(int) (g >>> CHUNK_BITS)];
            if (chunk == null) {
                return g;
            }
            int word = (int) ((g >>> 6) & (CHUNK_WORDS - 1));
            long bits = ~chunk[word] & (-1L << (g & 63));
            if (bits != 0) {
                return Math.min(granules, (g & ~63L) + Long.numberOfTrailingZeros(bits));
            }
            g = (g & ~63L) + 64;
        }
        return granules;
    }

    /** Whether any granule of {@code [from, to)} is set. */
    synchronized boolean anySet(long from, long to) {
        long next = nextSet(from);
        return next >= 0 && next < to;
    }

    /**
     * The dirty runs as {offset, length} in guest bytes within {@code [offset, offset + length)} (clipped to it and to
     * the disk), as QEMU's {@code bdrv_dirty_bitmap_next_dirty_area} walks them.
     */
    synchronized List<long[]> ranges(long offset, long length) {
        List<long[]> out = new ArrayList<>();
        long limit = Math.min(size, length > Long.MAX_VALUE - offset ? Long.MAX_VALUE : offset + length);
        if (offset >= limit) {
            return out;
        }
        long lastGranule = (limit - 1) >>> granularityBits;
        for (long g = nextSet(offset >>> granularityBits); g >= 0 && g <= lastGranule; ) {
            long end = nextClear(g);
            long from = Math.max(offset, g << granularityBits);
            long to = Math.min(limit, end << granularityBits);
            out.add(new long[] {from, to - from});
            g = end < granules ? nextSet(end) : -1;
        }
        return out;
    }

    /**
     * QEMU's {@code hbitmap_serialize_part}: granules {@code [from, from + count)} into {@code out} from its position,
     * granule {@code from + i} in bit {@code i % 8} of byte {@code i / 8}.
     */
    synchronized void serialize(long from, long count, ByteBuffer out) {
        ByteBuffer le = out.slice().order(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < count; i += 64) {
            long word = 0;
            long g = from + i;
            long[] chunk = chunks[(int) (g >>> CHUNK_BITS)];
            if (chunk != null && (g & 63) == 0) {
                word = chunk[(int) ((g >>> 6) & (CHUNK_WORDS - 1))];
            }
            long n = Math.min(64, count - i);
            if (n < 64) {
                word &= (1L << n) - 1;
            }
            le.putLong((int) (i / 8), word);
        }
    }

    /** QEMU's {@code hbitmap_deserialize_part}: the inverse of {@link #serialize} (bits past {@code count} ignored). */
    synchronized void deserialize(long from, long count, ByteBuffer in) {
        ByteBuffer le = in.slice().order(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < count; i += 64) {
            long word = le.getLong((int) (i / 8));
            long n = Math.min(64, count - i);
            if (n < 64) {
                word &= (1L << n) - 1;
            }
            if (word == 0) {
                continue;
            }
            long g = from + i;
            chunk(g, true)[(int) ((g >>> 6) & (CHUNK_WORDS - 1))] |= word;
        }
    }

    /** QEMU's {@code hbitmap_truncate}: the bitmap now covers {@code newSize} bytes; granules past it are dropped. */
    synchronized void truncate(long newSize) {
        long newGranules = granulesOf(newSize);
        long[][] next = new long[(int) ((newGranules + CHUNK_GRANULES - 1) >>> CHUNK_BITS)][];
        System.arraycopy(chunks, 0, next, 0, Math.min(chunks.length, next.length));
        chunks = next;
        if (newGranules < granules) {
            long end = Math.min(granules, (long) chunks.length << CHUNK_BITS);
            for (long g = newGranules; g < end; g++) {
                long[] chunk = chunks[(int) (g >>> CHUNK_BITS)];
                if (chunk != null) {
                    chunk[(int) ((g >>> 6) & (CHUNK_WORDS - 1))] &= ~(1L << (g & 63));
                }
            }
        }
        size = newSize;
        granules = newGranules;
    }
}
