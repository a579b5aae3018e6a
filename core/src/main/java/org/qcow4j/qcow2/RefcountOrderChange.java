package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.qcow4j.ImageOperationException;
import org.qcow4j.OpenOptions;
import org.qcow4j.WritableImage;
import org.qcow4j.format.Header;
import org.qcow4j.format.RefcountBlock;

/**
 * QEMU's {@code qcow2_change_refcount_order} (qcow2-refcount.c): the refcount structure rewritten for another
 * refcount width. Walks over the old refcount table allocate, through the old structure, a new refcount block for
 * every run of new-width entries that holds a non-zero refcount, and the new table after them, until a walk allocates
 * nothing more; a last walk writes the new blocks, then the new table is written, the old structure flushed (it
 * counts the new clusters) and forced; then the header names the new table and width in one write of cluster 0; last
 * the old blocks and table are freed through the new structure (not discarded, as QEMU's {@code
 * QCOW2_DISCARD_OTHER}). A crash before the header write leaves the old structure counting the new clusters (leaks);
 * after it, the new one counting the old clusters (leaks).
 */
final class RefcountOrderChange {
    /** What the walks made: the new table, where it is, and the old table to free. */
    private record Result(long[] newTable, long newTableOffset, long[] oldTable, long oldTableOffset) {
    }

    private RefcountOrderChange() {
    }

    /** Changes the refcount width of the version 3 image {@code path} to {@code 1 << order} bits. */
    static void change(Path path, Header h, int order, OpenOptions options, AmendProgress progress) throws IOException {
        String name = path.toString();
        Result r;
        try (WritableImage opened = Qcow2Image.openWritable(path, options.withQemuLayout(true))) {
            Qcow2Image image = (Qcow2Image) opened;
            r = image.withUpdater((updater, storage, header) -> {
                Result walked = walk(name, updater.refcounts(), storage, header, order, progress);
                updater.flush();
                return walked;
            });
        }
        Header now = HeaderUpdate.openedHeader(path, name);
        long cs = now.clusterSize();
        HeaderUpdate.write(path, now.withRefcounts(order, r.newTableOffset(), (int) (r.newTable().length * 8L / cs)));
        try (WritableImage opened = Qcow2Image.openWritable(path, options.withQemuLayout(true))) {
            ((Qcow2Image) opened).withUpdater((updater, storage, header) -> {
                for (long block : r.oldTable()) {
                    if (block != 0) {
                        updater.freeKept(block, cs);
                    }
                }
                updater.freeKept(r.oldTableOffset(), r.oldTable().length * 8L);
                return null;
            });
        }
    }

    private static Result walk(String name, RefcountTable old, org.qcow4j.io.FileStorage storage, Header h, int order,
                               AmendProgress progress) throws IOException {
        int clusterBits = h.clusterBits();
        long cs = h.clusterSize();
        int newBlockSize = (int) RefcountBlock.entries(clusterBits, order);
        Walk w = new Walk(name, old, clusterBits, order, newBlockSize);
        long newTableOffset = 0;
        long allocatedSize = 0;
        int walkIndex = 0;
        do {
            w.allocated = false;
            int totalWalks = Math.max(walkIndex + 2, 3); // this walk, the one that writes, and one finding no more
            w.run(null, storage, progress, walkIndex++, totalWalks);
            if (w.allocated) {
                if (newTableOffset != 0) {
                    old.free(newTableOffset, allocatedSize * 8, RefcountTable.Discard.NEVER);
                }
                newTableOffset = old.allocate((w.newTable.length * 8L + cs - 1) / cs);
                allocatedSize = w.newTable.length;
            }
        } while (w.allocated);
        w.run(ByteBuffer.allocate((int) cs), storage, progress, walkIndex, walkIndex + 1);
        ByteBuffer table = ByteBuffer.allocate(w.newTable.length * 8);
        table.asLongBuffer().put(w.newTable);
        storage.writeFully(table, newTableOffset);
        long[] oldTable = new long[old.tableSize()];
        for (int i = 0; i < oldTable.length; i++) {
            oldTable[i] = old.tableEntry(i);
        }
        return new Result(w.newTable, newTableOffset, oldTable, old.tableOffset());
    }

    /** QEMU's {@code walk_over_reftable} with {@code alloc_refblock} (no buffer) or {@code flush_refblock}. */
    private static final class Walk {
        private final String name;
        private final RefcountTable old;
        private final int clusterBits;
        private final int order;
        private final int newBlockSize;
        long[] newTable = new long[0];
        boolean allocated;

        Walk(String name, RefcountTable old, int clusterBits, int order, int newBlockSize) {
            this.name = name;
            this.old = old;
            this.clusterBits = clusterBits;
            this.order = order;
            this.newBlockSize = newBlockSize;
        }

        /** One walk, walk {@code index} of {@code total} for the progress (QEMU's units: old table entries). */
        void run(ByteBuffer block, org.qcow4j.io.FileStorage storage, AmendProgress progress, int walk, int total)
                throws IOException {
            int index = 0;
            int inBlock = 0;
            boolean empty = true;
            long oldBlockSize = 1L << old.blockBits();
            int bits = 1 << order;
            for (int ri = 0; ri < old.tableSize(); ri++) {
                progress.report((long) walk * old.tableSize() + ri, (long) total * old.tableSize());
                boolean present = old.tableEntry(ri) != 0;
                for (long left = oldBlockSize; !present && left > 0; ) { // counts nothing: zeros, in bulk
                    if (inBlock >= newBlockSize) {
                        finish(block, storage, index++, empty);
                        inBlock = 0;
                        empty = true;
                    }
                    int n = (int) Math.min(left, newBlockSize - inBlock);
                    if (block != null) {
                        for (int i = inBlock; i < inBlock + n; i++) {
                            RefcountBlock.set(block, i, order, 0);
                        }
                    }
                    inBlock += n;
                    left -= n;
                }
                for (long bi = 0; present && bi < oldBlockSize; bi++) {
                    if (inBlock >= newBlockSize) {
                        finish(block, storage, index++, empty);
                        inBlock = 0;
                        empty = true;
                    }
                    long refcount = old.liveRefcount(((long) ri << old.blockBits()) + bi);
                    if (bits < 64 && (refcount >>> bits) != 0) {
                        long offset = (((long) ri << old.blockBits()) + bi) << clusterBits;
                        String m = "Cannot decrease refcount entry width to " + bits + " bits: Cluster at offset 0x"
                                + Long.toHexString(offset) + " has a refcount of " + refcount;
                        throw new ImageOperationException(name, "refcount_bits = " + bits + ": " + m, m);
                    }
                    if (block != null) {
                        RefcountBlock.set(block, inBlock, order, refcount);
                    }
                    inBlock++;
                    empty = empty && refcount == 0;
                }
            }
            if (inBlock > 0) {
                if (block != null) {
                    for (int i = inBlock; i < newBlockSize; i++) {
                        RefcountBlock.set(block, i, order, 0);
                    }
                }
                finish(block, storage, index, empty);
            }
            progress.report((long) (walk + 1) * old.tableSize(), (long) total * old.tableSize());
        }

        /** alloc_refblock (block null) or flush_refblock for new block {@code index}. */
        private void finish(ByteBuffer block, org.qcow4j.io.FileStorage storage, int index, boolean empty)
                throws IOException {
            long cs = 1L << clusterBits;
            if (block == null) {
                if (!empty && index >= newTable.length) {
                    long size = (index + 1 + cs / 8 - 1) / (cs / 8) * (cs / 8);
                    if (size > Header.MAX_REFTABLE_BYTES / 8) {
                        String m = "This operation would make the refcount table grow beyond the maximum size "
                                + "supported by QEMU, aborting";
                        throw new ImageOperationException(name, "refcount table: " + m, m);
                    }
                    newTable = java.util.Arrays.copyOf(newTable, (int) size);
                }
                if (!empty && newTable[index] == 0) {
                    newTable[index] = old.allocate(1);
                    allocated = true;
                }
            } else if (index < newTable.length && newTable[index] != 0) {
                storage.writeFully(block.duplicate().clear(), newTable[index]);
            }
        }
    }
}
