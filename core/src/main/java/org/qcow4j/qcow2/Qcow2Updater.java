package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.CorruptionException;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.InvalidTableException;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.RefusedRequestException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.format.ClusterGeometry;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.format.L1Entry;
import org.qcow4j.format.L2Entry;
import org.qcow4j.format.SnapshotTable;
import org.qcow4j.format.SubclusterType;
import org.qcow4j.io.FileIOException;
import org.qcow4j.io.FileStorage;
import org.qcow4j.io.Zeros;

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
 * <p>What ends up in the file is what QEMU 7.2 writes for the same requests, byte for byte: each request follows the
 * QEMU function named in its comment (the block layer's splitting of zero writes and discards, then block/qcow2.c and
 * block/qcow2-cluster.c), and {@link RefcountTable} places clusters as QEMU's allocator does. Only the moments of
 * metadata writes differ (QEMU writes some of them at once, this at the next flush), which the final bytes do not
 * show; and a cluster freed since the last flush is handed out again only after a flush (see {@link RefcountTable}).
 * Without {@link OpenOptions#qemuLayout} two costly QEMU habits are left out (see there).
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
    /** Where guest data goes: the external data file, or {@link #storage} itself. */
    private final FileStorage dataStorage;
    /** The payload cipher of an encrypted image (guest data is written encrypted, in whole sectors), else null. */
    private final Encryption encryption;
    /**
     * An external data file: a data cluster lives there at its guest offset and has no refcount (QEMU's
     * {@code has_data_file}); with {@link #rawDataFile} the data file is also a valid raw image of the disk
     * ({@code data_file_is_raw}), which zero writes keep true.
     */
    private final boolean hasDataFile;
    private final boolean rawDataFile;
    private final Header header;
    private final ClusterGeometry geo;
    private final ClusterMap map;
    private final RefcountTable refcounts;
    private final DiskImage backing;
    private boolean lazy; // left by a downgrade to version 2 (leaveLazyRefcounts)
    /** {@link OpenOptions#qemuLayout}: QEMU's layout also where it costs more. */
    private final boolean qemuLayout;
    private final long clusterSize;
    private boolean dirtyBitSet;
    /** The failure that stopped the image taking writes (see the class comment), or null. */
    private volatile QcowException broken;
    /**
     * The end of the furthest new cluster guest data went to (in the data file, if there is one): the file must
     * reach it before an L2 entry points there
     * (the rest of a cluster written in part must read as zeros). Not the allocator's end, which may lie past a
     * cluster whose data write failed (leaked, never pointed at): extending the file to it could fail again on a full
     * disk and stop the flush that keeps the completed writes.
     */
    private long dataEnd;
    /** The failure of the last guest data write: it fails only its request. */
    private FileIOException dataFailure;
    /** For compressed writes, made when first needed. */
    private ClusterCompressor compressor;
    /** The persistent dirty bitmaps: loaded and flagged in use on open, recording writes, stored on close. */
    private final PersistentBitmaps bitmaps;

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
        this.dataStorage = image.dataStorage();
        this.encryption = image.cipher();
        this.hasDataFile = dataStorage != storage;
        this.rawDataFile = hasDataFile && header.has(Feature.RAW_EXTERNAL_DATA);
        this.header = header;
        this.geo = header.geometry();
        this.map = map;
        this.backing = backing;
        this.clusterSize = geo.clusterSize();
        this.lazy = options.lazyRefcounts() != null ? options.lazyRefcounts() : header.has(Feature.LAZY_REFCOUNTS);
        this.qemuLayout = options.qemuLayout();
        this.refcounts = new RefcountTable(filename, storage, header, options.refcountCacheBytes());
        refcounts.setReuseBarrier(this::flush);
        refcounts.markMetadata(map.l1Offset(), geo.sizeToClusters(map.l1Size() * 8L), "L1 table");
        for (int i = 0; i < map.l1Size(); i++) {
            long l2 = map.l2Offset(i);
            if (l2 != 0) {
                refcounts.markMetadata(l2, 1, "L1 entry " + i); // two structures in one cluster: refused here
            }
        }
        // QEMU's cached overlap checks also know the snapshot table and the snapshots' L1 tables (not their L2
        // tables, which may be the active ones): a damaged entry must not make a guest write destroy them. The
        // check of inactive L2 tables, when asked for, goes through the same table, read once here.
        List<SnapshotTable.Entry> snapshots = header.nbSnapshots() == 0 ? List.of()
                : SnapshotTable.read(header, storage::read, filename, storage.length(), image.size());
        markSnapshotMetadata(header.snapshotsOffset(), snapshots, true);
        if (options.inactiveL2Check()) {
            storage.setWriteCheck(new InactiveL2Check(filename, storage, geo, snapshots));
        }
        this.bitmaps = PersistentBitmaps.openForWriting(image, storage, header, this, refcounts);
        long kept = header.autoclearFeatures() & Feature.RAW_EXTERNAL_DATA.mask();
        if (header.bitmaps() == null && header.version() >= 3 && header.autoclearFeatures() != kept) {
            // (with a bitmaps extension, PersistentBitmaps rewrote the header and its autoclear bits)
            // As QEMU: autoclear bits a writer does not maintain are cleared when it opens the image for writing.
            storage.writeFully(ByteBuffer.allocate(8).putLong(0, kept), Header.AUTOCLEAR_FEATURES_AT);
            storage.force();
        }
    }

    /** Marks (or with {@code mark} false forgets) a snapshot table at {@code offset} and its L1 tables as metadata. */
    void markSnapshotMetadata(long offset, List<SnapshotTable.Entry> entries, boolean mark) throws IOException {
        long tableBytes = SnapshotTable.size(entries);
        if (tableBytes > 0) {
            mark(offset, tableBytes, "snapshot table", mark);
        }
        for (SnapshotTable.Entry sn : entries) {
            // A table past QEMU's limit (l1_size is untrusted) is refused by every operation that would read it
            // (SnapshotL1Table), and marking it would cost memory by its claimed size: it is not guarded. QEMU's
            // cached overlap check guards the whole claimed range, refusing a write there and marking the image
            // corrupt, where qcow4j writes.
            if (sn.l1Size() > 0 && sn.l1Size() <= L1Entry.MAX_ENTRIES) {
                mark(sn.l1TableOffset(), sn.l1Size() * 8L, "L1 table of snapshot " + sn.id(), mark);
            }
        }
    }

    private void mark(long offset, long bytes, String what, boolean mark) throws IOException {
        long start = geo.startOfCluster(offset);
        long clusters = geo.sizeToClusters(offset - start + bytes);
        if (mark) {
            refcounts.markMetadata(start, clusters, what);
        } else {
            refcounts.unmarkMetadata(start, clusters);
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
        } catch (CorruptionException e) {
            broken = e;
            markCorrupt();
            throw e;
        }
    }

    /**
     * A corruption met outside a write request (a read, a block status): QEMU's fatal {@code qcow2_signal_corruption}
     * on a writable image marks it corrupt and makes it unusable, so it takes no more writes.
     */
    void signalCorruption(CorruptionException e) {
        if (broken == null) {
            broken = e;
            markCorrupt();
        }
    }

    /**
     * QEMU's {@code qcow2_mark_corrupt}: the corrupt bit set in the header (version 3; a version 2 header has no
     * place for it), so no writer opens the image until it is repaired. Best effort: the request has failed anyway.
     */
    private void markCorrupt() {
        if (header.version() < 3) {
            return;
        }
        try {
            setIncompatible(header.incompatibleFeatures() | (dirtyBitSet ? Feature.DIRTY.mask() : 0)
                    | Feature.CORRUPT.mask());
        } catch (IOException | RuntimeException e) {
            // the image is broken already: nothing more to do
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

    /** QEMU's {@code INV_OFFSET}: no host offset (yet). */
    private static final long INV = -1;
    /** QEMU's {@code BDRV_REQUEST_MAX_BYTES}: one allocation never covers more. */
    private static final long MAX_REQUEST_BYTES = 0x7fff_fe00L;
    /** QEMU's {@code MAX_BOUNCE_BUFFER}: zero writes that fall back to data write at most this much at a time. */
    private static final long MAX_BOUNCE_BUFFER = 32768L * 512;

    /** A host offset and a byte count, QEMU's in-out parameters of {@code handle_copied} and {@code handle_alloc}. */
    private static final class Span {
        long host;
        long bytes;

        Span(long host, long bytes) {
            this.host = host;
            this.bytes = bytes;
        }
    }

    /**
     * QEMU's {@code QCowL2Meta}: {@code clusters} clusters from guest {@code guest} (cluster aligned) going to host
     * {@code alloc}; the bytes {@code [cowStartFrom, cowStartTo)} and {@code [cowEndFrom, cowEndTo)} (relative to
     * {@code guest}) are copied from the old content around the written data. {@code keepOld}: the clusters were
     * the image's own already (nothing freed); {@code fresh}: the host clusters were never written, so they read as
     * zeros already.
     */
    private record Meta(long alloc, long guest, long clusters, boolean keepOld, long cowStartFrom, long cowStartTo,
                        long cowEndFrom, long cowEndTo, boolean fresh) {
    }

    /**
     * QEMU's {@code qcow2_co_pwritev_part}: the request goes in chunks, each a run of host clusters contiguous in the
     * file ({@link #allocHostOffset}); the old clusters that copy-on-write replaced are given back once every chunk
     * is allocated, as QEMU's write tasks link their L2 entries only after its request loop has allocated them all.
     */
    void write(ByteBuffer src, long offset) throws IOException {
        if (encryption != null && ((offset | src.remaining()) & (Encryption.SECTOR - 1)) != 0) {
            // The block layer's request alignment for encrypted images: whole sectors, read, merged and rewritten.
            long from = offset & -Encryption.SECTOR;
            long to = (offset + src.remaining() + Encryption.SECTOR - 1) & -Encryption.SECTOR;
            ByteBuffer whole = ByteBuffer.allocate((int) (to - from));
            image.readMapped(whole.slice(0, Encryption.SECTOR), from);
            image.readMapped(whole.slice(whole.capacity() - Encryption.SECTOR, Encryption.SECTOR), to - Encryption.SECTOR);
            whole.put((int) (offset - from), src, src.position(), src.remaining());
            src.position(src.limit());
            src = whole;
            offset = from;
        }
        List<Long> replaced = new ArrayList<>();
        while (src.hasRemaining()) {
            List<Meta> metas = new ArrayList<>();
            Span chunk = allocHostOffset(offset, src.remaining(), metas);
            int n = (int) chunk.bytes;
            writeChunk(src.slice(src.position(), n), chunk.host, metas, replaced);
            src.position(src.position() + n);
            offset += n;
            writeBackIfOverfull(); // a long write may dirty more tables than the cache holds
        }
        for (long entry : replaced) {
            release(entry, RefcountTable.Discard.NEVER); // "Don't discard clusters that reach a refcount of 0"
        }
    }

    /**
     * QEMU's {@code qcow2_save_vmstate}: {@code src} written at guest offset {@code offset} in the VM state area, past
     * the disk, as any guest write; the L1 table grows on the way ({@link #ensureTable}). Refused before anything is
     * written when the table would grow past QEMU's limit (where QEMU would fail part way through: each growth it
     * makes on the way is to a size of the same sequence, so one fails exactly when the last one would). Where QEMU
     * 7.2 goes on, its {@code offset_to_l1_index} having cut an index of 2^32 or more to an int, so that it writes (and
     * reads) through whatever L1 entry the cut index names, disk or area, this refuses too.
     */
    void writeVmState(ByteBuffer src, long offset) throws IOException {
        if (src.hasRemaining()) {
            long last = geo.l1Index(offset + src.remaining() - 1);
            if (last >= map.l1Size() && grownL1Size(map.l1Size(), last + 1) > L1Entry.MAX_ENTRIES) {
                throw new RefusedRequestException(filename, RefusedRequestException.Reason.TOO_LARGE, "a VM state write"
                        + " reaching guest offset " + (offset + src.remaining()) + " needs an L1 table larger than"
                        + " QEMU's 32 MiB limit");
            }
        }
        write(src, offset);
    }

    /**
     * QEMU's {@code qcow2_grow_l1_table} without {@code exact_size}, as a write past the table grows it: by half at a
     * time (rounded up) from {@code current} (at least 1) until {@code needed} entries fit.
     */
    private static long grownL1Size(long current, long needed) {
        long size = Math.max(1, current);
        while (size < needed) {
            size = (size * 3 + 1) / 2;
        }
        return size;
    }

    /**
     * Writes {@code src} in place if every byte of it goes to a cluster (or subcluster) this image owns alone
     * (NORMAL with COPIED): no metadata changes, so callers may hold only the shared lock and run such writes in
     * parallel. Returns false, having written nothing, when any part needs the allocating path.
     */
    boolean tryWriteInPlace(ByteBuffer src, long offset) throws IOException {
        ensureUsable();
        if (encryption != null && ((offset | src.remaining()) & (Encryption.SECTOR - 1)) != 0) {
            return false; // partial sectors are read, merged and rewritten under the exclusive lock
        }
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
            try {
                writeData(src.slice(src.position(), n), hosts[i] + geo.offsetInCluster(offset));
            } catch (CorruptionException e) {
                signalCorruption(e); // an overlap check refused it (InactiveL2Check): as a request's would be
                throw e;
            }
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
        return new Mapping(table[slot], bitmap, image.classify(table, geo.l2Index(guest), sc, l2, true));
    }

    private long entryAt(long[] table, int index) {
        return table[geo.extendedL2() ? 2 * index : index];
    }

    private long bitmapAt(long[] table, int index) {
        return geo.extendedL2() ? table[2 * index + 1] : 0;
    }

    /** QEMU's {@code cluster_needs_new_alloc}: anything but a cluster of our own (NORMAL or ZERO_ALLOC with COPIED). */
    private boolean needsNewAlloc(long entry) {
        SubclusterType t = clusterType(entry);
        return !((t == SubclusterType.NORMAL || t == SubclusterType.ZERO_ALLOC) && (entry & L2Entry.COPIED) != 0);
    }

    /** QEMU's {@code count_single_write_clusters}: how many clusters from {@code index} one write can cover. */
    private long countSingleWrite(long n, long[] table, int index, boolean newAlloc) {
        long expected = L2Entry.hostOffset(entryAt(table, index));
        long i;
        for (i = 0; i < n; i++) {
            long e = entryAt(table, index + (int) i);
            if (needsNewAlloc(e) != newAlloc) {
                break;
            }
            if (!newAlloc) {
                if (expected != L2Entry.hostOffset(e)) {
                    break;
                }
                expected += clusterSize;
            }
        }
        return i;
    }

    /** The clusters {@code handle_copied} and {@code handle_alloc} look at: up to the end of the L2 table. */
    private long clustersToLook(long guest, long bytes) {
        long n = geo.sizeToClusters(geo.offsetInCluster(guest) + bytes);
        n = Math.min(n, geo.l2Entries() - geo.l2Index(guest));
        return Math.min(n, MAX_REQUEST_BYTES >>> geo.clusterBits());
    }

    /**
     * QEMU's {@code qcow2_alloc_host_offset}: from {@code offset}, as many bytes as go to one contiguous run of host
     * clusters, the image's own first ({@code handle_copied}), then new ones ({@code handle_alloc}: at the expected
     * host offset if that is free, or anywhere for the first run). Returns the run's host offset and length; the
     * copy-on-write and L2 updates it needs are added to {@code metas}.
     */
    private Span allocHostOffset(long offset, long bytes, List<Meta> metas) throws IOException {
        long hostOffset = INV;
        long clusterOffset = INV;
        long start = offset;
        long remaining = bytes;
        long cur = 0;
        while (true) {
            if (hostOffset == INV && clusterOffset != INV) {
                hostOffset = clusterOffset;
            }
            start += cur;
            remaining -= cur;
            if (clusterOffset != INV) {
                clusterOffset += cur;
            }
            if (remaining == 0) {
                break;
            }
            Span s = new Span(clusterOffset, remaining);
            if (handleCopied(start, s, metas)) {
                clusterOffset = s.host;
                cur = s.bytes;
                continue;
            }
            if (s.bytes == 0) {
                break;
            }
            if (handleAlloc(start, s, metas)) {
                clusterOffset = s.host;
                cur = s.bytes;
                continue;
            }
            break;
        }
        return new Span(hostOffset, bytes - remaining);
    }

    /** QEMU's {@code handle_copied}: clusters of our own at {@code guest}, contiguous from {@code s.host} if set. */
    private boolean handleCopied(long guest, Span s, List<Meta> metas) throws IOException {
        long in = geo.offsetInCluster(guest);
        long n = clustersToLook(guest, s.bytes);
        long l2 = ensureTable(guest);
        long[] table = map.table(l2);
        int index = geo.l2Index(guest);
        long entry = entryAt(table, index);
        if (needsNewAlloc(entry)) {
            return false;
        }
        image.classify(table, index, 0, l2, true); // refuses a misaligned host offset
        long host = L2Entry.hostOffset(entry);
        if (s.host != INV && host != s.host) {
            s.bytes = 0;
            return false;
        }
        long keep = countSingleWrite(n, table, index, false);
        s.bytes = Math.min(s.bytes, keep * clusterSize - in);
        calculateL2Meta(host, guest, s.bytes, table, index, l2, metas, true, false);
        s.host = host + in;
        return true;
    }

    /** QEMU's {@code handle_alloc}: new clusters for {@code guest}, at {@code s.host} only if that is set. */
    private boolean handleAlloc(long guest, Span s, List<Meta> metas) throws IOException {
        long in = geo.offsetInCluster(guest);
        long n = clustersToLook(guest, s.bytes);
        long l2 = ensureTable(guest);
        int index = geo.l2Index(guest);
        n = countSingleWrite(n, map.table(l2), index, true);
        long fresh = refcounts.allocatedEnd();
        long alloc;
        if (hasDataFile) {
            // QEMU's do_alloc_cluster_offset: a data file's cluster is the guest's own offset, never counted
            alloc = geo.startOfCluster(guest);
            fresh = dataStorage.length();
        } else if (s.host == INV) {
            alloc = refcounts.allocate(n);
        } else {
            alloc = geo.startOfCluster(s.host);
            n = refcounts.allocateAt(alloc, n);
            if (n == 0) {
                s.bytes = 0; // "Can't extend contiguous allocation"
                return false;
            }
        }
        long nbBytes = Math.min(s.bytes + in, n * clusterSize);
        s.host = alloc + in;
        s.bytes = Math.min(s.bytes, nbBytes - in);
        calculateL2Meta(alloc, guest, s.bytes, map.table(l2), index, l2, metas, false, alloc >= fresh);
        return true;
    }

    /**
     * QEMU's {@code calculate_l2_meta}: the copy-on-write around {@code bytes} written at {@code guest} into the
     * clusters at {@code host}; nothing when the clusters are our own and every subcluster written is NORMAL.
     */
    private void calculateL2Meta(long host, long guest, long bytes, long[] table, int index, long l2, List<Meta> metas,
                                 boolean keepOld, boolean fresh) throws IOException {
        long sub = geo.subclusterSize();
        boolean ext = geo.extendedL2();
        long cowStartTo = geo.offsetInCluster(guest);
        long cowEndFrom = cowStartTo + bytes;
        long clusters = geo.sizeToClusters(cowEndFrom);
        boolean skipCow = keepOld;
        for (int i = 0; i < clusters; i++) {
            if (skipCow) {
                long from = Math.max(cowStartTo, i * clusterSize);
                long to = Math.min(cowEndFrom, (i + 1) * clusterSize);
                int first = scIndex(from);
                int last = scIndex(to - 1);
                SubclusterType t = image.classify(table, index + i, first, l2, true);
                int run = L2Entry.subclusterRun(bitmapAt(table, index + i), first, t, ext);
                if (t != SubclusterType.NORMAL || first + run <= last) {
                    skipCow = false;
                }
            } else {
                image.classify(table, index + i, 0, l2, true);
            }
        }
        if (skipCow) {
            return;
        }
        int sc = scIndex(cowStartTo);
        SubclusterType first = image.classify(table, index, sc, l2, true);
        long alloc32 = bitmapAt(table, index) & L2Entry.BITMAP_ALL_ALLOC;
        long cowStartFrom = switch (first) {
            case COMPRESSED -> 0;
            case NORMAL, ZERO_ALLOC, UNALLOCATED_ALLOC -> keepOld ? (first == SubclusterType.NORMAL ? cowStartTo : sc * sub)
                    : ext ? Math.min(sc, Integer.numberOfTrailingZeros((int) alloc32)) * sub : 0;
            case ZERO_PLAIN, UNALLOCATED_PLAIN -> sc * sub;
            case INVALID -> throw new IllegalStateException("classify() refuses INVALID");
        };
        int lastIndex = index + (int) clusters - 1;
        int scEnd = scIndex(cowEndFrom - 1);
        SubclusterType last = image.classify(table, lastIndex, scEnd, l2, true);
        long lastAlloc32 = bitmapAt(table, lastIndex) & L2Entry.BITMAP_ALL_ALLOC;
        long clusterEnd = (cowEndFrom + clusterSize - 1) & ~(clusterSize - 1);
        long subEnd = (cowEndFrom + sub - 1) / sub * sub;
        long cowEndTo = switch (last) {
            case COMPRESSED -> clusterEnd;
            case NORMAL, ZERO_ALLOC, UNALLOCATED_ALLOC -> keepOld ? (last == SubclusterType.NORMAL ? cowEndFrom : subEnd)
                    : clusterEnd - (ext ? Math.min(31 - scEnd, Integer.numberOfLeadingZeros((int) lastAlloc32)) * sub : 0);
            case ZERO_PLAIN, UNALLOCATED_PLAIN -> subEnd;
            case INVALID -> throw new IllegalStateException("classify() refuses INVALID");
        };
        metas.add(new Meta(host, geo.startOfCluster(guest), clusters, keepOld, cowStartFrom, cowStartTo, cowEndFrom,
                cowEndTo, fresh));
    }

    /** QEMU's {@code offset_to_sc_index} of an offset relative to a cluster-aligned guest offset. */
    private int scIndex(long offset) {
        return geo.extendedL2() ? (int) ((offset / geo.subclusterSize()) & 31) : 0;
    }

    /**
     * Writes a chunk: the data at {@code host}, the copy-on-write regions of its metas (in one write with the data
     * when a single new allocation holds it all, as QEMU's {@code merge_cow}), then the L2 entries
     * ({@code qcow2_alloc_cluster_link_l2}); the old entries the new clusters replace go to {@code replaced}.
     */
    private void writeChunk(ByteBuffer data, long host, List<Meta> metas, List<Long> replaced) throws IOException {
        Meta only = metas.size() == 1 ? metas.get(0) : null;
        if (only != null && only.alloc() + only.cowStartTo() == host && only.cowEndFrom() - only.cowStartTo() == data.remaining()) {
            ByteBuffer head = cow(only, only.cowStartFrom(), only.cowStartTo());
            ByteBuffer tail = cow(only, only.cowEndFrom(), only.cowEndTo());
            if (head == null && tail == null) {
                writeData(data, host);
            } else {
                ByteBuffer all = ByteBuffer.allocate((int) (only.cowEndTo() - only.cowStartFrom()));
                if (head != null) {
                    all.put(0, head, 0, head.remaining());
                }
                all.put((int) (only.cowStartTo() - only.cowStartFrom()), data, data.position(), data.remaining());
                if (tail != null) {
                    all.put((int) (only.cowEndFrom() - only.cowStartFrom()), tail, 0, tail.remaining());
                }
                writeData(all, only.alloc() + only.cowStartFrom());
            }
        } else {
            List<ByteBuffer> cows = new ArrayList<>();
            for (Meta m : metas) { // read the old content before anything of the chunk is written
                cows.add(cow(m, m.cowStartFrom(), m.cowStartTo()));
                cows.add(cow(m, m.cowEndFrom(), m.cowEndTo()));
            }
            writeData(data, host);
            for (int i = 0; i < metas.size(); i++) {
                Meta m = metas.get(i);
                if (cows.get(2 * i) != null) {
                    writeData(cows.get(2 * i), m.alloc() + m.cowStartFrom());
                }
                if (cows.get(2 * i + 1) != null) {
                    writeData(cows.get(2 * i + 1), m.alloc() + m.cowEndFrom());
                }
            }
        }
        for (Meta m : metas) {
            dataEnd = Math.max(dataEnd, m.alloc() + m.cowEndTo());
            link(m, replaced, false);
        }
    }

    /**
     * The old content of {@code [from, to)} (relative to the meta's guest offset) to copy, or null when there is
     * none to write: an empty region, or zeros going to clusters that read as zeros already.
     */
    private ByteBuffer cow(Meta m, long from, long to) throws IOException {
        // An encrypted image's new cluster holds zeros only once they are written encrypted: its regions always are.
        boolean skipZeros = m.fresh() && encryption == null;
        if (from >= to || skipZeros && readsZeroUnread(m.guest() + from)) {
            return null;
        }
        ByteBuffer b = ByteBuffer.allocate((int) (to - from));
        image.readMapped(b, m.guest() + from);
        b.clear();
        return skipZeros && Zeros.isZero(b, 0, b.limit()) ? null : b;
    }

    /**
     * Whether the cluster holding {@code guest} reads as zeros by its L2 entry alone: unallocated with no backing
     * file beneath, or a zero cluster. The common allocating write (a new cluster, no backing file) then skips
     * reading and scanning its copy-on-write regions.
     */
    private boolean readsZeroUnread(long guest) throws IOException {
        long l2 = ensureTable(guest);
        long[] table = map.table(l2);
        int index = geo.l2Index(guest);
        if (geo.extendedL2()) {
            long entry = entryAt(table, index);
            long bitmap = bitmapAt(table, index);
            return entry == 0 && (bitmap & L2Entry.BITMAP_ALL_ALLOC) == 0
                    && (bitmap == L2Entry.BITMAP_ALL_ZERO || backing == null || guest >= backing.size());
        }
        SubclusterType t = image.classify(table, index, 0, l2, true);
        return t == SubclusterType.ZERO_PLAIN || t == SubclusterType.ZERO_ALLOC
                || t == SubclusterType.UNALLOCATED_PLAIN && (backing == null || guest >= backing.size());
    }

    /** QEMU's {@code qcow2_alloc_cluster_link_l2}: the meta's clusters mapped, subclusters written marked. */
    private void link(Meta m, List<Long> replaced) throws IOException {
        link(m, replaced, false);
    }

    /**
     * {@link #link(Meta, List)}; a {@code prealloc} meta marks no subcluster allocated (QEMU leaves the bitmap of
     * preallocated clusters as it was).
     */
    private void link(Meta m, List<Long> replaced, boolean prealloc) throws IOException {
        long l2 = ensureTable(m.guest());
        int index = geo.l2Index(m.guest());
        long sub = geo.subclusterSize();
        for (int i = 0; i < m.clusters(); i++) {
            long[] table = map.table(l2);
            long old = entryAt(table, index + i);
            long bitmap = bitmapAt(table, index + i);
            if (old != 0 && !m.keepOld()) {
                replaced.add(old);
            }
            if (geo.extendedL2() && !prealloc) {
                long from = Math.max(m.cowStartFrom(), i * clusterSize);
                long to = Math.min(m.cowEndTo(), (i + 1) * clusterSize);
                long bits = L2Entry.subclusterBits((int) ((from / sub) & 31), (int) (((to - 1) / sub) & 31));
                bitmap = (bitmap | bits) & ~L2Entry.zeroBits(bits);
            }
            map.set(m.guest() + i * clusterSize, (m.alloc() + i * clusterSize) | L2Entry.COPIED, bitmap);
        }
    }

    /** Writes guest data at {@code host}: encrypted first if the image is ({@code qcow2_co_encrypt}). */
    private void writeData(ByteBuffer data, long host) throws IOException {
        writeBytes(encryption == null ? data : encryption.encrypted(data, host), host);
    }

    /** Writes bytes as they are (compressed streams are not encrypted, as QEMU 7.2 writes them). */
    private void writeBytes(ByteBuffer data, long host) throws IOException {
        if (!hasDataFile) {
            // QEMU's overlap checks: a damaged entry must not make a guest write destroy metadata (a data file has none).
            refcounts.checkDataWrite(host, data.remaining());
        }
        try {
            dataStorage.writeFully(data.duplicate(), host);
        } catch (FileIOException e) {
            dataFailure = e; // under the shared lock (tryWriteInPlace) it is never looked at: that path changes no table
            throw e;
        }
    }

    /**
     * Writes whole clusters compressed, as QEMU's {@code qcow2_co_pwritev_compressed_part}: see
     * {@link org.qcow4j.WritableImage#writeCompressed}. A cluster whose stream would not be shorter than a cluster is
     * written plainly (whatever was there); a compressed one never goes over an allocated cluster. Each stream is
     * placed as QEMU's {@code qcow2_alloc_compressed_cluster_offset} places it: the L2 table first, then the bytes
     * ({@link RefcountTable#allocateBytes}).
     */
    void writeCompressed(ByteBuffer src, long offset) throws IOException {
        if (hasDataFile) {
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
                long l2 = ensureTable(offset);
                long entry = entryAt(map.table(l2), geo.l2Index(offset));
                if (L2Entry.clusterType(entry, geo.extendedL2(), false) == SubclusterType.COMPRESSED
                        || L2Entry.hostOffset(entry) != 0) {
                    throw new RefusedRequestException(filename, RefusedRequestException.Reason.CONFLICT,
                            "a compressed write cannot overwrite the allocated cluster at guest offset " + offset);
                }
                int len = stream.remaining();
                long host = refcounts.allocateBytes(len);
                writeBytes(stream, host);
                dataEnd = Math.max(dataEnd, host + len);
                map.set(offset, L2Entry.compressed(host, len, geo.clusterBits()), 0);
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

    /**
     * QEMU's {@code qcow2_free_any_cluster}: gives back the host space an entry used. A data file's clusters have no
     * refcount: a discard passed through punches the cluster there at once (here: zeroes it).
     */
    private void release(long entry, RefcountTable.Discard type) throws IOException {
        SubclusterType t = clusterType(entry);
        if (hasDataFile) {
            if (type.passedThrough && (t == SubclusterType.NORMAL || t == SubclusterType.ZERO_ALLOC)) {
                dataStorage.zero(L2Entry.hostOffset(entry), clusterSize);
            }
            return;
        }
        switch (t) {
            case COMPRESSED -> {
                int bits = geo.clusterBits();
                refcounts.free(L2Entry.compressedOffset(entry, bits), L2Entry.compressedSize(entry, bits), type);
            }
            case NORMAL, ZERO_ALLOC -> refcounts.free(L2Entry.hostOffset(entry), clusterSize, type);
            default -> {
            }
        }
    }

    // ---------------------------------------------------------------------------------------------- zeroes and discard

    /**
     * The block layer's {@code bdrv_co_do_pwrite_zeroes}: the unaligned head (up to a subcluster boundary), the
     * aligned bulk and the unaligned tail each go to {@link #pwriteZeroes}; a piece it cannot do with zero flags is
     * written as zero data instead (at most {@code MAX_BOUNCE_BUFFER} bytes at a time).
     */
    void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        if (encryption != null && ((offset | length) & (Encryption.SECTOR - 1)) != 0) {
            // bdrv_co_do_zero_pwritev under the 512-byte request alignment of an encrypted image: the partial sectors
            // at the ends are written as data (read, merged, encrypted), the whole sectors between as zeros.
            long end = offset + length;
            long headEnd = Math.min(end, (offset + Encryption.SECTOR - 1) & -Encryption.SECTOR);
            if (headEnd > offset && (offset & (Encryption.SECTOR - 1)) != 0) {
                write(ByteBuffer.allocate((int) (headEnd - offset)), offset);
                offset = headEnd;
            }
            long tailStart = Math.max(offset, end & -Encryption.SECTOR);
            if (tailStart > offset) {
                writeZeroes(offset, tailStart - offset, mayUnmap);
            }
            if (end > tailStart) {
                write(ByteBuffer.allocate((int) (end - tailStart)), tailStart);
            }
            return;
        }
        long align = geo.subclusterSize();
        long head = offset % align;
        long tail = (offset + length) % align;
        boolean unmap = mayUnmap && header.version() >= 3; // qcow2's supported_zero_flags
        while (length > 0) {
            long num = length;
            if (head != 0) {
                num = Math.min(Math.min(length, MAX_BOUNCE_BUFFER), align - head);
                head = (head + num) % align;
            } else if (tail != 0 && num > align) {
                num -= tail;
            }
            if (!pwriteZeroes(offset, num, unmap)) {
                num = Math.min(num, MAX_BOUNCE_BUFFER);
                write(ByteBuffer.allocate((int) num), offset);
            }
            offset += num;
            length -= num;
            writeBackIfOverfull(); // a long range may dirty more tables than the cache holds
        }
    }

    /**
     * QEMU's {@code qcow2_co_pwrite_zeroes}: a piece that is not subcluster aligned is done with zero flags only if
     * the rest of its subcluster reads as zeros and is unallocated or zero already; false means "not supported here"
     * (the caller writes zero data).
     */
    private boolean pwriteZeroes(long offset, long bytes, boolean unmap) throws IOException {
        long sub = geo.subclusterSize();
        long head = offset % sub;
        long end = offset + bytes;
        long tail = (end + sub - 1) / sub * sub - end;
        if (end == image.size()) {
            tail = 0;
        }
        if (head != 0 || tail != 0) {
            if (!(image.readsAsZero(offset - head, head) && image.readsAsZero(end, tail))) {
                return false;
            }
            offset -= head;
            bytes = sub;
            SubclusterType t = mapping(offset, geo.subclusterIndex(offset)).type();
            if (t != SubclusterType.UNALLOCATED_PLAIN && t != SubclusterType.UNALLOCATED_ALLOC
                    && t != SubclusterType.ZERO_PLAIN && t != SubclusterType.ZERO_ALLOC) {
                return false;
            }
        }
        return zeroize(offset, bytes, unmap);
    }

    /**
     * QEMU's {@code qcow2_subcluster_zeroize}: zero flags (version 3; a version 2 image without backing file gets a
     * discard, one with a backing file cannot do it), partial clusters at the ends by their subcluster bits.
     */
    private boolean zeroize(long offset, long bytes, boolean unmap) throws IOException {
        if (rawDataFile) {
            // "If we have to stay in sync with an external data file, zero out s->data_file first."
            dataStorage.zero(offset, bytes);
            if (!unmap) {
                dataStorage.extendTo(offset + bytes); // a zero write that may not unmap allocates, past the end too
            }
        }
        if (header.version() < 3) {
            if (backing == null) {
                clusterDiscard(offset, bytes, RefcountTable.Discard.REQUEST, false);
                return true;
            }
            return false;
        }
        long end = offset + bytes;
        long head = Math.min(end, (offset + clusterSize - 1) & ~(clusterSize - 1)) - offset;
        offset += head;
        long tail = end >= image.size() ? 0 : end - Math.max(offset, geo.startOfCluster(end));
        end -= tail;
        long sub = geo.subclusterSize();
        try {
            if (head != 0 && !zeroSubclusters(offset - head, (int) ((head + sub - 1) / sub))) {
                return false;
            }
            for (long n = geo.sizeToClusters(end - offset); n > 0; ) {
                long cleared = zeroInL2Table(offset, n, unmap);
                n -= cleared;
                offset += cleared * clusterSize;
            }
            return tail == 0 || zeroSubclusters(end, (int) ((tail + sub - 1) / sub));
        } finally {
            refcounts.processDiscards();
        }
    }

    /** QEMU's {@code zero_l2_subclusters}: the zero bits of {@code count} subclusters of one (not compressed) cluster. */
    private boolean zeroSubclusters(long offset, int count) throws IOException {
        if (noTableNeeded(offset, false)) {
            return true;
        }
        long l2 = ensureTable(offset);
        long[] table = map.table(l2);
        int index = geo.l2Index(offset);
        long entry = entryAt(table, index);
        if (L2Entry.clusterType(entry, true, false) == SubclusterType.COMPRESSED) {
            return false; // "We cannot partially zeroize compressed clusters"
        }
        int sc = geo.subclusterIndex(offset);
        long bits = L2Entry.subclusterBits(sc, sc + count - 1);
        long old = bitmapAt(table, index);
        long bitmap = (old | L2Entry.zeroBits(bits)) & ~bits;
        if (bitmap != old) {
            map.set(offset, entry, bitmap);
        }
        return true;
    }

    /** QEMU's {@code zero_in_l2_slice}: zero flags for up to {@code n} clusters of one L2 table; returns how many. */
    private long zeroInL2Table(long offset, long n, boolean mayUnmap) throws IOException {
        int index = geo.l2Index(offset);
        if (noTableNeeded(offset, false)) {
            return Math.min(n, geo.l2Entries() - index);
        }
        long l2 = ensureTable(offset);
        n = Math.min(n, geo.l2Entries() - index);
        boolean ext = geo.extendedL2();
        for (int i = 0; i < n; i++) {
            long[] table = map.table(l2);
            long old = entryAt(table, index + i);
            long oldBitmap = bitmapAt(table, index + i);
            SubclusterType t = clusterType(old);
            boolean unmap = t == SubclusterType.COMPRESSED || (mayUnmap && isAllocated(t));
            long entry = unmap ? 0 : old;
            long bitmap = oldBitmap;
            if (ext) {
                bitmap = L2Entry.BITMAP_ALL_ZERO;
            } else {
                entry |= L2Entry.ZERO;
            }
            if (entry == old && bitmap == oldBitmap) {
                continue;
            }
            map.set(offset + i * clusterSize, entry, bitmap);
            if (unmap) {
                release(old, RefcountTable.Discard.REQUEST);
            }
        }
        return n;
    }

    /**
     * Without {@link OpenOptions#qemuLayout}: whether a zero write or discard can leave the L2 range of {@code offset}
     * alone because it has no table and nothing below shows through (or, with {@code full}, everything stays
     * unallocated anyway). QEMU allocates a table there all the same, and sets zero flags.
     */
    private boolean noTableNeeded(long offset, boolean full) {
        return !qemuLayout && map.l2Offset(geo.l1Index(offset)) == 0
                && (full || backing == null || offset >= backing.size());
    }

    /** QEMU's {@code qcow2_get_cluster_type}: offset 0 with COPIED is a data file's first cluster. */
    private SubclusterType clusterType(long entry) {
        return L2Entry.clusterType(entry, geo.extendedL2(), hasDataFile);
    }

    /** QEMU's {@code qcow2_cluster_is_allocated}. */
    private static boolean isAllocated(SubclusterType clusterType) {
        return clusterType == SubclusterType.COMPRESSED || clusterType == SubclusterType.NORMAL
                || clusterType == SubclusterType.ZERO_ALLOC;
    }

    /**
     * A guest discard, as the block layer's {@code bdrv_co_pdiscard} splits it (head and tail pieces up to cluster
     * boundaries) and QEMU's {@code qcow2_co_pdiscard} does each piece: only whole clusters (and the partial last
     * cluster of the disk); nothing at all in a version 2 image with a backing file, which has no zero flag to hide
     * the backing data (QEMU returns {@code -ENOTSUP}, which the block layer ignores).
     */
    void discard(long offset, long length) throws IOException {
        long head = offset % clusterSize;
        long tail = (offset + length) % clusterSize;
        while (length > 0) {
            long num = length;
            if (head != 0) {
                num = Math.min(length, clusterSize - head);
                head = (head + num) % clusterSize;
            } else if (tail != 0 && num > clusterSize) {
                num -= tail;
            }
            pdiscard(offset, num);
            offset += num;
            length -= num;
            writeBackIfOverfull(); // a long range may dirty more tables than the cache holds
        }
    }

    private void pdiscard(long offset, long bytes) throws IOException {
        if (header.version() < 3 && backing != null) {
            return;
        }
        if (((offset | bytes) & (clusterSize - 1)) != 0
                && ((offset & (clusterSize - 1)) != 0 || offset + bytes != image.size())) {
            return;
        }
        clusterDiscard(offset, bytes, RefcountTable.Discard.REQUEST, false);
    }

    /** Frees {@code length} bytes at {@code offset} without discarding them (QEMU's {@code QCOW2_DISCARD_OTHER}). */
    void freeKept(long offset, long length) throws IOException {
        refcounts.free(offset, length, RefcountTable.Discard.OTHER);
    }

    /**
     * QEMU's {@code qcow2_expand_zero_clusters} (for {@code qcow2_downgrade}; the caller refuses images with extended
     * L2 entries): {@code expand_zero_clusters_in_l1} over the active L1 table, then over each internal snapshot's, in
     * the table's order. A zero cluster without host cluster becomes unallocated when there is no backing file, else
     * a new cluster written with zeros (counted as often as its L2 table is shared); a preallocated zero cluster has
     * its host cluster written with zeros; either then maps as data (COPIED when its L2 table is not shared). A table
     * shared by the active L1 and a snapshot's has been expanded by the time the snapshot's turn comes, as in QEMU
     * (which writes the active tables back first and reads the snapshots' from the file). {@code visited} is told of
     * each L1 entry done, counting through the active table and then the snapshots'.
     */
    void expandZeroClusters(java.util.function.IntConsumer visited) throws IOException {
        if (encryption != null) {
            throw new UnsupportedFeatureException(filename, "expanding the zero clusters of an encrypted image");
        }
        int[] done = {0};
        expandZeroClustersInL1(map.l1Copy(), visited, done);
        for (org.qcow4j.format.Snapshot sn : image.snapshots()) {
            SnapshotL1Table.validate(filename, sn.id(), sn.l1TableOffset(), Integer.toUnsignedLong(sn.l1Size()), geo,
                    storage.length());
            long bytes = sn.l1Size() * 8L;
            long[] l1 = new long[sn.l1Size()];
            if (l1.length > 0) {
                storage.read(sn.l1TableOffset(), (int) bytes).order(java.nio.ByteOrder.BIG_ENDIAN).asLongBuffer().get(l1);
            }
            expandZeroClustersInL1(l1, visited, done);
        }
    }

    /**
     * QEMU's {@code qcow2_downgrade} before its checks, for an image that stays open while its header becomes version 2
     * (an amend of an image with persistent bitmaps): the image marked clean, its lazy refcounts written, and lazy
     * refcounts no longer used, as QEMU clears the dirty bit and the compatible features (a version 2 header has no
     * dirty bit, and nothing may write one at the close).
     */
    void leaveLazyRefcounts() throws IOException {
        flush();
        if (lazy) {
            markClean();
            lazy = false;
        }
    }

    /**
     * {@link #expandZeroClusters} for a downgrade of an image that stays open ({@link #leaveLazyRefcounts} first):
     * everything durable before the caller writes the version 2 header, which must not name tables that still hold
     * zero clusters ({@code qcow2_cache_empty} before {@code qcow2_update_header}).
     */
    void expandZeroClustersForDowngrade(java.util.function.IntConsumer visited) throws IOException {
        expandZeroClusters(visited);
        flush();
    }

    /** QEMU's {@code expand_zero_clusters_in_l1} over one L1 table's entries. */
    private void expandZeroClustersInL1(long[] l1, java.util.function.IntConsumer visited, int[] done)
            throws IOException {
        int entries = geo.l2Entries();
        for (long l1Entry : l1) {
            long l2 = L1Entry.l2Offset(l1Entry);
            if (l2 != 0) {
                if (geo.offsetInCluster(l2) != 0) {
                    throw new org.qcow4j.FormatException(filename, "L1 entry", org.qcow4j.FormatException.hex(l1Entry),
                            "L2 table offset not aligned to the cluster size");
                }
                long l2Refcount = refcounts.refcount(l2 >>> geo.clusterBits());
                long[] table = map.table(l2);
                boolean updating = false;
                for (int j = 0; j < entries; j++) {
                    long entry = table[j];
                    SubclusterType type = L2Entry.clusterType(entry, false, false);
                    if (type != SubclusterType.ZERO_PLAIN && type != SubclusterType.ZERO_ALLOC) {
                        continue;
                    }
                    if (!updating) {
                        table = map.tableForUpdate(l2);
                        updating = true;
                    }
                    long host = L2Entry.hostOffset(entry);
                    if (type == SubclusterType.ZERO_PLAIN) {
                        if (backing == null) {
                            table[j] = 0;
                            continue;
                        }
                        host = refcounts.allocate(1);
                        for (long r = 1; r < l2Refcount; r++) { // a shared table: the cluster counted as often
                            refcounts.addReference(host, clusterSize);
                        }
                    }
                    writeData(ByteBuffer.allocate((int) clusterSize), host);
                    dataEnd = Math.max(dataEnd, host + clusterSize);
                    table[j] = l2Refcount == 1 ? host | L2Entry.COPIED : host;
                }
            }
            visited.accept(++done[0]);
        }
    }

    /**
     * {@code qcow2_make_empty}'s fallback: {@code qcow2_cluster_discard} over the whole disk, in steps of INT_MAX
     * rounded down to clusters, with {@code QCOW2_DISCARD_SNAPSHOT} and in full (entries unallocated, clusters freed
     * and punched).
     */
    void discardAllInFull() throws IOException {
        long step = (Integer.MAX_VALUE / clusterSize) * clusterSize;
        long end = image.size();
        for (long offset = 0; offset < end; offset += step) {
            clusterDiscard(offset, Math.min(step, end - offset), RefcountTable.Discard.SNAPSHOT, true);
        }
    }

    /**
     * QEMU's {@code qcow2_cluster_discard}: with {@code full} the entries become unallocated (a truncation), otherwise
     * they read as zeros where the cluster was allocated or a backing file exists (zero flag, or with extended L2
     * zero bits; unallocated in version 2). Every L2 table of the range is allocated first, as QEMU does.
     */
    private void clusterDiscard(long offset, long bytes, RefcountTable.Discard type, boolean full) throws IOException {
        try {
            for (long n = geo.sizeToClusters(bytes); n > 0; ) {
                long cleared = discardInL2Table(offset, n, type, full);
                n -= cleared;
                offset += cleared * clusterSize;
            }
        } finally {
            refcounts.processDiscards();
        }
    }

    /** QEMU's {@code discard_in_l2_slice}. */
    private long discardInL2Table(long offset, long n, RefcountTable.Discard type, boolean full) throws IOException {
        int index = geo.l2Index(offset);
        if (noTableNeeded(offset, full)) {
            return Math.min(n, geo.l2Entries() - index);
        }
        long l2 = ensureTable(offset);
        n = Math.min(n, geo.l2Entries() - index);
        boolean ext = geo.extendedL2();
        for (int i = 0; i < n; i++) {
            long[] table = map.table(l2);
            long old = entryAt(table, index + i);
            long oldBitmap = bitmapAt(table, index + i);
            long entry = old;
            long bitmap = oldBitmap;
            if (full) {
                entry = 0;
                bitmap = 0;
            } else if (backing != null || isAllocated(clusterType(old))) {
                if (ext) {
                    entry = 0;
                    bitmap = L2Entry.BITMAP_ALL_ZERO;
                } else {
                    entry = header.version() >= 3 ? L2Entry.ZERO : 0;
                }
            }
            if (entry == old && bitmap == oldBitmap) {
                continue;
            }
            map.set(offset + i * clusterSize, entry, bitmap);
            release(old, type);
        }
        return n;
    }

    // ---------------------------------------------------------------------------------------------- resize

    /**
     * Changes the virtual size as QEMU's {@code qcow2_co_truncate} does, and without {@link OpenOptions#qemuLayout}
     * also zeroes what QEMU leaves showing: the old content of the last cluster past the old end (after a shrink to a size that is not
     * a multiple of the cluster size), and, in a version 2 image, a longer backing file.
     *
     * <p>QEMU: shrinking discards the clusters past the new end (their L2 tables allocated first), drops the L2
     * tables past the new L1 size (the L1 table keeps its size, the entries become 0), drops refcount blocks that
     * count only themselves and cuts the file after its last used cluster. Growing moves the L1 table to one of the
     * exact new size, and only when the backing file is longer than the old size (the block layer's
     * {@code BDRV_REQ_ZERO_WRITE}) gives the new clusters zero flags (zero data for the rest of the old last
     * subcluster). A version 2 image cannot do that: QEMU fails after growing the L1 table, and so does this with
     * {@link OpenOptions#qemuLayout}.
     */
    void resize(long newSize) throws IOException {
        resize(newSize, CreateOptions.Preallocation.OFF);
    }

    /**
     * {@link #resize(long)} with QEMU's preallocation of the new part when growing: {@code METADATA} maps it to new
     * clusters (L2 entries, refcounts) without writing them, the file extended to the last one, as QEMU's
     * {@code preallocate_co}; {@code FALLOC} and {@code FULL} also allocate the data clusters in one run after new
     * refcount structures ({@link #preallocateData}). With an external data file they are refused by name.
     */
    void resize(long newSize, CreateOptions.Preallocation prealloc) throws IOException {
        boolean zeroTail = !qemuLayout;
        long oldSize = image.size();
        boolean dataPrealloc = prealloc == CreateOptions.Preallocation.FALLOC
                || prealloc == CreateOptions.Preallocation.FULL;
        if (dataPrealloc && hasDataFile) {
            throw new UnsupportedFeatureException(filename, "preallocation=" + prealloc.name().toLowerCase()
                    + " when resizing a qcow2 image with an external data file");
        }
        if (encryption != null && prealloc != CreateOptions.Preallocation.OFF) {
            // preallocated clusters hold the file's zeros, which an encrypted image would read as noise
            throw new UnsupportedFeatureException(filename, "preallocation=" + prealloc.name().toLowerCase()
                    + " when resizing an encrypted image");
        }
        if (newSize < 0 || (newSize & 511) != 0) {
            throw new QcowException(filename, "the new size must be a multiple of 512 (" + newSize + ")", null,
                    "The new size must be a multiple of 512");
        }
        bitmaps.checkResize();
        if (!image.snapshots().isEmpty() && header.version() < 3) {
            // "Even though we store snapshot size for all images, it was not required until v3"
            throw new UnsupportedFeatureException(filename, "resizing a version 2 image with internal snapshots",
                    "Can't resize a v2 image which has snapshots");
        }
        long entries = geo.l1EntriesFor(newSize);
        if (entries > L1Entry.MAX_ENTRIES) {
            throw new QcowException(filename, "new size " + newSize + " needs an L1 table larger than QEMU's 32 MiB limit",
                    null, "Failed to grow the L1 table: File too large");
        }
        if (newSize < oldSize && prealloc != CreateOptions.Preallocation.OFF) {
            throw new QcowException(filename, "preallocation cannot be used for shrinking an image", null,
                    "Preallocation can't be used for shrinking an image");
        }
        if (newSize < oldSize) {
            long keep = (newSize + clusterSize - 1) & ~(clusterSize - 1);
            if (oldSize > keep) {
                clusterDiscard(keep, oldSize - keep, RefcountTable.Discard.ALWAYS, true);
            }
            for (int i = (int) entries; i < map.l1Size(); i++) {
                map.dropTable(i, refcounts);
            }
            refcounts.processDiscards();
            image.setSize(newSize);
            flush(); // the decrements applied: the refcounts below are QEMU's
            if (refcounts.shrinkTable()) {
                flush();
            }
            long last = refcounts.lastUsedCluster(storage.length());
            if (last >= 0 && (last + 1) * clusterSize < storage.length()) {
                storage.truncate((last + 1) * clusterSize);
                refcounts.truncated(last + 1);
                if (!hasDataFile) {
                    dataEnd = Math.min(dataEnd, (last + 1) * clusterSize);
                }
            }
            if (hasDataFile) {
                setDataFileLength(newSize);
            }
        } else if (newSize > oldSize) {
            if (entries > map.l1Size()) {
                growL1((int) entries);
            }
            if (rawDataFile || prealloc == CreateOptions.Preallocation.METADATA) {
                // QEMU's truncation preallocates the metadata for a raw data file, and when asked to
                preallocate(oldSize, newSize);
            }
            if (hasDataFile && !rawDataFile) {
                setDataFileLength(newSize);
            }
            // The block layer asks for zeros only when the backing file would show through (BDRV_REQ_ZERO_WRITE).
            boolean zeroWrite = backing != null && backing.size() > oldSize;
            if (dataPrealloc) {
                // the file's truncation zeroes the new clusters, which then read as such (and are marked allocated)
                preallocateData(oldSize, newSize, !zeroWrite);
                zeroWrite = false;
            }
            boolean zeroed = zeroWrite;
            long sub = geo.subclusterSize();
            long zeroStart = (oldSize + sub - 1) / sub * sub;
            if (zeroWrite && newSize > zeroStart && !zeroize(zeroStart, newSize - zeroStart, false)) {
                if (!zeroTail) {
                    flush();
                    throw new UnsupportedFeatureException(filename, "zero flags in a version 2 image (growing it over"
                            + " a longer backing file needs them)");
                }
                zeroed = false;
            }
            if (zeroWrite && zeroStart > oldSize) {
                write(ByteBuffer.allocate((int) (Math.min(zeroStart, newSize) - oldSize)), oldSize);
            }
            image.setSize(newSize);
            if (zeroTail && !zeroed) {
                long zeroEnd = Math.min(newSize, (oldSize + clusterSize - 1) & ~(clusterSize - 1));
                if (zeroWrite) {
                    zeroEnd = Math.max(zeroEnd, Math.min(newSize, backing.size()));
                }
                if (zeroEnd > oldSize) {
                    writeZeroes(oldSize, zeroEnd - oldSize, false);
                }
            }
        }
        flush();
        storage.writeFully(ByteBuffer.allocate(8).putLong(0, newSize), Header.SIZE_AT);
        storage.force();
        bitmaps.resized(newSize);
    }

    /**
     * The data file cut or grown to {@code length}, as QEMU's truncation of an image with a data file truncates that
     * (exactly: a regular file always takes the size asked for).
     */
    private void setDataFileLength(long length) throws IOException {
        if (dataStorage.length() > length) {
            dataStorage.truncate(length);
        } else {
            dataStorage.extendTo(length);
        }
        dataEnd = Math.min(dataEnd, length);
    }

    /**
     * QEMU's {@code preallocate_co} for metadata, which its truncation also runs for a raw data file: the range mapped
     * to new clusters in {@code qcow2_alloc_host_offset}'s runs (at most INT_MAX bytes each; with a raw data file, the
     * data file's clusters at the guest offsets), linked without their data being written (with extended L2 entries no
     * subcluster is marked allocated: QEMU's {@code prealloc} meta), only the copy-on-write regions at the ends
     * written; then the file holding the data extended to the end of the last run.
     */
    private void preallocate(long offset, long end) throws IOException {
        long maxRun = Integer.MAX_VALUE / clusterSize * clusterSize;
        long host = 0;
        long run = 0;
        long fileEnd = 0;
        List<Long> replaced = new ArrayList<>();
        for (long bytes = end - offset; bytes > 0; bytes -= run, offset += run) {
            List<Meta> metas = new ArrayList<>();
            Span s = allocHostOffset(offset, Math.min(bytes, maxRun), metas);
            if (s.bytes <= 0) {
                throw new IllegalStateException("no clusters allocated at " + offset);
            }
            host = s.host;
            run = s.bytes;
            for (Meta m : metas) { // QEMU's perform_cow without guest data: each region on its own
                ByteBuffer head = cow(m, m.cowStartFrom(), m.cowStartTo());
                ByteBuffer tail = cow(m, m.cowEndFrom(), m.cowEndTo());
                if (head != null) {
                    writeData(head, m.alloc() + m.cowStartFrom());
                }
                if (tail != null) {
                    writeData(tail, m.alloc() + m.cowEndFrom());
                }
                // QEMU's perform_cow writes the regions even as zeros: the file reaches their end
                if (m.cowEndTo() > m.cowEndFrom()) {
                    fileEnd = Math.max(fileEnd, m.alloc() + m.cowEndTo());
                } else if (m.cowStartTo() > m.cowStartFrom()) {
                    fileEnd = Math.max(fileEnd, m.alloc() + m.cowStartTo());
                }
                link(m, replaced, true);
            }
            writeBackIfOverfull();
        }
        for (long entry : replaced) {
            release(entry, RefcountTable.Discard.NEVER);
        }
        fileEnd = Math.max(fileEnd, host + run);
        dataEnd = Math.max(dataEnd, fileEnd);
        dataStorage.extendTo(dataEnd);
    }

    /**
     * QEMU's falloc and full preallocation of a grown qcow2 image ({@code qcow2_co_truncate}): refcount structures
     * covering the new data clusters and their L2 tables made after the file's last used cluster
     * ({@code qcow2_refcount_area}, exact), the data clusters allocated right after them, the file extended over
     * them, then the clusters linked from the old size's cluster on (that one's head copied), L2 table by L2 table;
     * a {@code prealloc} link marks no extended-L2 subcluster allocated. The file's new part is written as zeros, so
     * its disk blocks are allocated as QEMU's falloc and full allocate them (the JDK has no fallocate).
     */
    private void preallocateData(long oldSize, long newSize, boolean prealloc) throws IOException {
        long fileLength = storage.length();
        long last = refcounts.lastUsedCluster(fileLength);
        long oldFileClusters = last >= 0 ? last + 1 : (fileLength + clusterSize - 1) / clusterSize;
        long dataClusters = (((newSize + clusterSize - 1) & ~(clusterSize - 1)) - geo.startOfCluster(oldSize)) / clusterSize;
        long l2Tables = (dataClusters + geo.l2Entries() - 1) / geo.l2Entries() + 1;
        flush();
        long start = refcounts.refcountArea(oldFileClusters, dataClusters + l2Tables, true, -1, 0);
        if (refcounts.allocateAt(start * clusterSize, dataClusters) != dataClusters) {
            throw new IllegalStateException("the new refcount area's end is not free at cluster " + start);
        }
        long host = start * clusterSize;
        long newFileSize = host + dataClusters * clusterSize;
        dataEnd = Math.max(dataEnd, newFileSize);
        storage.allocateZeros(newFileSize);
        List<Long> replaced = new ArrayList<>();
        long guest = oldSize;
        for (long left = dataClusters; left > 0; ) {
            long n = Math.min(left, geo.l2Entries() - geo.l2Index(guest));
            long head = geo.offsetInCluster(guest);
            Meta m = new Meta(host, geo.startOfCluster(guest), n, false, 0, head, n * clusterSize, n * clusterSize, false);
            ByteBuffer old = cow(m, 0, head);
            if (old != null) {
                writeData(old, host);
            }
            link(m, replaced, prealloc);
            guest = m.guest() + n * clusterSize;
            host += n * clusterSize;
            left -= n;
            writeBackIfOverfull();
        }
        for (long entry : replaced) {
            release(entry, RefcountTable.Discard.NEVER);
        }
    }

    /**
     * QEMU's {@code qcow2_grow_l1_table} to {@code entries}: the tables flushed, the new table's clusters allocated and
     * exactly its entries written (the rest of its last cluster is left as it was), then the header, then the old
     * table freed.
     */
    void growL1(int entries) throws IOException {
        flush();
        long oldOffset = map.l1Offset();
        long oldBytes = map.l1Size() * 8L;
        long clusters = geo.sizeToClusters(entries * 8L);
        long offset = refcounts.allocate(clusters);
        writeRefcounts();
        long[] table = map.grownL1(entries);
        ByteBuffer out = ByteBuffer.allocate(entries * 8);
        out.asLongBuffer().put(table);
        storage.writeFully(out, offset);
        storage.force();
        storage.writeFully(ByteBuffer.allocate(12).putInt(entries).putLong(offset).flip(), Header.L1_SIZE_AT);
        storage.force();
        map.replaceL1(table, offset);
        refcounts.unmarkMetadata(oldOffset, geo.sizeToClusters(oldBytes));
        refcounts.markMetadata(offset, clusters, "new L1 table");
        if (oldBytes > 0) {
            refcounts.free(oldOffset, oldBytes, RefcountTable.Discard.OTHER);
        }
    }

    // ---------------------------------------------------------------------------------------------- write-back

    private void writeBackIfOverfull() throws IOException {
        if (map.overfull()) {
            flush();
        }
    }

    RefcountTable refcounts() {
        return refcounts;
    }

    /**
     * Stops the image taking writes and makes {@code close()} write nothing (see the class comment): a snapshot
     * operation failed half way, and the file keeps its last flushed state.
     */
    void breakWith(QcowException e) {
        if (broken == null) {
            broken = e;
        }
    }

    /**
     * A flush that lowers the refcounts of what was freed before it writes the tables: for snapshot operations, whose
     * frees concern clusters that the metadata on disk no longer reaches (a snapshot already gone from the table, an L1
     * table already replaced), and whose tables gain COPIED flags that must not reach the disk before the refcount of
     * 1 they stand for.
     */
    void flushFreesFirst() throws IOException {
        forceData();
        if (refcounts.hasPendingFrees()) {
            refcounts.applyFrees();
        }
        flush();
    }

    /**
     * A flush that writes the L2 tables and L1 entries before the refcount blocks: for a snapshot taking references,
     * whose table changes only clear COPIED flags (no new reference) while the refcounts rise. A crash between the
     * two leaves a cluster counted once without its flag, which costs a needless copy at most; the other order
     * would leave a flag on a cluster counted twice.
     */
    void flushTablesFirst() throws IOException {
        forceData();
        if (map.dirty()) {
            map.writeTables();
            storage.force();
            if (map.hasDirtyL1()) {
                map.writeL1();
                storage.force();
            }
        }
        flush();
    }

    /**
     * QEMU's {@code get_cluster_table} ({@link ClusterMap#ensureTable}), which first grows the L1 table when
     * {@code guest} lies past it (only the VM state area does). With lazy refcounts a new table's refcount
     * still reaches the file at once, with every other refcount counted so far: QEMU's {@code l2_allocate} flushes
     * its refcount cache right after allocating the table, so after a crash the tables are counted and only the
     * data clusters since may not be (what {@code qemu-img check} then reports, and the repair on open fixes).
     */
    private long ensureTable(long guest) throws IOException {
        long index = geo.l1Index(guest);
        if (index >= map.l1Size()) {
            growL1((int) grownL1Size(map.l1Size(), index + 1)); // a VM state write (writeVmState checked the size)
        }
        long l1 = map.l1Entry((int) index);
        boolean allocates = L1Entry.l2Offset(l1) == 0 || (l1 & L1Entry.COPIED) == 0;
        long table;
        try {
            table = map.ensureTable(guest, refcounts);
        } catch (CorruptionException e) {
            if (!e.field().equals("refcount of cluster 0")) {
                throw e;
            }
            // the header's cluster counted free: QEMU hands it out for the table, and then stops
            throw new CorruptionException(filename, e.field(), e.value(), "a new L2 table would overwrite the header",
                    "Preventing invalid allocation of L2 table at offset 0");
        }
        if (lazy && allocates) {
            markDirty(); // (QEMU sets it later in the request; first, a crash in between leaves no leak unrepaired)
            writeRefcounts();
        }
        return table;
    }

    /** Makes everything written so far durable, in the order described above. */
    void flush() throws IOException {
        forceData(); // data before the tables that point at it
        if (!map.dirty() && !refcountsChanged()) {
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

    /** Whether refcount blocks, table entries or frees wait for a flush. */
    private boolean refcountsChanged() {
        return refcounts.hasDirtyBlocks() || refcounts.hasDirtyEntries() || refcounts.hasPendingFrees();
    }

    /** Guest data durable, and every new cluster in the file that holds it. */
    private void forceData() throws IOException {
        dataStorage.extendTo(dataEnd);
        dataStorage.force();
        if (hasDataFile) {
            storage.force();
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
        if (storage.read(4, 4).getInt(0) < 3) {
            return; // a version 2 header (a downgrade has just written one) has no such field: offset 72 is its extensions'
        }
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

    /** The image's persistent dirty bitmaps. */
    PersistentBitmaps bitmaps() {
        return bitmaps;
    }

    private void closeClean() throws IOException {
        try {
            bitmaps.store(); // QEMU's qcow2_inactivate: the bitmaps first, then the caches
        } finally {
            boolean blocks = refcountsChanged();
            try {
                flush();
            } catch (InvalidTableException e) {
                // The inactive-L2 overlap check refused the last writes (InactiveL2Check). It refuses every write, so
                // in QEMU no L2 table got into its cache dirty: what it cannot write at close, and reports, is the
                // refcount block an allocation dirtied before its first checked write failed.
                throw new QcowException(filename, "the last flush failed: " + e.getMessage(), e,
                        blocks ? "Failed to flush the refcount block cache: " + e.reason().strerror() : null);
            }
        }
        if (lazy) {
            markClean();
        }
    }

    /** Lazy refcounts, after a flush: the refcounts written, then the dirty bit cleared (QEMU's qcow2_mark_clean). */
    private void markClean() throws IOException {
        writeRefcounts();
        if (dirtyBitSet) {
            setIncompatible(header.incompatibleFeatures() & ~Feature.DIRTY.mask());
            dirtyBitSet = false;
        }
    }
}
