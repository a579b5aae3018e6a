package org.qcow4j.qcow2;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import org.qcow4j.CreateOptions;
import org.qcow4j.QcowException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.format.ClusterGeometry;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.format.L1Entry;
import org.qcow4j.format.L2Entry;
import org.qcow4j.format.RefcountBlock;
import org.qcow4j.io.Zeros;

/**
 * Lays out a new qcow2 image in one pass, guest clusters in increasing order (what {@code convert} and
 * {@code create} need). Host clusters are appended: header (cluster 0), refcount table, the first refcount
 * block, the L1 table, then each L2 table just before the first data cluster it maps, as qemu-img does.
 * Refcount blocks describe the range they start and are written once the append point has passed their
 * range; every cluster is used once, except those holding several compressed streams, which are counted per
 * stream as QEMU does. Memory stays flat: one L2 table, one compressed cluster, the L1 and refcount tables
 * (both bounded by QEMU's limits) and the few extra counts of shared compressed clusters.
 *
 * <p>The file is complete only after {@link #finish}; callers write to a temporary name and rename.
 */
public final class Qcow2Writer implements Closeable {
    private final String name;
    private final FileChannel file;
    private final FileChannel dataFile;
    private final CreateOptions options;
    private final ClusterGeometry geo;
    private final int clusterBits;
    private final int clusterSize;
    private final long guestClusters;
    private final long[] l1;
    private final long l1Offset;
    private final long reftableOffset;
    private final long[] reftable;
    private final long refsPerBlock;
    private final int refcountOrder;
    private final long refMax;

    private long next;
    private long writtenRanges;
    private long[] extraCluster = new long[16];
    private long[] extraCount = new long[16];
    private int extras;

    private long l2Index = -1;
    private long l2Offset;
    private final ByteBuffer l2;
    /** The payload cipher of an encrypted image (data clusters are written encrypted), else null. */
    private final org.qcow4j.crypto.DiskCipher cipher;
    /** Where the LUKS header region lies (QEMU's full disk encryption header pointer), else null. */
    private final org.qcow4j.format.CryptoExtension cryptoRegion;

    private long compressedCluster = -1;
    private int compressedUsed;
    private final ByteBuffer compressedBuf;

    private long nextGuestCluster;
    private long fileEnd;
    private boolean finished;
    /** The external data file this writer created, removed again if the image is never finished. */
    private final Path createdDataFile;

    private Qcow2Writer(String name, FileChannel file, FileChannel dataFile, Path createdDataFile, CreateOptions o,
                        long dataClustersHint) throws IOException {
        this.name = name;
        this.file = file;
        this.dataFile = dataFile;
        this.createdDataFile = createdDataFile;
        this.options = o;
        this.geo = o.geometry();
        this.clusterBits = o.clusterBits();
        this.clusterSize = 1 << clusterBits;
        this.guestClusters = geo.sizeToClusters(o.size());
        this.refcountOrder = o.refcountOrder();
        this.refsPerBlock = RefcountBlock.entries(clusterBits, refcountOrder);
        this.refMax = RefcountBlock.max(refcountOrder);
        this.l2 = ByteBuffer.allocate(clusterSize);
        this.compressedBuf = ByteBuffer.allocate(clusterSize);

        long l1Entries = geo.l1EntriesFor(o.size());
        this.l1 = new long[(int) l1Entries];
        long l1Clusters = geo.sizeToClusters(l1Entries * 8);
        org.qcow4j.crypto.Luks.Created luks = o.encryption() == null ? null : Encryption.create(o.encryption(), name);
        long regionClusters = luks == null ? 0 : geo.sizeToClusters(luks.region().length);
        // Worst case: every hinted data cluster in an L2 table of its own.
        int reftableClusters = reftableClusters(1 + l1Clusters + regionClusters + Math.min(l1Entries, dataClustersHint)
                + dataClustersHint);
        this.reftable = new long[(int) ((long) reftableClusters * clusterSize / 8)];
        allocate(1 + reftableClusters); // header and refcount table; the first refcount block follows
        this.reftableOffset = (long) clusterSize;
        this.l1Offset = l1Entries == 0 ? 0 : allocate(l1Clusters) << clusterBits; // QEMU: 0 for an empty L1
        if (luks != null) {
            // qcow2_set_up_encryption: the LUKS header region in clusters of its own after the L1 table
            long at = allocate(regionClusters) << clusterBits;
            write(file, ByteBuffer.wrap(luks.region()), at);
            java.util.Arrays.fill(luks.region(), (byte) 0);
            fileEnd = Math.max(fileEnd, at + (regionClusters << clusterBits));
            this.cryptoRegion = new org.qcow4j.format.CryptoExtension(at, luks.region().length);
            this.cipher = luks.cipher();
        } else {
            this.cryptoRegion = null;
            this.cipher = null;
        }
    }

    /**
     * The bytes a new image's LUKS header region takes for {@code o} (QEMU's qcrypto_block_calculate_payload_offset, as
     * qcow2_measure asks it), the cipher options checked as a create checks them: IllegalArgumentException in QEMU's
     * words.
     */
    public static long luksRegionLength(org.qcow4j.EncryptionOptions o) throws org.qcow4j.UnsupportedFeatureException {
        return Encryption.regionLength(o, "measure");
    }

    /** {@code data} as it goes to host offset {@code host}: encrypted in an encrypted image (a copy), else itself. */
    private ByteBuffer payload(ByteBuffer data, long host) {
        if (cipher == null) {
            return data;
        }
        int len = data.remaining();
        if (payload.length < len) {
            payload = new byte[len];
        }
        data.get(data.position(), payload, 0, len);
        cipher.encryptInParallel(host, payload, 0, len);
        return ByteBuffer.wrap(payload, 0, len);
    }

    /** The encrypted copy {@link #payload} returns, reused: each is written before the next is made. */
    private byte[] payload = new byte[0];

    /**
     * Starts a new image at {@code path} (created or truncated). {@code dataClustersHint} is an upper bound of
     * the data clusters that will be written, used to size the refcount table.
     *
     * @param name the image's name for messages (the user's name for it when {@code path} is a temporary file)
     */
    public static Qcow2Writer create(Path path, String name, CreateOptions options, long dataClustersHint)
            throws IOException {
        CreateOptions o = options.validate();
        FileChannel f = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.READ);
        // Not O_TRUNC on an empty file: ext4 then flushes the whole file when it is closed (its "replace via
        // truncate" heuristic), which made close() write out every delayed block: a convert 2x slower.
        if (f.size() > 0) {
            f.truncate(0);
        }
        FileChannel d = null;
        Path createdDataFile = null;
        try {
            if (o.dataFile() != null) {
                // As QEMU's qcow2_co_create_opts: the name parsed as a command-line name (a file: prefix dropped),
                // the file created from the working directory (not the image's: QEMU opens it from there too)
                Path dp = Path.of(ChainOpener.localFileName(name, o.dataFile()));
                createdDataFile = Files.exists(dp) ? null : dp;
                d = FileChannel.open(dp, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING);
            }
            boolean prealloc = o.preallocation() != CreateOptions.Preallocation.OFF;
            long hint = o.dataFile() != null ? 0 : prealloc ? o.geometry().sizeToClusters(o.size()) : dataClustersHint;
            return new Qcow2Writer(name, f, d, createdDataFile, o, hint);
        } catch (IOException | RuntimeException e) {
            f.close();
            if (d != null) {
                d.close();
            }
            if (createdDataFile != null) {
                Files.deleteIfExists(createdDataFile);
            }
            throw e;
        }
    }

    /**
     * Whether the layout {@link #create} makes for {@code options} can depend on its data clusters hint, which may be up
     * to {@code maxHint}: the hint only sizes the refcount table, and for most images (1 GiB with 64 KiB clusters: one
     * cluster of table for up to 16 TiB) the worst case needs no more table than none. Then the caller need not work the
     * hint out (for a raw input a look at its file's extent map: a process, tens of milliseconds). Conservatively true
     * for images whose creation does more than data and tables (encryption, data file, preallocation).
     */
    public static boolean layoutDependsOnHint(CreateOptions options, long maxHint) {
        CreateOptions o = options.validate();
        if (o.encryption() != null || o.dataFile() != null || o.preallocation() != CreateOptions.Preallocation.OFF) {
            return true;
        }
        ClusterGeometry geo = o.geometry();
        long l1Entries = geo.l1EntriesFor(o.size());
        long fixed = 1 + geo.sizeToClusters(l1Entries * 8);
        long refsPerBlock = RefcountBlock.entries(o.clusterBits(), o.refcountOrder());
        int clusterSize = 1 << o.clusterBits();
        return reftableClusters(fixed + Math.min(l1Entries, maxHint) + maxHint, refsPerBlock, clusterSize)
                != reftableClusters(fixed, refsPerBlock, clusterSize);
    }

    /** Refcount table clusters for an image of at most {@code clusters} host clusters plus its refcount blocks. */
    private int reftableClusters(long clusters) {
        return reftableClusters(clusters, refsPerBlock, clusterSize);
    }

    private static int reftableClusters(long clusters, long refsPerBlock, int clusterSize) {
        long rt = 1;
        while (true) {
            long blocks = (clusters + rt + refsPerBlock - 1) / refsPerBlock;
            blocks = (clusters + rt + blocks + refsPerBlock - 1) / refsPerBlock;
            long need = Math.max(1, (blocks * 8 + clusterSize - 1) / clusterSize);
            long max = Header.MAX_REFTABLE_BYTES / clusterSize;
            if (need <= rt || rt >= max) {
                return (int) Math.min(rt, Math.max(1, max));
            }
            rt = need;
        }
    }

    public CreateOptions options() {
        return options;
    }

    // ------------------------------------------------------------------ host cluster allocation and refcounts

    /** Appends {@code n} contiguous clusters and the refcount blocks of any range they enter; returns the first. */
    private long allocate(long n) throws IOException {
        long start = next;
        next += n;
        for (long r = start / refsPerBlock; r <= (next - 1) / refsPerBlock; r++) {
            if (r >= reftable.length) {
                throw new QcowException(name, "image outgrows its refcount table of " + reftable.length
                        + " entries (use a larger cluster size)");
            }
            if (reftable[(int) r] == 0) {
                reftable[(int) r] = next++ << clusterBits; // may open another range: the loop bound moves
            }
        }
        // A range is final once the append point is past it; the open compressed cluster may still be in it, and
        // gets no more streams once its range is written.
        while ((writtenRanges + 1) * refsPerBlock < next) {
            if (compressedCluster >= 0 && compressedCluster / refsPerBlock == writtenRanges) {
                closeCompressed();
            }
            writeRefcountBlock(writtenRanges++);
        }
        return start;
    }

    private long count(long cluster) {
        long c = cluster < next ? 1 : 0;
        for (int i = extras - 1; i >= 0 && extraCluster[i] >= cluster; i--) {
            if (extraCluster[i] == cluster) {
                c += extraCount[i];
            }
        }
        return c;
    }

    private void addExtra(long cluster) {
        if (extras > 0 && extraCluster[extras - 1] == cluster) {
            extraCount[extras - 1]++;
            return;
        }
        if (extras == extraCluster.length) {
            extraCluster = Arrays.copyOf(extraCluster, extras * 2);
            extraCount = Arrays.copyOf(extraCount, extras * 2);
        }
        extraCluster[extras] = cluster;
        extraCount[extras++] = 1;
    }

    private void writeRefcountBlock(long range) throws IOException {
        ByteBuffer block = ByteBuffer.allocate(clusterSize);
        long first = range * refsPerBlock;
        long end = Math.min(first + refsPerBlock, next);
        for (long c = first; c < end; c++) {
            RefcountBlock.set(block, (int) (c - first), refcountOrder, 1);
        }
        int used = 0;
        while (used < extras && extraCluster[used] < first + refsPerBlock) {
            long c = extraCluster[used];
            RefcountBlock.set(block, (int) (c - first), refcountOrder, 1 + extraCount[used]);
            used++;
        }
        if (used > 0) {
            System.arraycopy(extraCluster, used, extraCluster, 0, extras - used);
            System.arraycopy(extraCount, used, extraCount, 0, extras - used);
            extras -= used;
        }
        write(file, block, reftable[(int) range]);
    }

    // ------------------------------------------------------------------ L2 tables

    /** Makes the L2 table of {@code guestCluster} current (allocating it on first use); returns the entry index. */
    private int l2Slot(long guestCluster) throws IOException {
        long index = guestCluster >>> geo.l2Bits();
        if (index != l2Index) {
            flushL2();
            l2Index = index;
            l2Offset = allocate(1) << clusterBits;
            l1[(int) index] = l2Offset | L1Entry.COPIED;
            Zeros.fill(l2.clear()); // a copy, native before the JIT compiles anything: e2image -Q starts one every 2 MiB
        }
        return (int) (guestCluster & (geo.l2Entries() - 1));
    }

    private void setEntry(long guestCluster, long entry, long bitmap) throws IOException {
        int slot = l2Slot(guestCluster);
        l2.putLong(slot * geo.l2EntrySize(), entry);
        if (geo.extendedL2()) {
            l2.putLong(slot * geo.l2EntrySize() + 8, bitmap);
        }
    }

    private void flushL2() throws IOException {
        if (l2Index >= 0) {
            write(file, l2.duplicate().clear(), l2Offset);
            l2Index = -1;
        }
    }

    // ------------------------------------------------------------------ guest writes, in increasing order

    private void advanceTo(long guestCluster) throws IOException {
        if (finished || guestCluster < nextGuestCluster || guestCluster >= guestClusters) {
            throw new IllegalStateException("guest cluster " + guestCluster + " out of order (next " + nextGuestCluster
                    + ", image has " + guestClusters + ")");
        }
        fillTo(guestCluster);
        nextGuestCluster = guestCluster + 1;
    }

    /** Maps the clusters skipped so far where the image needs every cluster mapped (preallocation, raw data file). */
    private void fillTo(long guestCluster) throws IOException {
        boolean raw = options.dataFileRaw();
        CreateOptions.Preallocation p = options.preallocation();
        if (!raw && p == CreateOptions.Preallocation.OFF) {
            nextGuestCluster = guestCluster;
            return;
        }
        // falloc and full allocate the data's file, the external data file too (zeros written: the JDK has no
        // fallocate); metadata leaves holes
        // metadata leaves holes, except in an encrypted image, where only encrypted zeros read as zeros (QEMU's
        // convert writes them: such a target has no zero init)
        ByteBuffer zeros = (p == CreateOptions.Preallocation.OFF || p == CreateOptions.Preallocation.METADATA) && cipher == null
                ? null : ByteBuffer.allocate(clusterSize);
        for (long gc = nextGuestCluster; gc < guestCluster; gc++) {
            mapData(gc, zeros == null ? null : zeros.clear(), p != CreateOptions.Preallocation.OFF);
        }
        nextGuestCluster = guestCluster;
    }

    /**
     * Maps one guest cluster to a new host cluster, or to its own offset in the external data file. The extended L2
     * bitmap of a {@code preallocated} cluster says "not allocated", as QEMU's does, so that reads still go to the
     * backing file (why QEMU allows preallocation with a backing file only with extended L2).
     */
    private long map(long gc, boolean preallocated) throws IOException {
        long host;
        if (dataFile != null) {
            host = gc << clusterBits;
        } else {
            l2Slot(gc); // the L2 table goes before the data it maps
            host = allocate(1) << clusterBits;
        }
        setEntry(gc, host | L2Entry.COPIED, preallocated ? 0 : L2Entry.BITMAP_ALL_ALLOC);
        return host;
    }

    /** Maps one guest cluster and writes {@code data} there, if any (else the cluster stays a hole). */
    private void mapData(long gc, ByteBuffer data, boolean preallocated) throws IOException {
        long host = map(gc, preallocated);
        if (data != null) {
            write(dataFile != null ? dataFile : file, payload(data, host), host);
        } else if (dataFile == null) {
            fileEnd = Math.max(fileEnd, host + clusterSize);
        }
    }

    /**
     * Writes whole clusters of data starting at guest cluster {@code guestCluster}: {@code data.remaining()} must be a
     * multiple of the cluster size (pad the image's last cluster with zeros). Host-contiguous runs go out in one write.
     */
    public void writeData(long guestCluster, ByteBuffer data) throws IOException {
        int n = data.remaining() >> clusterBits;
        if (n << clusterBits != data.remaining()) {
            throw new IllegalArgumentException("data must be whole clusters, got " + data.remaining() + " bytes");
        }
        long runHost = -1;
        int runStart = data.position();
        int runLen = 0;
        for (int i = 0; i < n; i++) {
            long gc = guestCluster + i;
            advanceTo(gc);
            long host = map(gc, false);
            if (runLen > 0 && host != runHost + runLen) {
                writeRun(data, runStart, runLen, runHost);
                runLen = 0;
            }
            if (runLen == 0) {
                runHost = host;
                runStart = data.position() + (i << clusterBits);
            }
            runLen += clusterSize;
        }
        if (runLen > 0) {
            writeRun(data, runStart, runLen, runHost);
        }
        data.position(data.limit());
    }

    private void writeRun(ByteBuffer data, int start, int len, long host) throws IOException {
        write(dataFile != null ? dataFile : file, payload(data.slice(start, len), host), host);
    }

    /** Marks a guest cluster as reading zeros without a host cluster (v3 zero flag or extended-L2 zero bits). */
    public void writeZero(long guestCluster) throws IOException {
        if (options.version() < 3) {
            throw new IllegalStateException("version 2 images have no zero clusters; write zeros as data");
        }
        advanceTo(guestCluster);
        if (options.dataFileRaw()) {
            // The raw data file must read as zeros here too: map the cluster to its (sparse) place.
            mapData(guestCluster, ByteBuffer.allocate(clusterSize), false);
        } else if (geo.extendedL2()) {
            setEntry(guestCluster, 0, L2Entry.BITMAP_ALL_ZERO);
        } else {
            setEntry(guestCluster, L2Entry.ZERO, 0);
        }
    }

    /**
     * Stores a compressed cluster: {@code stream} (shorter than a cluster) is packed byte-contiguously after the
     * previous one, spilling into the next host cluster when that one is contiguous, as QEMU packs them.
     */
    public void writeCompressed(long guestCluster, ByteBuffer stream) throws IOException {
        int len = stream.remaining();
        if (len >= clusterSize || len == 0) {
            throw new IllegalArgumentException("compressed stream of " + len + " bytes for " + clusterSize + "-byte clusters");
        }
        if (dataFile != null) {
            throw new IllegalStateException("compressed clusters are not possible with an external data file");
        }
        advanceTo(guestCluster);
        l2Slot(guestCluster); // the L2 table goes before the data it maps
        // Like QEMU's qcow2_alloc_bytes: fill the open compressed cluster, wherever it is, while its refcount allows;
        // spill into the next cluster only if that is the next one allocated.
        boolean open = compressedCluster >= 0 && compressedUsed < clusterSize
                && Long.compareUnsigned(count(compressedCluster), refMax) < 0;
        boolean fits = open && compressedUsed + len <= clusterSize;
        boolean canSpill = open && compressedCluster == next - 1
                && (next % refsPerBlock != 0 || reftable[(int) (next / refsPerBlock)] != 0);
        if (fits || canSpill) {
            addExtra(compressedCluster);
        } else {
            closeCompressed();
            compressedCluster = allocate(1);
            compressedUsed = 0;
        }
        long host = (compressedCluster << clusterBits) + compressedUsed;
        int first = Math.min(len, clusterSize - compressedUsed);
        compressedBuf.put(compressedUsed, stream, stream.position(), first);
        compressedUsed += first;
        if (first < len) {
            writeCompressedCluster();
            compressedCluster = allocate(1);
            Arrays.fill(compressedBuf.array(), (byte) 0);
            compressedBuf.put(0, stream, stream.position() + first, len - first);
            compressedUsed = len - first;
        }
        stream.position(stream.limit());
        setEntry(guestCluster, L2Entry.compressed(host, len, clusterBits), 0);
    }

    private void writeCompressedCluster() throws IOException {
        int len = (compressedUsed + L2Entry.COMPRESSED_SECTOR_SIZE - 1) & -L2Entry.COMPRESSED_SECTOR_SIZE;
        write(file, compressedBuf.slice(0, Math.min(len, clusterSize)), compressedCluster << clusterBits);
    }

    private void closeCompressed() throws IOException {
        if (compressedCluster >= 0) {
            writeCompressedCluster();
            compressedCluster = -1;
            Arrays.fill(compressedBuf.array(), (byte) 0);
        }
    }

    // ------------------------------------------------------------------ finishing

    /**
     * Writes the metadata: the last L2 table, the remaining refcount blocks, the refcount table, the L1 table and
     * finally the header. With {@code durable}, forces everything to disk.
     */
    public void finish(boolean durable) throws IOException {
        if (nextGuestCluster < guestClusters) {
            fillTo(guestClusters);
        }
        closeCompressed();
        flushL2();
        finished = true;
        for (long r = writtenRanges; r <= (next - 1) / refsPerBlock; r++) {
            writeRefcountBlock(r);
        }
        writtenRanges = (next - 1) / refsPerBlock + 1;
        ByteBuffer rt = ByteBuffer.allocate(reftable.length * 8);
        rt.asLongBuffer().put(reftable);
        write(file, rt, reftableOffset);
        if (l1.length > 0) {
            ByteBuffer l1buf = ByteBuffer.allocate(l1.length * 8);
            l1buf.asLongBuffer().put(l1);
            write(file, l1buf, l1Offset);
        }
        if (dataFile != null) {
            // qemu-img makes the data file as long as the disk (a raw one in whole clusters), sparse.
            long length = options.dataFileRaw() ? guestClusters << clusterBits : options.size();
            if (dataFile.size() < length) {
                write(dataFile, ByteBuffer.allocate(1), length - 1);
            }
        }
        if (file.size() < fileEnd) {
            write(file, ByteBuffer.allocate(1), fileEnd - 1);
        }
        write(file, ByteBuffer.wrap(header().toBytes()), 0);
        if (durable) {
            file.force(false); // fdatasync, as QEMU flushes
            if (dataFile != null) {
                dataFile.force(false);
            }
        }
    }

    private Header header() throws UnsupportedFeatureException {
        CreateOptions o = options;
        // the name QEMU's data file node has: the file name given, without a file: prefix
        String dataFileName = o.dataFile() == null ? null : ChainOpener.localFileName(name, o.dataFile());
        long incompatible = (o.dataFile() != null ? Feature.EXTERNAL_DATA_FILE.mask() : 0)
                | (o.compressionType() != Header.COMPRESSION_ZLIB ? Feature.COMPRESSION_TYPE.mask() : 0)
                | (o.extendedL2() ? Feature.EXTENDED_L2.mask() : 0);
        long compatible = o.lazyRefcounts() ? Feature.LAZY_REFCOUNTS.mask() : 0;
        long autoclear = o.dataFileRaw() ? Feature.RAW_EXTERNAL_DATA.mask() : 0;
        Header h = Header.newImage(o.version(), clusterBits, o.size(), l1.length, l1Offset, reftableOffset,
                (int) (reftable.length * 8L / clusterSize), incompatible, compatible, autoclear, refcountOrder,
                o.compressionType(), o.backingFile(), o.backingFormat(), dataFileName);
        return cryptoRegion == null ? h : h.withEncryption(cryptoRegion);
    }

    private void write(FileChannel ch, ByteBuffer src, long pos) throws IOException {
        long end = pos + src.remaining();
        try {
            while (src.hasRemaining()) {
                pos += ch.write(src, pos);
            }
        } catch (IOException e) {
            throw new QcowException(name, "cannot write at offset " + pos + ": " + e.getMessage(), e);
        }
        if (ch == file) {
            fileEnd = Math.max(fileEnd, end);
        }
    }

    /** Closes the files; an unfinished image's data file is removed if this writer created it. */
    @Override
    @SuppressWarnings("try") // the resources are only there to be closed, each even if another fails
    public void close() throws IOException {
        if (cipher != null) {
            cipher.close();
        }
        try (file; FileChannel d = dataFile) {
            // closed by try-with-resources
        } finally {
            if (!finished && createdDataFile != null) {
                Files.deleteIfExists(createdDataFile);
            }
        }
    }
}
