package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.BitmapException;
import org.qcow4j.DirtyBitmaps;
import org.qcow4j.FormatException;
import org.qcow4j.QcowException;
import org.qcow4j.format.Bitmap;
import org.qcow4j.format.BitmapTable;
import org.qcow4j.format.BitmapsExtension;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.io.FileStorage;

/**
 * The persistent dirty bitmaps of a qcow2 image, kept as QEMU 7.2's block/qcow2-bitmap.c and block/dirty-bitmap.c
 * keep them (see {@link DirtyBitmaps} for what a user sees). Each function names the QEMU function it follows.
 *
 * <p>Opened for writing ({@link #openForWriting}, QEMU's {@code qcow2_load_dirty_bitmaps}), every bitmap not in use is
 * loaded into memory and then flagged in use on disk, before the first guest write, by rewriting the directory in
 * place between header writes that first drop and then restore the bitmaps autoclear bit ({@code
 * update_ext_header_and_dir_in_place}); a bitmap already in use is inconsistent and is never stored again. Closing
 * ({@link #store}, {@code qcow2_store_persistent_dirty_bitmaps}) writes each consistent bitmap anew: its dirty data
 * clusters, then its table, then a new directory, a flush of the image's caches, the header naming the new
 * directory, and only then the old directory, tables and data clusters are freed ({@code update_ext_header_and_dir},
 * {@code free_bitmap_clusters}). So a crash leaves either the old directory with the bitmaps flagged in use or the new
 * one, plus at most leaked clusters. Allocation goes through the image's {@link RefcountTable}, so clusters land
 * where QEMU puts them.
 *
 * <p>The bitmaps live in memory ({@link DirtyBitmap}), in chunks made only where bits are set: a new bitmap takes
 * none, however large the disk (within QEMU's own limit of 512 MiB of bitmap data), and writes grow it as they dirty
 * granules, as QEMU's do. What a bitmap stored on disk may make us allocate when it loads is bounded by
 * {@link #MAX_MEMORY_BYTES}: its table, an untrusted field, could otherwise mark everything set.
 */
final class PersistentBitmaps implements DirtyBitmaps {
    /** The most bytes of set bits one bitmap stored on disk may bring into memory when it loads. */
    static final long MAX_MEMORY_BYTES = 128L << 20;
    private static final long KNOWN_AUTOCLEAR = Feature.BITMAPS.mask() | Feature.RAW_EXTERNAL_DATA.mask();
    private static final String INCONSISTENT_HINT = "Try block-dirty-bitmap-remove to delete this bitmap from disk";

    /** One in-memory bitmap: QEMU's {@code BdrvDirtyBitmap} (persistent). */
    private static final class Loaded {
        final String name;
        final int granularityBits;
        volatile boolean enabled;
        /** Found in use on disk when opened: its data is unusable, it is never stored ({@code inconsistent}). */
        final boolean inconsistent;
        /** Null for an inconsistent bitmap. */
        final DirtyBitmap bits;

        Loaded(String name, int granularityBits, boolean enabled, boolean inconsistent, DirtyBitmap bits) {
            this.name = name;
            this.granularityBits = granularityBits;
            this.enabled = enabled;
            this.inconsistent = inconsistent;
            this.bits = bits;
        }
    }

    private final Qcow2Image image;
    private final String filename;
    private final FileStorage storage;
    private final int version;
    private final int clusterBits;
    private final long clusterSize;
    /** Null for an image opened read-only: its bitmaps are read-only too. */
    private final Qcow2Updater writes;
    private final RefcountTable refcounts;
    /** The directory as it is on disk (QEMU's {@code bm_list}, which it reads again for each operation). */
    private List<BitmapTable> directory = List.of();
    private long directoryOffset;
    private long directorySize;
    private long autoclear;
    /** QEMU's {@code bs->dirty_bitmaps}: each new bitmap goes first, so walks see the newest first. */
    private final List<Loaded> loaded = new ArrayList<>();
    /** The bitmaps that record writes, for the write path (which does not take this object's lock). */
    private volatile Loaded[] recording = new Loaded[0];
    /** The header of a read-only image whose bitmaps are not loaded yet, else null. */
    private Header unloaded;

    private PersistentBitmaps(Qcow2Image image, FileStorage storage, Header h, Qcow2Updater writes,
                              RefcountTable refcounts) {
        this.image = image;
        this.filename = image.filename();
        this.storage = storage;
        this.version = h.version();
        this.clusterBits = h.clusterBits();
        this.clusterSize = h.clusterSize();
        this.writes = writes;
        this.refcounts = refcounts;
        this.autoclear = h.autoclearFeatures();
    }

    /**
     * The bitmaps of an image opened read-only, loaded as QEMU loads them (read-only, so they can be merged from) when
     * first used: a damaged directory fails that use, not the image's open.
     */
    static PersistentBitmaps readOnly(Qcow2Image image, FileStorage storage, Header h) {
        PersistentBitmaps b = new PersistentBitmaps(image, storage, h, null, null);
        b.unloaded = h;
        return b;
    }

    /** Loads a read-only image's bitmaps on first use. */
    private void ensureLoaded() throws IOException {
        if (unloaded != null) {
            Header h = unloaded;
            load(h);
            unloaded = null;
        }
    }

    /**
     * QEMU's {@code qcow2_load_dirty_bitmaps} on an image opened for writing, with the header update of {@code
     * qcow2_do_open}: the bitmaps loaded, those not in use flagged in use on disk; a bitmaps extension that a program
     * without bitmap support left behind (autoclear bit clear) is dropped, and unknown autoclear bits are cleared, by
     * rewriting the header as QEMU does. Without a bitmaps extension nothing is written (the caller clears the
     * autoclear bits) and the set starts empty.
     */
    static PersistentBitmaps openForWriting(Qcow2Image image, FileStorage storage, Header h, Qcow2Updater writes,
                                            RefcountTable refcounts) throws IOException {
        PersistentBitmaps b = new PersistentBitmaps(image, storage, h, writes, refcounts);
        if (h.bitmaps() == null) {
            b.autoclear = 0;
            return b;
        }
        b.load(h);
        if (!h.has(Feature.BITMAPS)) {
            // QEMU: "a program lacking bitmap support modified this file, so all bitmaps are now considered
            // inconsistent": the extension goes (its clusters leak, as QEMU says).
            b.autoclear &= KNOWN_AUTOCLEAR & ~Feature.BITMAPS.mask();
            b.writeHeader(null);
            return b;
        }
        b.markMetadata(true);
        boolean flag = false;
        List<BitmapTable> inUse = new ArrayList<>();
        for (BitmapTable t : b.directory) {
            flag |= (t.flags() & Bitmap.FLAG_IN_USE) == 0;
            inUse.add(t.with(t.offset(), t.entries(), t.flags() | Bitmap.FLAG_IN_USE));
        }
        b.autoclear &= KNOWN_AUTOCLEAR;
        if (flag) {
            b.updateInPlace(inUse);
        } else if (b.autoclear != h.autoclearFeatures()) {
            b.writeHeader(b.extension());
        }
        return b;
    }

    /** Reads the directory and the data of every bitmap not in use ({@code bitmap_list_load}, {@code load_bitmap}). */
    private void load(Header h) throws IOException {
        if (h.bitmaps() == null || !h.has(Feature.BITMAPS)) {
            return;
        }
        directory = BitmapTable.readDirectory(h.bitmaps(), storage::read, filename, storage.length(), image.size(),
                clusterBits);
        directoryOffset = h.bitmaps().directoryOffset();
        directorySize = h.bitmaps().directorySize();
        for (BitmapTable t : directory) {
            boolean inUse = (t.flags() & Bitmap.FLAG_IN_USE) != 0;
            DirtyBitmap bits = null;
            if (!inUse) {
                bits = loadData(t);
            }
            loaded.add(0, new Loaded(t.name(), t.granularityBits(), (t.flags() & Bitmap.FLAG_AUTO) != 0, inUse, bits));
        }
        updateRecording();
    }

    /** QEMU's {@code bitmap_table_load} (every entry checked) and {@code load_bitmap_data}. */
    private DirtyBitmap loadData(BitmapTable t) throws IOException {
        long expected = BitmapTable.tableEntriesFor(image.size(), t.granularityBits(), clusterBits);
        if (t.entries() != expected) {
            throw new FormatException(filename, "bitmap '" + t.name() + "' bitmap_table_size", t.entries(),
                    "does not fit the disk size (" + expected + " entries expected)",
                    "Could not read bitmap '" + t.name() + "' from image: Invalid argument");
        }
        long[] table = readTable(t);
        checkMemory(t, table);
        DirtyBitmap bits = new DirtyBitmap(t.granularityBits(), image.size());
        long perCluster = BitmapTable.granulesPerCluster(clusterBits);
        long granules = bits.granules();
        for (int i = 0; i < table.length; i++) {
            long from = i * perCluster;
            long count = Math.min(perCluster, granules - from);
            long data = BitmapTable.dataOffset(table[i]);
            if (data == 0) {
                if ((table[i] & BitmapTable.ALL_ONES) != 0) {
                    bits.setGranules(from, from + count);
                }
                continue;
            }
            if (data > storage.length() - clusterSize) {
                throw new FormatException(filename, "entry " + i + " of the table of bitmap '" + t.name() + "'",
                        FormatException.hex(table[i]), "data cluster past the end of the file (" + storage.length() + " bytes)");
            }
            bits.deserialize(from, count, storage.read(data, (int) clusterSize));
        }
        return bits;
    }

    private long[] readTable(BitmapTable t) throws IOException {
        long bytes = (long) t.entries() * BitmapTable.ENTRY_SIZE;
        if (t.offset() > storage.length() || bytes > storage.length() - t.offset()) {
            throw new FormatException(filename, "bitmap '" + t.name() + "' bitmap_table_offset", FormatException.hex(t.offset()),
                    "table of " + bytes + " bytes runs past the end of the file (" + storage.length() + " bytes)",
                    "Could not read bitmap_table table from image for bitmap '" + t.name() + "': Input/output error");
        }
        long[] table = new long[t.entries()]; // bounded: BitmapTable.readDirectory holds the table to 512 MiB of data
        storage.read(t.offset(), (int) bytes).order(ByteOrder.BIG_ENDIAN).asLongBuffer().get(table);
        for (int i = 0; i < table.length; i++) {
            if (!BitmapTable.isValidEntry(table[i], clusterSize)) {
                throw new FormatException(filename, "entry " + i + " of the table of bitmap '" + t.name() + "'",
                        FormatException.hex(table[i]), "invalid bitmap table entry",
                        "Could not read bitmap_table table from image for bitmap '" + t.name() + "': Invalid argument");
            }
        }
        return table;
    }

    /** The bitmap clusters as metadata for the allocator's overlap checks (or, with {@code mark} false, no more). */
    private void markMetadata(boolean mark) throws IOException {
        mark(directoryOffset, directorySize, "bitmap directory", mark);
        for (BitmapTable t : directory) {
            if ((t.flags() & Bitmap.FLAG_IN_USE) == 0) {
                mark(t.offset(), (long) t.entries() * BitmapTable.ENTRY_SIZE, "table of bitmap '" + t.name() + "'", mark);
            }
        }
    }

    private void mark(long offset, long bytes, String what, boolean mark) throws IOException {
        if (bytes <= 0) {
            return;
        }
        long start = offset & ~(clusterSize - 1);
        long clusters = (offset - start + bytes + clusterSize - 1) >>> clusterBits;
        if (mark) {
            refcounts.markMetadata(start, clusters, what);
        } else {
            refcounts.unmarkMetadata(start, clusters);
        }
    }

    // ------------------------------------------------------------------------------------------ the write path

    /** QEMU's {@code bdrv_set_dirty}: a write, zero write or discard touched {@code [offset, offset + length)}. */
    void written(long offset, long length) {
        for (Loaded b : recording) {
            b.bits.setBytes(offset, length);
        }
    }

    private void updateRecording() {
        List<Loaded> r = new ArrayList<>();
        for (Loaded b : loaded) {
            if (b.enabled && !b.inconsistent) {
                r.add(b);
            }
        }
        recording = r.toArray(new Loaded[0]);
    }

    /** QEMU's {@code qcow2_truncate_bitmaps_check}: an inconsistent bitmap stops a resize. */
    synchronized void checkResize() throws BitmapException {
        for (int i = loaded.size() - 1; i >= 0; i--) { // QEMU walks the directory, the oldest first
            if (loaded.get(i).inconsistent) {
                throw inconsistent(loaded.get(i));
            }
        }
    }

    /** QEMU's {@code bdrv_dirty_bitmap_truncate}: every bitmap now covers {@code newSize} bytes. */
    synchronized void resized(long newSize) {
        for (Loaded b : loaded) {
            if (b.bits != null) {
                b.bits.truncate(newSize);
            }
        }
    }

    // ------------------------------------------------------------------------------------------ operations

    @Override
    public synchronized List<Bitmap> list() throws IOException {
        ensureLoaded();
        List<Bitmap> out = new ArrayList<>();
        List<String> listed = new ArrayList<>();
        for (BitmapTable t : directory) {
            Loaded b = find(t.name());
            if (b != null) {
                out.add(info(b));
                listed.add(b.name);
            }
        }
        for (int i = loaded.size() - 1; i >= 0; i--) {
            if (!listed.contains(loaded.get(i).name)) {
                out.add(info(loaded.get(i)));
            }
        }
        return out;
    }

    /** The directory as it is on disk (what QEMU's {@code qcow2_get_bitmap_info_list} reads). */
    synchronized List<Bitmap> onDisk() {
        List<Bitmap> out = new ArrayList<>();
        for (BitmapTable t : directory) {
            out.add(new Bitmap(t.name(), t.granularityBits(), t.flags()));
        }
        return out;
    }

    private static Bitmap info(Loaded b) {
        return new Bitmap(b.name, b.granularityBits, (b.inconsistent ? Bitmap.FLAG_IN_USE : 0) | (b.enabled ? Bitmap.FLAG_AUTO : 0));
    }

    /** QEMU's {@code qmp_block_dirty_bitmap_add} (persistent), {@code qcow2_co_can_store_new_dirty_bitmap}. */
    @Override
    public synchronized void add(String name, long granularity, boolean disabled) throws IOException {
        ensureLoaded();
        if (name == null || name.isEmpty()) {
            throw new BitmapException(filename, "Bitmap name cannot be empty");
        }
        long bytesPerBit = granularity & 0xffff_ffffL; // QMP's granularity is a uint32
        if (granularity != 0) {
            if (bytesPerBit < 512 || Long.bitCount(bytesPerBit) != 1) {
                throw new BitmapException(filename, "Granularity must be power of 2 and at least 512");
            }
        } else {
            bytesPerBit = Math.min(65536, Math.max(4096, clusterSize)); // bdrv_get_default_bitmap_granularity
        }
        if (find(name) != null) {
            throw new BitmapException(filename, "Bitmap already exists: " + name);
        }
        String cannot = "Can't make bitmap '" + name + "' persistent in '" + filename + "': ";
        if (version < 3) {
            throw new BitmapException(filename, cannot + "Cannot store dirty bitmaps in qcow2 v2 files");
        }
        int granularityBits = Long.numberOfTrailingZeros(bytesPerBit);
        String constraint = constraintViolated(name, granularityBits);
        if (constraint != null) {
            throw new BitmapException(filename, cannot + constraint);
        }
        long directoryBytes = BitmapTable.directoryEntrySize(name);
        for (Loaded b : loaded) {
            directoryBytes += BitmapTable.directoryEntrySize(b.name);
        }
        if (loaded.size() + 1 > BitmapsExtension.MAX_BITMAPS) {
            throw new BitmapException(filename, cannot + "Maximum number of persistent bitmaps is already reached");
        }
        if (directoryBytes > BitmapsExtension.MAX_DIRECTORY_SIZE) {
            throw new BitmapException(filename, cannot + "Not enough space in the bitmap directory");
        }
        if (writes == null) {
            throw new BitmapException(filename, "Bitmap '" + name + "' is readonly and cannot be modified");
        }
        loaded.add(0, new Loaded(name, granularityBits, !disabled, false, new DirtyBitmap(granularityBits, image.size())));
        updateRecording();
    }

    /** QEMU's {@code check_constraints_on_bitmap}: what is wrong, in QEMU's words, or null. */
    private String constraintViolated(String name, int granularityBits) {
        if (granularityBits > BitmapTable.MAX_GRANULARITY_BITS) {
            return "Granularity exceeds maximum (" + (1L << BitmapTable.MAX_GRANULARITY_BITS) + " bytes)";
        }
        if (granularityBits < BitmapTable.MIN_GRANULARITY_BITS) {
            return "Granularity is under minimum (" + (1L << BitmapTable.MIN_GRANULARITY_BITS) + " bytes)";
        }
        long granules = BitmapTable.granules(image.size(), granularityBits);
        long bytes = (granules + 7) / 8;
        if (bytes > BitmapTable.MAX_PHYS_BYTES || bytes > BitmapTable.MAX_TABLE_ENTRIES * clusterSize) {
            return "Too much space will be occupied by the bitmap. Use larger granularity";
        }
        if (name.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > BitmapTable.MAX_NAME_SIZE) {
            return "Name length exceeds maximum (" + BitmapTable.MAX_NAME_SIZE + " characters)";
        }
        return null;
    }

    /**
     * qcow4j's own bound on what loading a stored bitmap allocates: each table entry with data (or all ones) may set
     * up to a cluster's worth of bits, and together they must fit in {@link #MAX_MEMORY_BYTES}.
     */
    private void checkMemory(BitmapTable t, long[] table) throws QcowException {
        long bytes = 0;
        for (long e : table) {
            if (BitmapTable.dataOffset(e) != 0 || (e & BitmapTable.ALL_ONES) != 0) {
                bytes += clusterSize;
            }
        }
        if (bytes > MAX_MEMORY_BYTES) {
            throw new QcowException(filename, "bitmap '" + t.name() + "' of granularity " + (1L << t.granularityBits())
                    + " has " + bytes + " bytes of set bits stored, more than qcow4j loads (" + MAX_MEMORY_BYTES + ")");
        }
    }

    /** QEMU's {@code block_dirty_bitmap_remove} and {@code qcow2_co_remove_persistent_dirty_bitmap}. */
    @Override
    public void remove(String name) throws IOException {
        if (writes == null) {
            synchronized (this) {
                writable(lookup(name));
            }
        }
        image.exclusively(() -> removeLocked(name)); // it writes: the image's writers wait
    }

    private synchronized void removeLocked(String name) throws IOException {
        Loaded b = lookup(name);
        writable(b);
        int i = indexOf(directory, name);
        if (i >= 0) {
            BitmapTable old = directory.get(i);
            List<BitmapTable> next = new ArrayList<>(directory);
            next.remove(i);
            updateDirectory(next);
            freeClusters(old);
        }
        loaded.remove(b);
        updateRecording();
    }

    /** QEMU's {@code qmp_block_dirty_bitmap_clear}. */
    @Override
    public synchronized void clear(String name) throws IOException {
        Loaded b = lookup(name);
        writable(b);
        usable(b);
        b.bits.clear();
    }

    /** QEMU's {@code qmp_block_dirty_bitmap_enable}. */
    @Override
    public synchronized void enable(String name) throws IOException {
        Loaded b = lookup(name);
        usable(b);
        b.enabled = true;
        updateRecording();
    }

    /** QEMU's {@code qmp_block_dirty_bitmap_disable}. */
    @Override
    public synchronized void disable(String name) throws IOException {
        Loaded b = lookup(name);
        usable(b);
        b.enabled = false;
        updateRecording();
    }

    /** QEMU's {@code block_dirty_bitmap_merge} and {@code bdrv_merge_dirty_bitmap}. */
    @Override
    public void merge(String target, DirtyBitmaps source, String sourceName) throws IOException {
        if (!(source instanceof PersistentBitmaps from)) {
            throw new IllegalArgumentException("the source bitmaps must come from an image of this library");
        }
        List<long[]> ranges;
        long sourceSize;
        synchronized (this) {
            lookup(target);
        }
        synchronized (from) {
            Loaded s = from.lookup(sourceName);
            sourceSize = s.bits == null ? from.image.size() : s.bits.size();
            ranges = s.inconsistent ? null : s.bits.ranges(0, Long.MAX_VALUE);
            synchronized (this) {
                Loaded d = lookup(target);
                writable(d);
                usable(d);
                if (s.inconsistent) {
                    throw from.inconsistent(s);
                }
                if (d.bits.size() != sourceSize) {
                    throw new BitmapException(filename, "Bitmaps are of different sizes (destination size is "
                            + d.bits.size() + ", source size is " + sourceSize + ") and can't be merged");
                }
                for (long[] r : ranges) {
                    d.bits.setBytes(r[0], r[1]);
                }
            }
        }
    }

    @Override
    public synchronized List<long[]> dirtyRanges(String name) throws IOException {
        Loaded b = lookup(name);
        usable(b);
        return b.bits.ranges(0, Long.MAX_VALUE);
    }

    @Override
    public synchronized List<long[]> dirtyRanges(String name, long offset, long length) throws IOException {
        Loaded b = lookup(name);
        usable(b);
        return b.bits.ranges(offset, length);
    }

    private Loaded find(String name) {
        for (Loaded b : loaded) {
            if (b.name.equals(name)) {
                return b;
            }
        }
        return null;
    }

    /** QEMU's {@code block_dirty_bitmap_lookup}. */
    private Loaded lookup(String name) throws IOException {
        ensureLoaded();
        Loaded b = find(name);
        if (b == null) {
            throw new BitmapException(filename, "Dirty bitmap '" + name + "' not found");
        }
        return b;
    }

    /** QEMU's {@code BDRV_BITMAP_RO} check. */
    private void writable(Loaded b) throws BitmapException {
        if (writes == null) {
            throw new BitmapException(filename, "Bitmap '" + b.name + "' is readonly and cannot be modified");
        }
    }

    /** QEMU's {@code BDRV_BITMAP_INCONSISTENT} check. */
    private void usable(Loaded b) throws BitmapException {
        if (b.inconsistent) {
            throw inconsistent(b);
        }
    }

    private BitmapException inconsistent(Loaded b) {
        return new BitmapException(filename, "Bitmap '" + b.name + "' is inconsistent and cannot be used", INCONSISTENT_HINT);
    }

    private static int indexOf(List<BitmapTable> list, String name) {
        for (int i = 0; i < list.size(); i++) {
            if (list.get(i).name().equals(name)) {
                return i;
            }
        }
        return -1;
    }

    // ------------------------------------------------------------------------------------------ storing

    /**
     * QEMU's {@code qcow2_store_persistent_dirty_bitmaps}, run when the image closes (the caller flushes after):
     * every consistent bitmap written anew, the directory and header switched to them, the old clusters freed.
     */
    synchronized void store() throws IOException {
        boolean needWrite = false;
        List<BitmapTable> list = new ArrayList<>(directory);
        List<BitmapTable> drop = new ArrayList<>();
        List<Loaded> owner = new ArrayList<>();
        for (BitmapTable ignored : list) {
            owner.add(null);
        }
        for (Loaded b : loaded) { // FOR_EACH_DIRTY_BITMAP: the newest first
            if (b.inconsistent) {
                continue;
            }
            needWrite = true;
            String constraint = constraintViolated(b.name, b.granularityBits);
            if (constraint != null) {
                throw new BitmapException(filename, "Bitmap '" + b.name + "' doesn't satisfy the constraints: " + constraint);
            }
            int flags = b.enabled ? Bitmap.FLAG_AUTO : 0;
            BitmapTable entry = new BitmapTable(b.name, 0, 0, flags, b.granularityBits);
            int i = indexOf(list, b.name);
            if (i < 0) {
                if (list.size() + 1 > BitmapsExtension.MAX_BITMAPS) {
                    throw new BitmapException(filename, "Too many persistent bitmaps");
                }
                list.add(entry);
                owner.add(b);
                if (BitmapTable.directorySize(list) > BitmapsExtension.MAX_DIRECTORY_SIZE) {
                    throw new BitmapException(filename, "Bitmap directory is too large");
                }
            } else {
                if ((list.get(i).flags() & Bitmap.FLAG_IN_USE) == 0) {
                    throw new BitmapException(filename, "Bitmap '" + b.name + "' already exists in the image");
                }
                drop.add(list.get(i));
                list.set(i, entry);
                owner.set(i, b);
            }
        }
        if (!needWrite) {
            return;
        }
        for (int i = 0; i < list.size(); i++) {
            if (owner.get(i) != null) {
                list.set(i, storeBitmap(owner.get(i), list.get(i)));
            }
        }
        updateDirectory(list);
        for (BitmapTable t : drop) {
            freeClusters(t);
        }
    }

    /** QEMU's {@code store_bitmap} and {@code store_bitmap_data}: the dirty data clusters, then the table. */
    private BitmapTable storeBitmap(Loaded b, BitmapTable entry) throws IOException {
        DirtyBitmap bits = b.bits;
        long entries = BitmapTable.tableEntriesFor(bits.size(), b.granularityBits, clusterBits);
        if (entries > BitmapTable.MAX_TABLE_ENTRIES || entries * clusterSize > BitmapTable.MAX_PHYS_BYTES) {
            throw new BitmapException(filename, "Bitmap '" + b.name + "' is too big");
        }
        long[] table = new long[(int) entries];
        long perCluster = BitmapTable.granulesPerCluster(clusterBits);
        long granules = bits.granules();
        for (long g = bits.nextSet(0); g >= 0; ) {
            int i = (int) (g / perCluster);
            long from = i * perCluster;
            long offset = refcounts.allocate(1);
            refcounts.markMetadata(offset, 1, "data of bitmap '" + b.name + "'");
            ByteBuffer data = ByteBuffer.allocate((int) clusterSize);
            bits.serialize(from, Math.min(perCluster, granules - from), data);
            storage.writeFully(data, offset);
            table[i] = offset;
            g = from + perCluster < granules ? bits.nextSet(from + perCluster) : -1;
        }
        long tableBytes = entries * BitmapTable.ENTRY_SIZE;
        long tableOffset = refcounts.allocate((tableBytes + clusterSize - 1) >>> clusterBits);
        mark(tableOffset, tableBytes, "table of bitmap '" + b.name + "'", true);
        ByteBuffer out = ByteBuffer.allocate((int) tableBytes);
        out.asLongBuffer().put(table);
        storage.writeFully(out, tableOffset);
        return entry.with(tableOffset, (int) entries, entry.flags());
    }

    /**
     * QEMU's {@code update_ext_header_and_dir}: the new directory in new clusters, the image's caches flushed, the
     * header naming it (or, with no bitmaps left, without the extension and its autoclear bit), the old one freed.
     */
    private void updateDirectory(List<BitmapTable> list) throws IOException {
        long oldOffset = directoryOffset;
        long oldSize = directorySize;
        long offset = 0;
        long size = 0;
        if (!list.isEmpty()) {
            ByteBuffer dir = BitmapTable.encodeDirectory(list);
            size = dir.remaining();
            offset = refcounts.allocate((size + clusterSize - 1) >>> clusterBits);
            storage.writeFully(dir, offset);
            writes.flush();
            autoclear |= Feature.BITMAPS.mask();
        } else {
            autoclear &= ~Feature.BITMAPS.mask();
        }
        directory = List.copyOf(list);
        directoryOffset = offset;
        directorySize = size;
        writeHeader(extension());
        mark(oldOffset, oldSize, "bitmap directory", false);
        mark(offset, size, "bitmap directory", true);
        if (oldSize > 0) {
            refcounts.free(oldOffset, oldSize, RefcountTable.Discard.OTHER);
        }
    }

    /** QEMU's {@code free_bitmap_clusters}: the data clusters (punched) and the table of an entry no longer used. */
    private void freeClusters(BitmapTable t) throws IOException {
        long[] table;
        try {
            table = readTable(t);
        } catch (FormatException e) {
            return; // QEMU: the table cannot be loaded, its clusters leak
        }
        mark(t.offset(), (long) t.entries() * BitmapTable.ENTRY_SIZE, "table", false);
        for (long e : table) {
            long data = BitmapTable.dataOffset(e);
            if (data != 0) {
                refcounts.unmarkMetadata(data, 1);
                refcounts.free(data, clusterSize, RefcountTable.Discard.ALWAYS);
            }
        }
        refcounts.free(t.offset(), (long) t.entries() * BitmapTable.ENTRY_SIZE, RefcountTable.Discard.OTHER);
        refcounts.processDiscards();
    }

    /**
     * QEMU's {@code update_ext_header_and_dir_in_place}, as {@code qcow2_load_dirty_bitmaps} runs it, to the same
     * bytes but without its crash window: QEMU drops the bitmaps autoclear bit while it rewrites the directory, so a
     * crash there loses every bitmap. Here only the flags change (the same directory bytes but for the in-use bits, so
     * a torn write leaves each entry flagged or as it was, and nothing has been written since it was loaded), so the
     * directory is rewritten in place and forced, then the header written as QEMU leaves it if its bytes differ.
     */
    private void updateInPlace(List<BitmapTable> inUse) throws IOException {
        directory = List.copyOf(inUse);
        storage.writeFully(BitmapTable.encodeDirectory(directory), directoryOffset);
        storage.force();
        Header current = Qcow2Image.readHeader(storage, filename);
        ByteBuffer rewritten = current.rewritten(extension(), autoclearOver(current)).toCluster();
        if (storage.length() < clusterSize || !rewritten.equals(storage.read(0, (int) clusterSize))) {
            writeHeader(extension());
        }
    }

    /**
     * The autoclear bits of a header written over {@code current}: the bitmaps bit as this object keeps it, QEMU's
     * other known bits as the header now on disk has them (an amend may have cleared the raw data file bit since
     * the open, as QEMU's {@code s->autoclear_features}), the unknown ones cleared as QEMU's read-write open does.
     */
    private long autoclearOver(Header current) {
        return (current.autoclearFeatures() & KNOWN_AUTOCLEAR & ~Feature.BITMAPS.mask())
                | (autoclear & Feature.BITMAPS.mask());
    }

    private BitmapsExtension extension() {
        return directory.isEmpty() ? null : new BitmapsExtension(directory.size(), directorySize, directoryOffset);
    }

    /**
     * QEMU's {@code update_header_sync}: cluster 0 rewritten as {@code qcow2_update_header} writes it, from the header
     * now on disk (its other fields are written in place as they change), then forced.
     */
    private void writeHeader(BitmapsExtension ext) throws IOException {
        Header current = Qcow2Image.readHeader(storage, filename);
        storage.writeFully(current.rewritten(ext, autoclearOver(current)).toCluster(), 0);
        storage.force();
    }
}
