package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.util.LinkedHashMap;
import java.util.Map;
import org.qcow4j.format.CFormat;
import org.qcow4j.format.Header;
import org.qcow4j.format.RefcountBlock;
import org.qcow4j.io.FileStorage;

/**
 * The refcounts an image stores, read as QEMU's {@code qcow2_get_refcount} reads them: through the refcount table
 * (loaded whole, at most 8 MiB by {@link Header#parse}'s check) and refcount blocks, a bounded LRU of which is
 * kept. A cluster past the table or under a zero table entry has refcount 0; a block past the end of the file
 * reads as zeros (as QEMU's block layer does); a block QEMU cannot read makes the lookup fail.
 */
public final class StoredRefcounts {
    /** Memory for cached refcount blocks (at least one block is always kept). */
    private static final long CACHE_BYTES = 4L << 20;

    /** A refcount QEMU cannot read: it reports "Input/output error" for the cluster and counts a check error. */
    static final class UnreadableRefcount extends Exception {
        private static final long serialVersionUID = 1L;
        private final String corruption;

        UnreadableRefcount(String corruption) {
            super(corruption, null, false, false);
            this.corruption = corruption;
        }

        /** What QEMU's {@code qcow2_signal_corruption} says about the cause, or null if it says nothing. */
        String corruption() {
            return corruption;
        }
    }

    private final FileStorage storage;
    private final long[] table;
    private final int clusterBits;
    private final int order;
    /** log2 of the entries per refcount block (QEMU's refcount_block_bits). */
    private final int blockBits;
    private final Map<Long, ByteBuffer> blocks;

    /** The refcounts under the refcount table the header names. */
    StoredRefcounts(FileStorage storage, Header h) throws IOException {
        this(storage, h, h.refcountTableOffset(), (int) ((long) h.refcountTableClusters() << (h.clusterBits() - 3)));
    }

    /** The refcounts under the table of {@code entries} entries at {@code tableOffset} (a rebuilt one). */
    StoredRefcounts(FileStorage storage, Header h, long tableOffset, int entries) throws IOException {
        this.storage = storage;
        this.clusterBits = h.clusterBits();
        this.order = h.refcountOrder();
        this.blockBits = clusterBits + 3 - order;
        this.table = new long[entries];
        storage.read(tableOffset, entries * 8).order(ByteOrder.BIG_ENDIAN).asLongBuffer().get(table);
        int capacity = (int) Math.max(1, CACHE_BYTES >> clusterBits);
        this.blocks = new LinkedHashMap<>(16, 0.75f, true) {
            private static final long serialVersionUID = 1L;

            @Override
            protected boolean removeEldestEntry(Map.Entry<Long, ByteBuffer> eldest) {
                return size() > capacity;
            }
        };
    }

    /** The refcount table entries, as stored (reserved bits included). */
    long[] table() {
        return table;
    }

    /** How many clusters one refcount block covers. */
    long clustersPerBlock() {
        return 1L << blockBits;
    }

    /** The stored refcount of host cluster {@code cluster}, unsigned. */
    long get(long cluster) throws UnreadableRefcount, IOException {
        ByteBuffer block = block(cluster >>> blockBits);
        return block == null ? 0 : get(block, cluster);
    }

    /** The refcount of {@code cluster} in {@code block}, the block covering it. */
    long get(ByteBuffer block, long cluster) {
        return RefcountBlock.get(block, (int) (cluster & ((1L << blockBits) - 1)), order);
    }

    /**
     * Sets the stored refcount of {@code cluster} to {@code value}, writing the bytes holding its entry in place
     * through {@code out} (positional write) and updating the cached block. The cluster's refcount block must exist
     * (a non-zero stored refcount proves it does).
     */
    void set(long cluster, long value, FileChannel out) throws UnreadableRefcount, IOException {
        long index = cluster >>> blockBits;
        ByteBuffer block = block(index);
        if (block == null) {
            throw new IllegalStateException("no refcount block for cluster " + cluster);
        }
        int entry = (int) (cluster & ((1L << blockBits) - 1));
        RefcountBlock.set(block, entry, order, value);
        int byteIndex = (int) (((long) entry << order) >>> 3);
        int length = Math.max(1, (1 << order) >>> 3);
        long offset = table[(int) index] & RefcountBlock.TABLE_OFFSET_MASK;
        ByteBuffer bytes = block.duplicate().position(byteIndex).limit(byteIndex + length);
        writeFully(out, bytes, offset + byteIndex);
    }

    static void writeFully(FileChannel out, ByteBuffer src, long pos) throws IOException {
        while (src.hasRemaining()) {
            pos += out.write(src, pos);
        }
    }

    /** The refcount block at refcount table index {@code index}, or null if there is none (all its refcounts 0). */
    ByteBuffer block(long index) throws UnreadableRefcount, IOException {
        if (index >= table.length) {
            return null;
        }
        long offset = table[(int) index] & RefcountBlock.TABLE_OFFSET_MASK;
        if (offset == 0) {
            return null;
        }
        if ((offset & ((1L << clusterBits) - 1)) != 0) {
            throw new UnreadableRefcount("Refblock offset " + CFormat.altHex(offset) + " unaligned (reftable index: "
                    + CFormat.altHex(index) + ")");
        }
        if (offset < 0) {
            // Beyond what QEMU's block layer addresses (bit 63 set): its read fails with EIO.
            throw new UnreadableRefcount(null);
        }
        ByteBuffer block = blocks.get(offset);
        if (block == null) {
            block = storage.read(offset, 1 << clusterBits).order(ByteOrder.BIG_ENDIAN);
            blocks.put(offset, block);
        }
        return block;
    }
}
