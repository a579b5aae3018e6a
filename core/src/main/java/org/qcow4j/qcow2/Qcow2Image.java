package org.qcow4j.qcow2;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.CorruptionException;
import org.qcow4j.FormatException;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.Qcow2Metadata;
import org.qcow4j.QcowException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.VmState;
import org.qcow4j.WritableImage;
import org.qcow4j.WriteRefusedException;
import org.qcow4j.format.Bitmap;
import org.qcow4j.format.ClusterGeometry;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.format.L1Entry;
import org.qcow4j.format.L2Entry;
import org.qcow4j.format.Snapshot;
import org.qcow4j.format.SubclusterType;
import org.qcow4j.io.Access;
import org.qcow4j.io.FileStorage;
import org.qcow4j.io.OpenFile;
import org.qcow4j.io.OpenFiles;
import org.qcow4j.io.ImageChannel;
import org.qcow4j.io.Zeros;
import org.qcow4j.raw.WritableRawImage;

/**
 * A qcow2 image: the header, the cluster mapping ({@link ClusterMap}: the active L1 table, loaded whole and bounded by
 * QEMU's 32 MiB limit and the file length, and L2 tables through a bounded cache), and the backing chain.
 * Everything read from the file is validated before it is used to size or address anything. Opened for writing
 * ({@link Images#openWritable}), a {@link Qcow2Updater} does the writes under this image's write lock.
 */
public final class Qcow2Image implements WritableImage, Qcow2Metadata {
    private final String filename;
    private final FileStorage storage;
    /**
     * Where guest data clusters live: the image's own storage, its external data file, or null for an external data
     * file left closed (opened for metadata only, {@link OpenOptions#noIo}); so {@code dataStorage != storage} tells an
     * image with an external data file.
     */
    private final FileStorage dataStorage;
    private final Header header;
    private final ClusterGeometry geo;
    private final ClusterMap map;
    private final List<Snapshot> snapshots;
    private final List<Bitmap> bitmaps;
    private final DiskImage backing;
    private final String backingFilename;
    /** The payload cipher of an encrypted image, else null. */
    private final Encryption encryption;
    private final ConcurrentLinkedQueue<CompressedReader> compressedReaders = new ConcurrentLinkedQueue<>();
    private volatile long virtualSize;
    /** Whether {@link #preallocation} was looked at yet (once, on the first data extent asked for, as QEMU does). */
    private volatile boolean preallocationChecked;
    private volatile MetadataPreallocation preallocation;
    /** Set once by {@link #openWritable}; null for an image opened read-only. */
    private Qcow2Updater writes;
    /** The bitmaps of an image opened read-only, loaded when first asked for. */
    private PersistentBitmaps readOnlyBitmaps;
    private final List<String> warnings = new java.util.ArrayList<>();
    /** The lines of the repair made on open (a dirty image), as {@code check -r} prints them. */
    private final List<String> repairDiagnostics = new java.util.ArrayList<>();
    /** Readers share it, writers (and flush, resize, close) hold it alone; used only when opened for writing. */
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();

    /** The VM state area, read and written past the disk: see {@link VmState}. */
    private final VmState vmState = new VmStateArea();

    /** The mapping of a run of guest bytes in this layer alone. */
    private record Run(SubclusterType type, long hostOffset, long length, long entry) {
    }

    private Qcow2Image(String filename, FileStorage storage, Header header, long[] l1, List<Snapshot> snapshots,
                       List<Bitmap> bitmaps, FileStorage dataStorage, OpenOptions options,
                       DiskImage backing, String backingFilename, Encryption encryption) {
        this.filename = filename;
        this.encryption = encryption;
        this.storage = storage;
        this.header = header;
        this.geo = header.geometry();
        this.map = new ClusterMap(storage, geo, l1, header.l1TableOffset(), options.l2CacheBytes());
        this.virtualSize = header.virtualSize();
        this.snapshots = snapshots;
        this.bitmaps = bitmaps;
        this.dataStorage = dataStorage;
        this.backing = backing;
        this.backingFilename = backingFilename;
    }

    /**
     * Opens the qcow2 image in {@code storage}; its data file and backing files are opened through {@code chain}.
     * On failure the caller closes {@code storage}; anything opened here is closed here.
     */
    static Qcow2Image open(FileStorage storage, String filename, ChainOpener chain, int depth) throws IOException {
        long length = storage.length();
        Header h = readHeader(storage, filename);
        long[] l1 = readL1(storage, h, filename);
        // No lambda on the way of an open (here, in ClusterMap and in close): the first one a JVM links sets up
        // java.lang.invoke, 5-10 ms of a short command such as info or map
        Snapshot.Reader reads = new Reads(storage);
        List<Snapshot> snapshots = Snapshot.readTable(h, reads, filename, length);
        List<Bitmap> bitmaps = h.bitmaps() != null && h.has(Feature.BITMAPS)
                ? Bitmap.readDirectory(h.bitmaps(), reads, filename, length) : List.of();

        OpenOptions o = chain.options();
        Encryption encryption = Encryption.open(storage, h, filename,
                depth == 0 ? o.passphrase() : depth == 1 ? o.backingPassphrase() : null, !o.openBacking() || o.noIo());
        FileStorage data;
        try {
            data = chain.openDataFile(h, storage, filename, depth);
        } catch (IOException | RuntimeException e) {
            if (encryption != null) {
                encryption.close();
            }
            throw e;
        }
        try {
            String backingName = h.backingFile() == null ? null : ChainOpener.resolveRelative(filename, h.backingFile());
            DiskImage backing = backingName == null || !chain.options().openBacking() ? null
                    : chain.open(backingName, depth == 0 && chain.options().backingFormat() != null
                            ? chain.options().backingFormat() : h.backingFormat(), depth + 1, filename);
            return new Qcow2Image(filename, storage, h, l1, snapshots, bitmaps, data, chain.options(),
                    backing, backingName, encryption);
        } catch (IOException | RuntimeException e) {
            if (data != storage && data != null) {
                data.close();
            }
            if (encryption != null) {
                encryption.close();
            }
            throw e;
        }
    }

    /**
     * Opens {@code path} for writing: see {@link Images#openWritable}. Refuses what this writer does not maintain
     * before anything is written; persistent bitmaps are loaded and flagged in use, an external data file is opened
     * for writing too.
     */
    @SuppressWarnings("try") // the hold is there only for its locks
    public static WritableImage openWritable(Path path, OpenOptions options) throws IOException {
        if (options.forceShare()) {
            throw new QcowException(path.toString(), "force-share=on can only be used with read-only images");
        }
        if (!options.openBacking()) {
            // a write would copy zeros where the backing file has data
            throw new QcowException(path.toString(), "an image opened for writing needs its backing chain");
        }
        // QEMU's write locks are taken first and held until the image is open, so nothing slips in between.
        try (OpenFile hold = OpenFiles.open(path, Access.WRITE, path.toString())) {
            return openHeld(path, options);
        }
    }

    /**
     * See {@link Images#openSnapshot}: QEMU's {@code bdrv_snapshot_load_tmp} ({@code qcow2_snapshot_load_tmp}). The
     * image opens read-only, then reads through the snapshot's L1 table instead of the active one; its size stays the
     * image's, as in QEMU (qemu-img convert -l takes the size before it loads the snapshot).
     */
    public static DiskImage openSnapshot(Path path, OpenOptions options, String id, String name) throws IOException {
        if (id == null && name == null) {
            throw new org.qcow4j.SnapshotException(path.toString(), org.qcow4j.SnapshotException.Reason.NOT_FOUND,
                    "snapshot_id and name are both NULL");
        }
        DiskImage d = new ChainOpener(options).open(path.toString(), options.format(), 0, null);
        try {
            if (!(d instanceof Qcow2Image q)) {
                throw new org.qcow4j.SnapshotException(path.toString(), org.qcow4j.SnapshotException.Reason.NOT_SUPPORTED,
                        "Block format '" + d.format() + "' used by device '' does not support internal snapshots");
            }
            Snapshot sn = null;
            for (Snapshot s : q.snapshots) {
                if ((id == null || s.id().equals(id)) && (name == null || s.name().equals(name))) {
                    sn = s;
                    break;
                }
            }
            if (sn == null) {
                throw new org.qcow4j.SnapshotException(path.toString(), org.qcow4j.SnapshotException.Reason.NOT_FOUND,
                        "Can't find snapshot");
            }
            Header h = q.header;
            SnapshotL1Table.validate(q.filename, sn.id(), sn.l1TableOffset(), Integer.toUnsignedLong(sn.l1Size()),
                    q.geo, q.storage.length());
            long[] l1 = readL1(q.storage, h, q.filename, sn.l1TableOffset(), sn.l1Size());
            q.map.replaceL1(l1, sn.l1TableOffset());
            return q;
        } catch (IOException | RuntimeException e) {
            d.close();
            throw e;
        }
    }

    /** One snapshot operation, run with the image's write lock held. */
    @FunctionalInterface
    private interface SnapshotOperation<T> {
        T run(SnapshotWriter snapshots) throws IOException;
    }

    /** See {@link Images#createSnapshot}. */
    public static Snapshot createSnapshot(Path path, OpenOptions options, String name, long dateSec, long dateNsec)
            throws IOException {
        return snapshotOperation(path, options, w -> w.create(name, dateSec, dateNsec));
    }

    /** See {@link Images#applySnapshot}. */
    public static Snapshot applySnapshot(Path path, OpenOptions options, String idOrName) throws IOException {
        return snapshotOperation(path, options, w -> {
            int i = w.findByIdOrName(idOrName);
            if (i < 0) {
                throw SnapshotWriter.notFound(path.toString());
            }
            Snapshot sn = w.entries().get(i).snapshot();
            w.apply(i);
            return sn;
        });
    }

    /** See {@link Images#deleteSnapshot}. */
    public static Snapshot deleteSnapshot(Path path, OpenOptions options, String id, String name) throws IOException {
        return snapshotOperation(path, options, w -> {
            int i = w.find(id, name);
            if (i < 0) {
                throw SnapshotWriter.notFound(path.toString());
            }
            Snapshot sn = w.entries().get(i).snapshot();
            w.delete(i);
            return sn;
        });
    }

    /** Writes the snapshot table anew, every entry with the version 3 extra data ({@link SnapshotWriter#rewriteTable}). */
    static void rewriteSnapshotTable(Path path, OpenOptions options) throws IOException {
        snapshotOperation(path, options, w -> {
            w.rewriteTable();
            return null;
        });
    }

    /**
     * Opens {@code path} for writing in QEMU's layout, runs {@code op} and closes the image. A failure other than a
     * refused request (which writes nothing) stops the image: closing it then writes nothing more, and the file keeps
     * the state of the last step completed in QEMU's order.
     */
    private static <T> T snapshotOperation(Path path, OpenOptions options, SnapshotOperation<T> op) throws IOException {
        WritableImage opened = openWritable(path, options.withQemuLayout(true));
        try (WritableImage closing = opened) {
            if (!(opened instanceof Qcow2Image q)) {
                throw new org.qcow4j.SnapshotException(path.toString(), org.qcow4j.SnapshotException.Reason.NOT_SUPPORTED,
                        "internal snapshots need a qcow2 image");
            }
            if (q.writes == null) {
                throw new WriteRefusedException(path.toString(), q.warnings.isEmpty() ? "opened read-only" : q.warnings.get(0));
            }
            if (q.dataStorage != q.storage) {
                // QEMU's qcow2_snapshot_create and _goto: -ENOTSUP before anything else
                throw new org.qcow4j.SnapshotException(path.toString(), org.qcow4j.SnapshotException.Reason.EXTERNAL_DATA_FILE,
                        "internal snapshots are not possible with an external data file");
            }
            q.lock.writeLock().lock();
            try {
                List<T> result = new java.util.ArrayList<>(1);
                q.writes.run(() -> result.add(op.run(new SnapshotWriter(q, q.writes, q.map, q.storage, q.header))));
                return result.get(0);
            } catch (org.qcow4j.SnapshotException e) {
                throw e; // refused before any write, or (an overflow) left as QEMU leaves it: closing writes it back
            } catch (QcowException e) {
                q.writes.breakWith(e);
                throw e;
            } catch (IOException | RuntimeException e) {
                q.writes.breakWith(new QcowException(path.toString(), String.valueOf(e.getMessage()), e));
                throw e;
            } finally {
                q.lock.writeLock().unlock();
            }
        }
    }

    /**
     * QEMU's read-write open and close of a qcow2 image with persistent bitmaps that qemu-img writes nothing else to
     * (the header of {@code rebase -u}, the overlay of {@code commit -d}, an image whose backing file failed the open):
     * opened without its backing chain (the old backing file need not exist), which flags the bitmaps in use; cluster 0 rewritten from the header now on disk as
     * {@code changed} makes it (null: left alone), as {@code qcow2_update_header} does; the bitmaps stored anew as the
     * image closes.
     */
    @SuppressWarnings("try") // the hold is there only for its locks
    public static void openAndClose(Path path, HeaderChange changed) throws IOException {
        openAndClose(path, OpenOptions.defaults(), changed);
    }

    /** {@link #openAndClose(Path, HeaderChange)} with the caller's options (a passphrase, a data file) otherwise. */
    static void openAndClose(Path path, OpenOptions options, HeaderChange changed) throws IOException {
        String filename = path.toString();
        try (OpenFile hold = OpenFiles.open(path, Access.WRITE, filename);
             WritableImage opened = openHeld(path, options.withFormat("qcow2").withoutBacking().withQemuLayout(true))) {
            if (!(opened instanceof Qcow2Image q) || q.writes == null) {
                throw new WriteRefusedException(filename, "the image could not be opened for writing");
            }
            if (changed != null) {
                q.rewriteHeader(changed);
            }
        }
    }

    /** Cluster 0 rewritten, in one forced write, from the header now on disk as {@code changed} makes it. */
    void rewriteHeader(HeaderChange changed) throws IOException {
        update(() -> {
            byte[] cluster0 = changed.apply(readHeader(storage, filename)).qemuCluster0();
            if (cluster0 == null) {
                throw new QcowException(filename, "the header no longer fits in cluster 0", null,
                        "No space left in the file header");
            }
            HeaderUpdate.write(storage, cluster0);
        });
    }

    /** The header now on disk (which the updater changes field by field in place), read under the write lock. */
    Header headerOnDisk() throws IOException {
        return withUpdater((updater, file, opened) -> readHeader(file, filename));
    }

    /** A change of the header on disk, which may refuse it. */
    @FunctionalInterface
    public interface HeaderChange {
        Header apply(Header onDisk) throws IOException;
    }

    private static WritableImage openHeld(Path path, OpenOptions options) throws IOException {
        String filename = path.toString();
        List<String> notes = new java.util.ArrayList<>();
        List<String> repairLines = new java.util.ArrayList<>();
        Header h;
        try (FileStorage probe = FileStorage.open(path, Access.PROBE)) {
            String format = options.format() != null && !options.format().isEmpty() ? options.format() : ChainOpener.probe(probe);
            if (format.equals("raw")) {
                return WritableRawImage.open(path, options.format() == null || options.format().isEmpty());
            }
            if (!format.equals("qcow2")) {
                throw new UnsupportedFeatureException(filename, "writing to " + format + " images");
            }
            h = readHeader(probe, filename);
        }
        if (h.has(Feature.CORRUPT)) {
            Qcow2Image ro = (Qcow2Image) new ChainOpener(options).open(filename, "qcow2", 0, null);
            ro.warnings.add(filename + ": the image is marked corrupt; opened read-only (qemu-img check -r all repairs it)");
            return ro;
        }
        if (h.cryptMethod() == Header.CRYPT_AES) {
            throw Encryption.refuseLegacyWrite(filename);
        }
        if (h.cryptMethod() != Header.CRYPT_NONE && h.has(Feature.EXTERNAL_DATA_FILE)) {
            throw new UnsupportedFeatureException(filename, "writing to an encrypted image with an external data file");
        }
        if (Boolean.TRUE.equals(options.lazyRefcounts()) && h.version() < 3) {
            throw new QcowException(filename, "lazy refcounts need a version 3 image (compat=1.1); this one is version "
                    + h.version(), null, "Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level");
        }
        if (h.has(Feature.DIRTY)) {
            // As QEMU on open: lazy refcounts left unwritten by a crash are rebuilt before anything else is written.
            Qcow2Check.repairDirty(path, repairLines::add);
            notes.add(filename + ": repaired the refcounts of a dirty image (lazy refcounts, not closed cleanly)");
        }
        Qcow2Image image;
        try {
            image = new ChainOpener(options).openForWriting(filename);
        } catch (org.qcow4j.MissingFileException e) {
            if (e.role() == org.qcow4j.MissingFileException.Role.BACKING_FILE && HeaderUpdate.opensWithBitmaps(h)) {
                // QEMU opens the image itself, flagging its bitmaps in use, before its backing file fails; closing
                // it then stores them anew: the open fails, the file has changed all the same
                try {
                    openAndClose(path, options, null);
                } catch (IOException | RuntimeException second) {
                    e.addSuppressed(second);
                }
            }
            throw e;
        }
        try {
            image.writes = new Qcow2Updater(image, filename, image.storage, image.header, image.map, image.backing, options);
        } catch (IOException | RuntimeException e) {
            image.close();
            throw e;
        }
        image.warnings.addAll(notes);
        image.repairDiagnostics.addAll(repairLines);
        return image;
    }

    /** Reads and validates the header, its extensions and the backing file name: all of cluster 0. */
    static Header readHeader(FileStorage storage, String filename) throws IOException {
        return Header.parse(readCluster0(storage, filename), filename, storage.length());
    }

    /** {@link #readHeader} as {@code qemu-img check} opens the image ({@link Header#parseForCheck}). */
    static Header readHeaderForCheck(FileStorage storage, String filename) throws IOException {
        return Header.parseForCheck(readCluster0(storage, filename), filename, storage.length());
    }

    private static ByteBuffer readCluster0(FileStorage storage, String filename) throws IOException {
        long length = storage.length();
        ByteBuffer start = storage.read(0, (int) Math.min(length, Header.FIXED_PART));
        int clusterBits = Header.peekClusterBits(start, filename, length);
        return storage.read(0, (int) Math.min(length, 1L << clusterBits));
    }

    private static long[] readL1(FileStorage storage, Header h, String file) throws IOException {
        return readL1(storage, h, file, h.l1TableOffset(), h.l1Size());
    }

    private static long[] readL1(FileStorage storage, Header h, String file, long offset, int n) throws IOException {
        long[] l1 = new long[n];
        storage.read(offset, n * 8).order(ByteOrder.BIG_ENDIAN).asLongBuffer().get(l1);
        long clusterSize = h.clusterSize();
        for (int i = 0; i < n; i++) {
            long off = L1Entry.l2Offset(l1[i]);
            if (off == 0) {
                continue;
            }
            String field = "L1 entry " + i;
            if (off < clusterSize) {
                throw new FormatException(file, field, FormatException.hex(l1[i]), "L2 table offset points into the header cluster");
            }
            if ((off & (clusterSize - 1)) != 0) {
                throw new FormatException(file, field, FormatException.hex(l1[i]), "L2 table offset not aligned to the cluster size " + clusterSize);
            }
            if (off > storage.length() - clusterSize) {
                throw new FormatException(file, field, FormatException.hex(l1[i]), "L2 table past the end of the file ("
                        + storage.length() + " bytes)");
            }
            String overlap = overlapsFixedMetadata(h, off, clusterSize);
            if (overlap != null) {
                throw new FormatException(file, field, FormatException.hex(l1[i]), "L2 table overlaps the " + overlap);
            }
        }
        return l1;
    }

    /** QEMU's constant overlap checks: which fixed metadata structure {@code [off, off+len)} overlaps, or null. */
    private static String overlapsFixedMetadata(Header h, long off, long len) {
        if (overlaps(off, len, h.l1TableOffset(), h.l1Size() * 8L)) {
            return "active L1 table";
        }
        if (overlaps(off, len, h.refcountTableOffset(), (long) h.refcountTableClusters() * h.clusterSize())) {
            return "refcount table";
        }
        return null;
    }

    private static boolean overlaps(long a, long alen, long b, long blen) {
        return alen > 0 && blen > 0 && a < b + blen && b < a + alen;
    }

    @Override
    public String filename() {
        return filename;
    }

    @Override
    public String format() {
        return "qcow2";
    }

    @Override
    public long size() {
        return virtualSize;
    }

    @Override
    public DiskImage backing() {
        return backing;
    }

    @Override
    public Optional<Qcow2Metadata> qcow2() {
        return Optional.of(this);
    }

    @Override
    public String fullBackingFilename() {
        return backingFilename;
    }

    @Override
    public Header header() {
        return header;
    }

    @Override
    public List<Snapshot> snapshots() {
        return snapshots;
    }

    @Override
    public List<Bitmap> bitmaps() {
        // Opened for writing, the directory as it is on disk now (flagged in use), as QEMU's info reads it.
        return writes != null ? writes.bitmaps().onDisk() : bitmaps;
    }

    @Override
    public String dataFile() {
        return header.has(Feature.EXTERNAL_DATA_FILE) ? header.dataFile() : null;
    }

    @Override
    public String openedDataFile() {
        return dataStorage != storage && dataStorage != null ? dataStorage.path().toString() : null;
    }

    @Override
    public Optional<org.qcow4j.DirtyBitmaps> dirtyBitmaps() {
        if (writes != null) {
            return Optional.of(writes.bitmaps());
        }
        synchronized (this) {
            if (readOnlyBitmaps == null) {
                readOnlyBitmaps = PersistentBitmaps.readOnly(this, storage, header); // loaded when first used
            }
            return Optional.of(readOnlyBitmaps);
        }
    }

    @Override
    public Optional<VmState> vmState() {
        return Optional.of(vmState);
    }

    @Override
    public Optional<org.qcow4j.EncryptionInfo> encryption() {
        return encryption == null ? Optional.empty() : Optional.of(encryption.info());
    }

    /** The payload cipher of an encrypted image, or null. */
    Encryption cipher() {
        return encryption;
    }

    /** Where guest data clusters live: the external data file, or the image file itself (see {@link #dataStorage}). */
    FileStorage dataStorage() {
        return dataStorage;
    }

    private Run lookup(long guest, long maxLen) throws IOException {
        long l1Index = geo.l1Index(guest);
        long limit = Math.min(guest + maxLen, (l1Index + 1) * geo.l2Coverage());
        long l2Offset = map.l2Offset(l1Index);
        if (l2Offset == 0) {
            return new Run(SubclusterType.UNALLOCATED_PLAIN, -1, limit - guest, 0);
        }
        long[] table = map.table(l2Offset);
        boolean ext = geo.extendedL2();
        long unit = geo.subclusterSize();
        int index = geo.l2Index(guest);
        long entry = table[ext ? 2 * index : index];
        SubclusterType type = classify(table, index, geo.subclusterIndex(guest), l2Offset);
        if (dataStorage != storage && (type == SubclusterType.NORMAL || type == SubclusterType.ZERO_ALLOC
                || type == SubclusterType.UNALLOCATED_ALLOC) && L2Entry.hostOffset(entry) != geo.startOfCluster(guest)) {
            // QEMU's qcow2_get_host_offset: a data file's cluster lies at its guest offset, anything else is corruption
            throw corruption(l2Offset, index, entry, "external data file host cluster offset does not match the guest"
                    + " cluster offset " + FormatException.hex(geo.startOfCluster(guest)), "External data file host cluster"
                    + " offset " + cHex(L2Entry.hostOffset(entry)) + " does not match guest cluster offset: "
                    + cHex(geo.startOfCluster(guest)) + ", L2 index: " + cHex(index) + ")");
        }
        long host = type.hasHostOffset() ? L2Entry.hostOffset(entry) + geo.offsetInCluster(guest) : -1;
        long pos = (guest / unit + 1) * unit;
        if (!ext && host < 0) {
            // Equal entries classify alike: a run of them (a sparse image's unallocated or zero clusters) costs one
            // compare each, not a classify; map walks whole tables, in a short command before the JIT has compiled it.
            // (pos < limit keeps i inside this L2 table: a cluster per entry.)
            for (int i = index + 1; pos < limit && table[i] == entry; i++) {
                pos += unit;
            }
        }
        while (pos < limit) {
            int i = geo.l2Index(pos);
            if (classify(table, i, geo.subclusterIndex(pos), l2Offset) != type) {
                break;
            }
            if (host >= 0 && L2Entry.hostOffset(table[ext ? 2 * i : i]) + geo.offsetInCluster(pos) != host + (pos - guest)) {
                break;
            }
            pos += unit;
        }
        return new Run(type, host, Math.min(pos, limit) - guest, entry);
    }

    /** Classifies one subcluster for a read and refuses entries QEMU would call corrupt (see below). */
    SubclusterType classify(long[] table, int index, int sc, long l2Offset) throws FormatException {
        return classify(table, index, sc, l2Offset, false);
    }

    /**
     * Classifies one subcluster and refuses entries QEMU would call corrupt, with a {@link CorruptionException} in
     * the words of QEMU's {@code qcow2_signal_corruption} ({@code writing}: a write request's, QEMU's
     * {@code calculate_l2_meta}, else a read's, {@code qcow2_get_host_offset}, which has one space more before the
     * parenthesis of an invalid entry). On an image opened for writing that is fatal, as in QEMU: the image is
     * marked corrupt and takes no more writes ({@link Qcow2Updater#signalCorruption}).
     */
    SubclusterType classify(long[] table, int index, int sc, long l2Offset, boolean writing) throws FormatException {
        boolean ext = geo.extendedL2();
        long entry = table[ext ? 2 * index : index];
        long bitmap = ext ? table[2 * index + 1] : 0;
        SubclusterType t = L2Entry.classify(entry, bitmap, sc, ext, dataStorage != storage);
        switch (t) {
            case INVALID -> throw corruption(l2Offset, index, entry, "invalid subcluster bitmap " + FormatException.hex(bitmap),
                    "Invalid cluster entry found" + (writing ? " " : "  ") + "(L2 offset: " + cHex(l2Offset)
                            + ", L2 index: " + cHex(index) + ")");
            case ZERO_PLAIN, ZERO_ALLOC -> {
                if (header.version() < 3) {
                    throw corruption(l2Offset, index, entry, "zero cluster entry in a version 2 image",
                            "Zero cluster entry found in pre-v3 image (L2 offset: " + cHex(l2Offset) + ", L2 index: "
                                    + cHex(index) + ")");
                }
            }
            case COMPRESSED -> {
                if (dataStorage != storage) {
                    throw corruption(l2Offset, index, entry, "compressed cluster in an image with an external data file",
                            "Compressed cluster entry found in image with external data file (L2 offset: "
                                    + cHex(l2Offset) + ", L2 index: " + cHex(index) + ")");
                }
            }
            default -> {
            }
        }
        if ((t == SubclusterType.NORMAL || t == SubclusterType.ZERO_ALLOC || t == SubclusterType.UNALLOCATED_ALLOC)
                && !geo.isClusterAligned(L2Entry.hostOffset(entry))) {
            // QEMU's qcow2_get_host_offset: the event it signals, in its words
            throw corruption(l2Offset, index, entry, "host cluster offset not aligned to the cluster size "
                    + geo.clusterSize(), "Cluster allocation offset " + cHex(L2Entry.hostOffset(entry))
                    + " unaligned (L2 offset: " + cHex(l2Offset) + ", L2 index: " + cHex(index) + ")");
        }
        return t;
    }

    /**
     * QEMU's fatal {@code qcow2_signal_corruption} for the L2 entry {@code index}: on an image opened for writing the
     * image is marked corrupt and stopped; the exception is the request's failure.
     */
    private CorruptionException corruption(long l2Offset, int index, long entry, String reason, String qemuWords) {
        CorruptionException e = new CorruptionException(filename, "L2 entry " + index + " of table at "
                + FormatException.hex(l2Offset), FormatException.hex(entry), reason, qemuWords);
        Qcow2Updater w = writes;
        if (w != null) {
            w.signalCorruption(e);
        }
        return e;
    }

    /** C's {@code %#x}: 0 as "0", others with "0x". */
    private static String cHex(long v) {
        return v == 0 ? "0" : "0x" + Long.toHexString(v);
    }

    @Override
    public void read(ByteBuffer dst, long offset) throws IOException {
        if (writes == null) {
            readUnlocked(dst, offset);
            return;
        }
        lock.readLock().lock();
        try {
            readUnlocked(dst, offset);
        } finally {
            lock.readLock().unlock();
        }
    }

    /** {@link #read} for callers that need no lock: read-only images, or the writer holding the write lock. */
    void readUnlocked(ByteBuffer dst, long offset) throws IOException {
        checkRange(offset, dst.remaining());
        readMapped(dst, offset);
    }

    /**
     * Reads what the mapping says, even past the end of the disk (in its last cluster): what QEMU's copy-on-write
     * reads through the driver, without the block layer's end-of-disk check.
     */
    void readMapped(ByteBuffer dst, long offset) throws IOException {
        while (dst.hasRemaining()) {
            Run run = lookup(offset, dst.remaining());
            int n = (int) run.length();
            if (run.type() == SubclusterType.COMPRESSED) {
                n = (int) Math.min(n, geo.clusterSize() - geo.offsetInCluster(offset));
            }
            ByteBuffer part = dst.slice(dst.position(), n);
            switch (run.type()) {
                case NORMAL -> {
                    if (dataStorage == null) {
                        throw new QcowException(filename, "opened for its metadata only: its external data file is not open");
                    }
                    if (encryption != null) {
                        encryption.read(dataStorage, part, run.hostOffset(), offset);
                    } else {
                        dataStorage.readFully(part, run.hostOffset());
                    }
                }
                case ZERO_PLAIN, ZERO_ALLOC -> Zeros.fill(part);
                case UNALLOCATED_PLAIN, UNALLOCATED_ALLOC -> readBacking(part, offset);
                case COMPRESSED -> readCompressed(part, offset, run.entry());
                case INVALID -> throw new IllegalStateException("classify() refuses INVALID");
            }
            dst.position(dst.position() + n);
            offset += n;
        }
    }

    private void checkRange(long offset, long len) {
        if (offset < 0 || len < 0 || offset > size() - len) {
            throw new IndexOutOfBoundsException("read of " + len + " bytes at " + offset + " outside the virtual disk of "
                    + size() + " bytes");
        }
    }

    private void readBacking(ByteBuffer part, long offset) throws IOException {
        if (backing != null && offset < backing.size()) {
            int n = (int) Math.min(part.remaining(), backing.size() - offset);
            backing.read(part.slice(part.position(), n), offset);
            part.position(part.position() + n);
        }
        Zeros.fill(part);
    }

    private void readCompressed(ByteBuffer part, long guest, long entry) throws IOException {
        CompressedReader reader = compressedReaders.poll();
        if (reader == null) {
            reader = new CompressedReader(header.compressionType(), (int) geo.clusterSize());
        }
        try {
            byte[] cluster = reader.cluster(entry, guest);
            part.put(cluster, (int) geo.offsetInCluster(guest), part.remaining());
        } finally {
            compressedReaders.offer(reader);
        }
    }

    /** Reads and inflates compressed clusters, keeping the last one for small sequential reads. */
    private final class CompressedReader implements AutoCloseable {
        private final ClusterDecompressor decompressor;
        private final byte[] out;
        private ByteBuffer in;
        private long cachedEntry;
        private boolean cached;

        CompressedReader(int compressionType, int clusterSize) {
            this.decompressor = new ClusterDecompressor(compressionType, clusterSize);
            this.out = new byte[clusterSize];
        }

        byte[] cluster(long entry, long guest) throws IOException {
            if (cached && entry == cachedEntry) {
                return out;
            }
            cached = false;
            int bits = geo.clusterBits();
            long offset = L2Entry.compressedOffset(entry, bits);
            int size = L2Entry.compressedSize(entry, bits);
            if (offset >= storage.length()) {
                throw new FormatException(filename, "compressed cluster at guest offset " + geo.startOfCluster(guest),
                        FormatException.hex(entry), "data offset past the end of the file (" + storage.length() + " bytes)");
            }
            if (in == null || in.capacity() < size) {
                in = ByteBuffer.allocate(size);
            }
            in.clear().limit(size);
            storage.readFully(in, offset);
            in.flip();
            if (!decompressor.decompress(in, out)) {
                throw new FormatException(filename, "compressed cluster at guest offset " + geo.startOfCluster(guest),
                        FormatException.hex(entry), "invalid " + header.compressionTypeName() + " data at host offset "
                        + FormatException.hex(offset));
            }
            cachedEntry = entry;
            cached = true;
            return out;
        }

        @Override
        public void close() {
            decompressor.close();
        }
    }

    @Override
    public Extent extentAt(long offset, long maxLength) throws IOException {
        return extent(offset, maxLength, false);
    }

    @Override
    public Extent blockStatus(long offset, long maxLength) throws IOException {
        return extent(offset, maxLength, true);
    }

    private Extent extent(long offset, long maxLength, boolean askFile) throws IOException {
        if (writes == null) {
            return extentUnlocked(offset, maxLength, askFile);
        }
        lock.readLock().lock();
        try {
            return extentUnlocked(offset, maxLength, askFile);
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * Whether {@code [offset, offset + length)} is known to read as zeros through the whole backing chain (clamped to
     * the disk), as QEMU's {@code is_zero()} asks the block status; for the writer, which holds the write lock.
     */
    boolean readsAsZero(long offset, long length) throws IOException {
        long end = Math.min(offset + length, size());
        while (offset < end) {
            Extent e = extentUnlocked(offset, end - offset, false);
            if (!e.zero() || e.length() <= 0) {
                return false;
            }
            offset += e.length();
        }
        return true;
    }

    /**
     * A data extent, cut and marked as reading zeros where a metadata-preallocated image's file has holes (as QEMU's
     * block status recurses into the file then); only for images open read-only, whose file does not change under
     * the hole map read once.
     */
    private Extent dataExtent(long offset, long len, long host, boolean askFile) throws IOException {
        if (writes != null || !askFile || host < 0 || dataStorage == null) {
            // (an encrypted image maps no offset: QEMU does not recurse; a closed data file has no holes to ask for)
            return new Extent(offset, len, 0, true, false, true, host);
        }
        if (!preallocationChecked) {
            synchronized (this) {
                if (!preallocationChecked) {
                    preallocation = MetadataPreallocation.detect(storage, dataStorage, header);
                    preallocationChecked = true;
                }
            }
        }
        MetadataPreallocation p = preallocation;
        return p == null ? new Extent(offset, len, 0, true, false, true, host) : p.dataExtent(offset, len, host);
    }

    private Extent extentUnlocked(long offset, long maxLength, boolean askFile) throws IOException {
        checkRange(offset, 1);
        Run run = lookup(offset, Math.min(maxLength, size() - offset));
        long len = run.length();
        long host = encryption != null ? -1 : run.hostOffset(); // QEMU maps no offset of an encrypted image's data
        return switch (run.type()) {
            case NORMAL -> dataExtent(offset, len, host, askFile);
            case COMPRESSED -> new Extent(offset, len, 0, true, false, true, -1);
            case ZERO_PLAIN, ZERO_ALLOC -> new Extent(offset, len, 0, true, true, false, host);
            case UNALLOCATED_PLAIN, UNALLOCATED_ALLOC -> backing == null || offset >= backing.size()
                    ? new Extent(offset, len, 0, false, true, false, host)
                    : (askFile ? backing.blockStatus(offset, Math.min(len, backing.size() - offset))
                    : backing.extentAt(offset, Math.min(len, backing.size() - offset))).deeper();
            case INVALID -> throw new IllegalStateException("classify() refuses INVALID");
        };
    }

    // ------------------------------------------------------------------------------------------ VM state

    /** QEMU's {@code BDRV_MAX_LENGTH}: the block layer refuses requests reaching past it (EIO). */
    private static final long MAX_GUEST_OFFSET = Long.MAX_VALUE & -(1L << 30);

    /**
     * QEMU's {@code qcow2_save_vmstate} and {@code qcow2_load_vmstate}: the request goes to the driver at
     * {@code qcow2_vm_state_offset + pos}, with no end-of-disk check and none of the image's other rules (dirty
     * bitmaps).
     */
    private final class VmStateArea implements VmState {
        @Override
        public long offset() {
            return geo.l1EntriesFor(size()) * geo.l2Coverage(); // l1_vm_state_index << (cluster_bits + l2_bits)
        }

        @Override
        public void read(ByteBuffer dst, long pos) throws IOException {
            if (writes == null) {
                readMapped(dst, guestOffset(pos, dst.remaining()));
                return;
            }
            lock.readLock().lock();
            try {
                readMapped(dst, guestOffset(pos, dst.remaining()));
            } finally {
                lock.readLock().unlock();
            }
        }

        @Override
        public void write(ByteBuffer src, long pos) throws IOException {
            update(() -> writes.writeVmState(src, guestOffset(pos, src.remaining())));
        }

        /** QEMU's {@code qcow2_check_vmstate_request}: the block layer's limits, before and after the area's offset. */
        private long guestOffset(long pos, long bytes) {
            long start = offset();
            if (pos < 0 || bytes > MAX_GUEST_OFFSET || pos > MAX_GUEST_OFFSET - bytes || pos > MAX_GUEST_OFFSET - start - bytes) {
                throw new IndexOutOfBoundsException("VM state request of " + bytes + " bytes at " + pos
                        + " reaches past QEMU's largest guest offset");
            }
            return start + pos;
        }
    }

    // ------------------------------------------------------------------------------------------ writing

    @Override
    public void write(ByteBuffer src, long offset) throws IOException {
        if (writes != null) {
            writes.bitmaps().written(offset, src.remaining());
            // Rewrites of clusters the image owns change no metadata: they share the lock, so threads run them
            // in parallel; anything else (allocation, copy-on-write) takes it alone.
            lock.readLock().lock();
            try {
                checkRange(offset, src.remaining());
                if (writes.tryWriteInPlace(src, offset)) {
                    return;
                }
            } finally {
                lock.readLock().unlock();
            }
        }
        update(() -> {
            checkRange(offset, src.remaining());
            writes.write(src, offset);
        });
    }

    @Override
    public void writeCompressed(ByteBuffer src, long offset) throws IOException {
        markDirty(offset, src.remaining());
        update(() -> {
            checkRange(offset, src.remaining());
            writes.writeCompressed(src, offset);
        });
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        markDirty(offset, length);
        update(() -> {
            checkRange(offset, length);
            writes.writeZeroes(offset, length, mayUnmap);
        });
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        markDirty(offset, length);
        update(() -> {
            checkRange(offset, length);
            writes.discard(offset, length);
        });
    }

    @Override
    public void flush() throws IOException {
        update(() -> writes.flush());
    }

    /** QEMU's {@code qcow2_expand_zero_clusters} (the active L1 table, then the snapshots'): see {@link Qcow2Updater#expandZeroClusters}. */
    void expandZeroClusters(java.util.function.IntConsumer visited) throws IOException {
        update(() -> writes.expandZeroClusters(visited));
    }

    /** {@link #expandZeroClusters} on an image that stays open while it becomes version 2: see the updater's. */
    void expandZeroClustersForDowngrade(java.util.function.IntConsumer visited) throws IOException {
        update(() -> writes.expandZeroClustersForDowngrade(visited));
    }

    /** The image marked clean and lazy refcounts no longer used, before a downgrade: see the updater's. */
    void leaveLazyRefcounts() throws IOException {
        update(writes::leaveLazyRefcounts);
    }

    /** Runs {@code op} on the updater, its storage and header with the write lock held alone. */
    <T> T withUpdater(UpdaterOperation<T> op) throws IOException {
        List<T> result = new java.util.ArrayList<>(1);
        update(() -> result.add(op.run(writes, storage, header)));
        return result.get(0);
    }

    /** An operation on the refcount structure or tables of an image open for writing. */
    @FunctionalInterface
    interface UpdaterOperation<T> {
        T run(Qcow2Updater updater, FileStorage storage, Header header) throws IOException;
    }

    /** QEMU's {@code qcow2_make_empty} fallback: see {@link Qcow2Updater#discardAllInFull}. */
    void discardAllInFull() throws IOException {
        update(() -> writes.discardAllInFull());
    }

    @Override
    public void resize(long newSize) throws IOException {
        update(() -> writes.resize(newSize));
    }

    /** {@link #resize(long)} with QEMU's preallocation of a grown part (see {@link Qcow2Updater#resize(long, CreateOptions.Preallocation)}). */
    public void resize(long newSize, CreateOptions.Preallocation prealloc) throws IOException {
        update(() -> writes.resize(newSize, prealloc));
    }

    /**
     * A resize with preallocation of an image {@link #openWritable} opened (qcow2 or raw, without the request rules'
     * wrapper); false if {@code image} is neither.
     */
    public static boolean resize(WritableImage image, long newSize, CreateOptions.Preallocation prealloc)
            throws IOException {
        if (image instanceof Qcow2Image q) {
            q.resize(newSize, prealloc);
        } else if (image instanceof WritableRawImage r) {
            r.resize(newSize, prealloc);
        } else {
            return false;
        }
        return true;
    }

    /**
     * QEMU's {@code bdrv_co_write_req_finish}: the enabled bitmaps record every write, zero write and discard of the
     * guest, whether or not it succeeds.
     */
    private void markDirty(long offset, long length) {
        if (writes != null) {
            writes.bitmaps().written(offset, length);
        }
    }

    /** Runs {@code request} holding the write lock alone (the bitmaps' directory updates). */
    void exclusively(Qcow2Updater.Request request) throws IOException {
        update(request);
    }

    /** Runs a request of the updater holding the write lock alone. */
    private void update(Qcow2Updater.Request request) throws IOException {
        lockForWriting();
        try {
            writes.run(request);
        } finally {
            lock.writeLock().unlock();
        }
    }

    private void lockForWriting() throws WriteRefusedException {
        if (writes == null) {
            throw new WriteRefusedException(filename, warnings.isEmpty() ? "opened read-only" : "opened read-only: " + warnings.get(0));
        }
        lock.writeLock().lock();
    }

    /** The new virtual size, for the updater (which holds the write lock). */
    void setSize(long newSize) {
        virtualSize = newSize;
    }

    @Override
    public SeekableByteChannel channel() {
        return new ImageChannel(this);
    }

    @Override
    public boolean readOnly() {
        return writes == null;
    }

    @Override
    public List<String> warnings() {
        return List.copyOf(warnings);
    }

    @Override
    public List<String> repairDiagnostics() {
        return List.copyOf(repairDiagnostics);
    }

    @Override
    @SuppressWarnings("try") // the resource is only there to close the files whatever the last flush does
    public void close() throws IOException {
        lock.writeLock().lock();
        try (Closeable files = new HeldFiles(this)) {
            if (writes != null) {
                writes.close(); // the last flush; the files are closed even if it fails
            }
        } finally {
            lock.writeLock().unlock();
        }
    }

    @SuppressWarnings("try") // the resources are only there to be closed, each even if another fails
    private void closeFiles() throws IOException {
        try (storage; FileStorage d = dataStorage != storage ? dataStorage : null; DiskImage b = backing) {
            CompressedReader r;
            while ((r = compressedReaders.poll()) != null) {
                r.close();
            }
            if (encryption != null) {
                encryption.close();
            }
        }
    }

    /** The image file's positional reads, for the table readers. */
    private record Reads(FileStorage storage) implements Snapshot.Reader {
        @Override
        public ByteBuffer read(long offset, int length) throws IOException {
            return storage.read(offset, length);
        }
    }

    /** The files an image holds, as a resource {@link #close} closes whatever its last flush does. */
    private record HeldFiles(Qcow2Image image) implements Closeable {
        @Override
        public void close() throws IOException {
            image.closeFiles();
        }
    }
}
