package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.qcow4j.DiskImage;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.RefusedRequestException;
import org.qcow4j.format.ClusterGeometry;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.format.L1Entry;
import org.qcow4j.format.L2Entry;
import org.qcow4j.format.SubclusterType;
import org.qcow4j.io.FileIOException;
import org.qcow4j.io.FileStorage;

/**
 * The write half of a {@link Qcow2Image} opened for writing: guest writes, zeroing, discard, resize and the
 * write-back order that keeps the file consistent. Callers hold the image's write lock.
 *
 * <p>Guest data goes to its host cluster at once; metadata changes stay in memory (dirty L2 tables, refcount
 * blocks, L1 entries) until {@link #flush()}, which writes them in the order QEMU's caches do: the data forced, then
 * the refcount blocks and table entries (forced), then the L2 tables (forced), then the L1 entries (forced), and only
 * then the refcount decrements of what the tables stopped using. A crash at any moment leaves the last flushed
 * state plus, at most, leaked clusters. With lazy refcounts the refcounts are written only on close and the dirty
 * bit says so meanwhile.
 *
 * <p>A failing file (a full disk, an I/O error) fails the request, as in QEMU. A failed guest data write changes no
 * table (the cluster it allocated leaks), so the image goes on. Any other failure (a metadata write, a flush, a read
 * in the middle of an allocation) may leave the tables in memory apart from the file in a way no later write-back
 * can order safely (a refcount table grown in memory but not on disk, a header switched but not forced), so from
 * then on the image refuses writes and flushes, and closing it writes nothing, much as QEMU marks such an image
 * broken: the file keeps its last flushed state, plus whatever of the failed flush reached it in QEMU's order, plus
 * at most leaked clusters (see {@link #run}).
 */
public final class Qcow2Updater {
    private final Qcow2Image image;
    private final String filename;
    private final FileStorage storage;
    private final Header header;
    private final ClusterGeometry geo;
    private final ClusterMap map;
    private final RefcountTable refcounts;
    private final DiskImage backing;
    private final boolean lazy;
    private final long clusterSize;
    private boolean dirtyBitSet;
    /** The failure that stopped the image taking writes (see the class comment), or null. */
    private volatile QcowException broken;
    /**
     * The end of the furthest new cluster guest data went to: the file must reach it before an L2 entry points there
     * (the rest of a cluster written in part must read as zeros). Not the allocator's end, which may lie past a
     * cluster whose data write failed (leaked, never pointed at): extending the file to it could fail again on a full
     * disk and stop the flush that keeps the completed writes.
     */
    private long dataEnd;
    /** The failure of the last guest data write: it fails only its request. */
    private FileIOException dataFailure;
    /** For compressed writes, made when first needed. */
    private ClusterCompressor compressor;

    /** One request run by {@link #run}. */
    @FunctionalInterface
    interface Request {
        void run() throws IOException;
    }

    Qcow2Updater(Qcow2Image image, String filename, FileStorage storage, Header header, ClusterMap map,
                 DiskImage backing, OpenOptions options) throws IOException {
        this.image = image;
        this.filename = filename;
        this.storage = storage;
        this.header = header;
        this.geo = header.geometry();
        this.map = map;
        this.backing = backing;
        this.clusterSize = geo.clusterSize();
        this.lazy = header.has(Feature.LAZY_REFCOUNTS);
        this.refcounts = new RefcountTable(filename, storage, header, options.refcountCacheBytes());
        refcounts.markMetadata(map.l1Offset(), geo.sizeToClusters(map.l1Size() * 8L), "L1 table");
        for (int i = 0; i < map.l1Size(); i++) {
            long l2 = map.l2Offset(i);
            if (l2 != 0) {
                refcounts.markMetadata(l2, 1, "L1 entry " + i); // two structures in one cluster: refused here
            }
        }
        if (header.version() >= 3 && header.autoclearFeatures() != 0) {
            // As QEMU: autoclear bits a writer does not maintain are cleared when it opens the image for writing.
            storage.writeFully(ByteBuffer.allocate(8), Header.AUTOCLEAR_FEATURES_AT);
            storage.force();
        }
    }

    /**
     * Runs a request (the caller holds the write lock): refused once the image is broken, and breaking it when the
     * file fails other than in a guest data write.
     */
    void run(Request request) throws IOException {
        ensureUsable();
        dataFailure = null;
        try {
            request.run();
        } catch (FileIOException e) {
            if (e != dataFailure) {
                broken = e;
            }
            throw e;
        }
    }

    private void ensureUsable() throws QcowException {
        QcowException b = broken;
        if (b != null) {
            String cause = b.getMessage().startsWith(filename + ": ") ? b.getMessage().substring(filename.length() + 2)
                    : b.getMessage();
            throw new QcowException(filename, "no more writes after an earlier failure (" + cause
                    + "); the image is as last flushed", b);
        }
    }

    // ---------------------------------------------------------------------------------------------- writes

    void write(ByteBuffer src, long offset) throws IOException {
        while (src.hasRemaining()) {
            int n = (int) Math.min(src.remaining(), clusterSize - geo.offsetInCluster(offset));
            ByteBuffer part = src.slice(src.position(), n);
            if (geo.extendedL2()) {
                writeSubclusters(part, offset);
            } else {
                writeCluster(part, offset);
            }
            src.position(src.position() + n);
            offset += n;
            writeBackIfOverfull(); // a long write may dirty more tables than the cache holds
        }
    }

    /**
     * Writes {@code src} in place if every byte of it goes to a cluster (or subcluster) this image owns alone
     * (NORMAL with COPIED): no metadata changes, so callers may hold only the shared lock and run such writes in
     * parallel. Returns false, having written nothing, when any part needs the allocating path.
     */
    boolean tryWriteInPlace(ByteBuffer src, long offset) throws IOException {
        ensureUsable();
        long end = offset + src.remaining();
        long[] hosts = new long[(int) (geo.sizeToClusters(geo.offsetInCluster(offset) + src.remaining()))];
        int i = 0;
        for (long pos = offset; pos < end; i++) {
            long next = Math.min(end, geo.startOfCluster(pos) + clusterSize);
            long sub = geo.subclusterSize(); // the whole cluster without extended L2
            for (long p = pos; p < next; p = (p / sub + 1) * sub) {
                Mapping m = mapping(p, geo.subclusterIndex(p));
                if (m.type() != SubclusterType.NORMAL || !m.copied()) {
                    return false;
                }
                hosts[i] = m.host();
            }
            pos = next;
        }
        for (i = 0; src.hasRemaining(); i++) {
            int n = (int) Math.min(src.remaining(), clusterSize - geo.offsetInCluster(offset));
            writeData(src.slice(src.position(), n), hosts[i] + geo.offsetInCluster(offset));
            src.position(src.position() + n);
            offset += n;
        }
        return true;
    }

    /** The entry, bitmap and type of the cluster (subcluster {@code sc}) holding {@code guest}. */
    private record Mapping(long entry, long bitmap, SubclusterType type) {
        boolean copied() {
            return (entry & L2Entry.COPIED) != 0;
        }

        long host() {
            return L2Entry.hostOffset(entry);
        }
    }

    private Mapping mapping(long guest, int sc) throws IOException {
        long l2 = map.l2Offset(geo.l1Index(guest));
        if (l2 == 0) {
            return new Mapping(0, 0, SubclusterType.UNALLOCATED_PLAIN);
        }
        long[] table = map.table(l2);
        int slot = map.slot(guest);
        long bitmap = geo.extendedL2() ? table[slot + 1] : 0;
        return new Mapping(table[slot], bitmap, image.classify(table, geo.l2Index(guest), sc, l2));
    }

    private void writeCluster(ByteBuffer data, long guest) throws IOException {
        Mapping m = mapping(guest, 0);
        long start = geo.startOfCluster(guest);
        int in = (int) geo.offsetInCluster(guest);
        if (m.type() == SubclusterType.NORMAL && m.copied()) {
            writeData(data, m.host() + in);
            return;
        }
        if (m.type() == SubclusterType.ZERO_ALLOC && m.copied()) {
            // A preallocated zero cluster of our own: fill it in place.
            writeData(overlay(ByteBuffer.allocate((int) clusterSize), in, data), m.host());
            map.set(guest, m.host() | L2Entry.COPIED, 0, refcounts);
            return;
        }
        boolean readsZero = readsZero(m.type(), start);
        long fresh = refcounts.allocatedEnd();
        long host = refcounts.allocate(1);
        if (data.remaining() == clusterSize) {
            writeData(data, host);
        } else if (readsZero && host >= fresh) {
            writeData(data, host + in); // the rest of a never-written cluster already reads as zeros
        } else {
            ByteBuffer whole = ByteBuffer.allocate((int) clusterSize);
            if (!readsZero) {
                readGuest(whole, start);
            }
            writeData(overlay(whole, in, data), host);
        }
        dataEnd = Math.max(dataEnd, host + clusterSize);
        map.set(guest, host | L2Entry.COPIED, 0, refcounts);
        release(m);
    }

    /** Extended L2: writes whole subclusters, copying the untouched part of the first and last from below. */
    private void writeSubclusters(ByteBuffer data, long guest) throws IOException {
        long start = geo.startOfCluster(guest);
        long sub = geo.subclusterSize();
        int in = (int) geo.offsetInCluster(guest);
        int s0 = (int) (in / sub);
        int s1 = (int) ((in + data.remaining() - 1) / sub);
        Mapping m = mapping(guest, s0);
        long touched = L2Entry.subclusterBits(s0, s1);
        boolean hasHost = m.type() != SubclusterType.COMPRESSED && m.host() != 0;
        if (m.type() == SubclusterType.COMPRESSED || (hasHost && !m.copied())) {
            // The whole cluster moves to a new host cluster of our own.
            ByteBuffer whole = ByteBuffer.allocate((int) clusterSize);
            readGuest(whole, start);
            long host = refcounts.allocate(1);
            writeData(overlay(whole, in, data), host);
            dataEnd = Math.max(dataEnd, host + clusterSize);
            map.set(guest, host | L2Entry.COPIED, L2Entry.BITMAP_ALL_ALLOC, refcounts);
            release(m);
            return;
        }
        long from = s0 * sub;
        long to = Math.min((s1 + 1) * sub, clusterSize);
        ByteBuffer span;
        if (from == in && to == in + data.remaining()) {
            span = data;
        } else {
            span = ByteBuffer.allocate((int) (to - from));
            readGuest(span, start + from);
            overlay(span, (int) (in - from), data);
        }
        long host = hasHost ? m.host() : refcounts.allocate(1);
        writeData(span, host + from);
        dataEnd = Math.max(dataEnd, host + clusterSize);
        long bitmap = (m.bitmap() | touched) & ~L2Entry.zeroBits(touched);
        if (!hasHost || bitmap != m.bitmap()) {
            map.set(guest, host | L2Entry.COPIED, bitmap, refcounts);
        }
    }

    /**
     * Writes whole clusters compressed, as QEMU's {@code qcow2_co_pwritev_compressed_part}: see
     * {@link org.qcow4j.WritableImage#writeCompressed}. A cluster whose stream would not be shorter than a cluster is
     * written plainly (whatever was there); a compressed one never goes over an allocated cluster.
     */
    void writeCompressed(ByteBuffer src, long offset) throws IOException {
        if (image.dataFile() != null) {
            throw new RefusedRequestException(filename, RefusedRequestException.Reason.NOT_SUPPORTED,
                    "compressed writes are not possible with an external data file");
        }
        long end = offset + src.remaining();
        if (geo.offsetInCluster(offset) != 0 || (geo.offsetInCluster(end) != 0 && end != image.size())) {
            throw new RefusedRequestException(filename, RefusedRequestException.Reason.INVALID, "a compressed write of "
                    + src.remaining() + " bytes at " + offset + " is not whole clusters of " + clusterSize + " bytes");
        }
        while (src.hasRemaining()) {
            int n = (int) Math.min(src.remaining(), clusterSize);
            ByteBuffer cluster = ByteBuffer.allocate((int) clusterSize); // a short last cluster ends in zeros
            cluster.put(0, src, src.position(), n);
            ByteBuffer stream = compressor().compress(cluster);
            if (stream == null) {
                write(src.slice(src.position(), n), offset);
            } else {
                Mapping m = mapping(offset, 0);
                if (m.type() == SubclusterType.COMPRESSED || m.host() != 0) {
                    throw new RefusedRequestException(filename, RefusedRequestException.Reason.CONFLICT,
                            "a compressed write cannot overwrite the allocated cluster at guest offset " + offset);
                }
                int len = stream.remaining();
                long host = refcounts.allocateBytes(len);
                writeData(stream, host);
                dataEnd = Math.max(dataEnd, host + len);
                map.set(offset, L2Entry.compressed(host, len, geo.clusterBits()), 0, refcounts);
                writeBackIfOverfull();
            }
            src.position(src.position() + n);
            offset += n;
        }
    }

    private ClusterCompressor compressor() {
        if (compressor == null) {
            compressor = new ClusterCompressor(header.compressionType(), (int) clusterSize);
        }
        return compressor;
    }

    /** Whether a cluster of this type reads as zeros without consulting anything. */
    private boolean readsZero(SubclusterType type, long clusterStart) {
        return type == SubclusterType.ZERO_PLAIN || type == SubclusterType.ZERO_ALLOC
                || (type == SubclusterType.UNALLOCATED_PLAIN && !backingCovers(clusterStart));
    }

    private boolean backingCovers(long guest) {
        return backing != null && guest < backing.size();
    }

    /** Reads the current guest content into {@code dst} (zeros past the end of the disk). */
    private void readGuest(ByteBuffer dst, long guest) throws IOException {
        int n = (int) Math.max(0, Math.min(dst.remaining(), image.size() - guest));
        image.readUnlocked(dst.slice(dst.position(), n), guest);
        dst.clear();
    }

    private static ByteBuffer overlay(ByteBuffer whole, int at, ByteBuffer data) {
        whole.put(at, data, data.position(), data.remaining());
        return whole.clear();
    }

    private void writeData(ByteBuffer data, long host) throws IOException {
        // QEMU's overlap checks: a damaged entry must not make a guest write destroy metadata.
        refcounts.checkDataWrite(host, data.remaining());
        try {
            storage.writeFully(data.duplicate(), host);
        } catch (FileIOException e) {
            dataFailure = e; // under the shared lock (tryWriteInPlace) it is never looked at: that path changes no table
            throw e;
        }
    }

    /** Gives back the host space an entry used (after the next flush). */
    private void release(Mapping m) {
        if (m.type() == SubclusterType.COMPRESSED) {
            int bits = geo.clusterBits();
            refcounts.freeLater(L2Entry.compressedOffset(m.entry(), bits), L2Entry.compressedSize(m.entry(), bits));
        } else if (m.host() != 0) {
            refcounts.freeLater(m.host(), clusterSize);
        }
    }

    // ---------------------------------------------------------------------------------------------- zeroes and discard

    void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        long end = offset + length;
        while (offset < end) {
            long l1Index = geo.l1Index(offset);
            if (map.l2Offset(l1Index) == 0 && !backingCovers(offset)) {
                offset = Math.min(end, (l1Index + 1) * geo.l2Coverage()); // no table, no backing: zeros already
                continue;
            }
            long start = geo.startOfCluster(offset);
            long n = Math.min(end, start + clusterSize) - offset;
            boolean whole = offset == start && (n == clusterSize || offset + n == image.size());
            if (geo.extendedL2()) {
                zeroSubclusters(offset, n, whole, mayUnmap);
            } else if (whole && header.version() >= 3) {
                zeroCluster(offset, mayUnmap);
            } else {
                Mapping m = mapping(offset, 0);
                if (readsZero(m.type(), start)) {
                    // nothing to do: it reads as zeros already
                } else if (whole && mayUnmap && !backingCovers(start)) {
                    setEntry(offset, 0, 0, m); // version 2: an unallocated cluster without backing reads as zeros
                } else {
                    writeZeroData(offset, n);
                }
            }
            offset += n;
            writeBackIfOverfull(); // a long range may dirty more tables than the cache holds
        }
    }

    private void writeZeroData(long offset, long n) throws IOException {
        ByteBuffer zeros = ByteBuffer.allocate((int) n);
        if (geo.extendedL2()) {
            writeSubclusters(zeros, offset);
        } else {
            writeCluster(zeros, offset);
        }
    }

    /** Version 3, whole cluster: the zero flag, keeping our own host cluster unless unmapping. */
    private void zeroCluster(long guest, boolean mayUnmap) throws IOException {
        Mapping m = mapping(guest, 0);
        if (m.type() == SubclusterType.ZERO_PLAIN || (m.type() == SubclusterType.ZERO_ALLOC && !mayUnmap)
                || (m.type() == SubclusterType.UNALLOCATED_PLAIN && !backingCovers(guest))) {
            return;
        }
        boolean keep = !mayUnmap && m.copied() && m.type() == SubclusterType.NORMAL;
        setEntry(guest, keep ? m.host() | L2Entry.COPIED | L2Entry.ZERO : L2Entry.ZERO, 0, keep ? null : m);
    }

    private void zeroSubclusters(long offset, long n, boolean whole, boolean mayUnmap) throws IOException {
        long sub = geo.subclusterSize();
        int in = (int) geo.offsetInCluster(offset);
        int z0 = (int) ((in + sub - 1) / sub);
        long endIn = in + n;
        int z1 = (whole ? (int) ((clusterSize - 1) / sub) : (int) (endIn / sub) - 1);
        Mapping m = mapping(offset, Math.min(z0, 31));
        boolean hasHost = m.type() != SubclusterType.COMPRESSED && m.host() != 0;
        if (whole && (mayUnmap || m.type() == SubclusterType.COMPRESSED || (hasHost && !m.copied()))) {
            setEntry(offset, 0, L2Entry.BITMAP_ALL_ZERO, m);
            return;
        }
        if (z0 > z1 || m.type() == SubclusterType.COMPRESSED || (hasHost && !m.copied())) {
            writeZeroData(offset, n); // no whole subcluster, or a cluster that must be copied first
            return;
        }
        // Head and tail parts of subclusters are written as data; whole subclusters get their zero bit.
        long head = Math.min(n, z0 * sub - in);
        if (head > 0) {
            writeZeroData(offset, head);
        }
        long tailFrom = Math.max((z1 + 1) * sub, in);
        if (!whole && tailFrom < endIn) {
            writeZeroData(offset - in + tailFrom, endIn - tailFrom);
        }
        m = mapping(offset, z0); // the head write may have allocated the cluster
        long bits = L2Entry.subclusterBits(z0, z1);
        long bitmap = (m.bitmap() & ~bits) | L2Entry.zeroBits(bits);
        if (bitmap != m.bitmap()) {
            long host = m.type() != SubclusterType.COMPRESSED ? m.host() : 0;
            map.set(offset, host == 0 ? 0 : host | L2Entry.COPIED, bitmap, refcounts);
        }
    }

    /**
     * Discards the whole clusters of the range (and the partial last cluster of the disk), as QEMU's
     * {@code qcow2_cluster_discard}: with {@code full} the entries become unallocated, otherwise they read as zeros
     * where the cluster was allocated or a backing file exists (version 3), or become unallocated (version 2). A
     * version 2 image with a backing file ignores discards, as QEMU does since 5.0: its unallocated clusters would
     * show stale backing data.
     */
    void discard(long offset, long length, boolean full) throws IOException {
        if (!full && header.version() < 3 && backing != null) {
            return;
        }
        long start = (offset + clusterSize - 1) & ~(clusterSize - 1);
        long end = offset + length == image.size() ? offset + length : (offset + length) & ~(clusterSize - 1);
        for (long guest = start; guest < end; ) {
            long l1Index = geo.l1Index(guest);
            if (map.l2Offset(l1Index) == 0 && (full || backing == null)) {
                guest = (l1Index + 1) * geo.l2Coverage(); // nothing here to discard
                continue;
            }
            Mapping m = mapping(guest, 0);
            boolean allocated = m.type() == SubclusterType.COMPRESSED || m.host() != 0;
            long entry = m.entry();
            long bitmap = m.bitmap();
            if (full) {
                entry = 0;
                bitmap = 0;
            } else if (backing != null || allocated) {
                entry = !geo.extendedL2() && header.version() >= 3 ? L2Entry.ZERO : 0;
                bitmap = geo.extendedL2() ? L2Entry.BITMAP_ALL_ZERO : 0;
            }
            if (entry != m.entry() || bitmap != m.bitmap()) {
                setEntry(guest, entry, bitmap, m);
            }
            guest += clusterSize;
            writeBackIfOverfull(); // a long range may dirty more tables than the cache holds
        }
    }

    /** Sets an entry and gives back what {@code old} used (null: nothing). */
    private void setEntry(long guest, long entry, long bitmap, Mapping old) throws IOException {
        if (entry == 0 && bitmap == 0 && map.l2Offset(geo.l1Index(guest)) == 0) {
            return;
        }
        map.set(guest, entry, bitmap, refcounts);
        if (old != null) {
            release(old);
        }
    }

    // ---------------------------------------------------------------------------------------------- resize

    void resize(long newSize) throws IOException {
        long oldSize = image.size();
        if (newSize < 0 || (newSize & 511) != 0) {
            throw new QcowException(filename, "the new size must be a multiple of 512 (" + newSize + ")");
        }
        long entries = geo.l1EntriesFor(newSize);
        if (entries > L1Entry.MAX_ENTRIES) {
            throw new QcowException(filename, "new size " + newSize + " needs an L1 table larger than QEMU's 32 MiB limit");
        }
        if (newSize > oldSize) {
            if (entries > map.l1Size()) {
                growL1((int) entries);
            }
            image.setSize(newSize);
            // The grown part must read as zeros: the stale tail of the old last cluster, and what a longer backing
            // file would otherwise show through.
            long zeroEnd = Math.min(newSize, (oldSize + clusterSize - 1) & ~(clusterSize - 1));
            if (backing != null) {
                zeroEnd = Math.max(zeroEnd, Math.min(newSize, backing.size()));
            }
            if (zeroEnd > oldSize) {
                writeZeroes(oldSize, zeroEnd - oldSize, false);
            }
        } else if (newSize < oldSize) {
            long keep = (newSize + clusterSize - 1) & ~(clusterSize - 1);
            discard(keep, oldSize - keep, true);
            for (int i = (int) entries; i < map.l1Size(); i++) {
                map.dropTable(i, refcounts);
            }
            image.setSize(newSize);
        }
        flush();
        storage.writeFully(ByteBuffer.allocate(8).putLong(0, newSize), Header.SIZE_AT);
        storage.force();
    }

    /** Moves the L1 table to a larger copy: all tables flushed, the copy and its refcounts written, then the header. */
    private void growL1(int entries) throws IOException {
        flush();
        long oldOffset = map.l1Offset();
        long oldBytes = map.l1Size() * 8L;
        long clusters = geo.sizeToClusters(entries * 8L);
        long offset = refcounts.allocate(clusters);
        writeRefcounts();
        long[] table = map.grownL1(entries);
        ByteBuffer out = ByteBuffer.allocate((int) (clusters * clusterSize));
        out.asLongBuffer().put(table);
        storage.writeFully(out, offset);
        storage.force();
        storage.writeFully(ByteBuffer.allocate(12).putInt(entries).putLong(offset).flip(), Header.L1_SIZE_AT);
        storage.force();
        map.replaceL1(table, offset);
        refcounts.unmarkMetadata(oldOffset, geo.sizeToClusters(oldBytes));
        refcounts.markMetadata(offset, clusters, "new L1 table");
        if (oldBytes > 0) {
            refcounts.freeLater(oldOffset, geo.sizeToClusters(oldBytes) * clusterSize);
        }
    }

    // ---------------------------------------------------------------------------------------------- write-back

    private void writeBackIfOverfull() throws IOException {
        if (map.overfull()) {
            flush();
        }
    }

    /** Makes everything written so far durable, in the order described above. */
    void flush() throws IOException {
        storage.extendTo(dataEnd);
        storage.force(); // data before the tables that point at it
        if (!map.dirty() && !refcounts.hasDirtyBlocks() && !refcounts.hasDirtyEntries() && !refcounts.hasPendingFrees()) {
            return;
        }
        if (lazy) {
            markDirty();
        } else {
            writeRefcounts();
        }
        if (map.dirty()) {
            map.writeTables();
            if (map.hasDirtyL1()) {
                storage.force();
                map.writeL1();
            }
            storage.force();
        }
        if (refcounts.hasPendingFrees()) {
            refcounts.applyFrees();
            if (!lazy) {
                writeRefcounts();
            }
        }
    }

    /** Refcount blocks, forced, then the table entries pointing at new blocks, forced. */
    private void writeRefcounts() throws IOException {
        if (refcounts.hasDirtyBlocks()) {
            refcounts.writeBlocks();
            storage.force();
        }
        if (refcounts.hasDirtyEntries()) {
            refcounts.writeEntries();
            storage.force();
        }
    }

    /** Lazy refcounts: the dirty bit goes to disk before the first table that the refcounts do not cover. */
    private void markDirty() throws IOException {
        if (!dirtyBitSet) {
            setIncompatible(header.incompatibleFeatures() | Feature.DIRTY.mask());
            dirtyBitSet = true;
        }
    }

    private void setIncompatible(long bits) throws IOException {
        storage.writeFully(ByteBuffer.allocate(8).putLong(0, bits), Header.INCOMPATIBLE_FEATURES_AT);
        storage.force();
    }

    /**
     * Flushes, and with lazy refcounts writes the refcounts and clears the dirty bit: the image is clean. A broken
     * image is left as it is (its failure was reported when it happened).
     */
    void close() throws IOException {
        if (compressor != null) {
            compressor.close();
            compressor = null;
        }
        if (broken != null) {
            return;
        }
        run(this::closeClean);
    }

    private void closeClean() throws IOException {
        flush();
        if (lazy) {
            writeRefcounts();
            if (dirtyBitSet) {
                setIncompatible(header.incompatibleFeatures() & ~Feature.DIRTY.mask());
                dirtyBitSet = false;
            }
        }
    }
}
