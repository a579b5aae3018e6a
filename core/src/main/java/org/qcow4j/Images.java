package org.qcow4j;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.LongConsumer;
import org.qcow4j.ops.Conversion;
import org.qcow4j.ops.ImageComparison;
import org.qcow4j.ops.ImageCopier;
import org.qcow4j.ops.ImageResize;
import org.qcow4j.ops.RangeCopy;
import org.qcow4j.ops.SequentialWrite;
import org.qcow4j.ops.ManagedImage;
import org.qcow4j.ops.Measurement;
import org.qcow4j.ops.TemporaryOverlay;
import org.qcow4j.qcow2.ChainOpener;
import org.qcow4j.qcow2.Qcow2Check;
import org.qcow4j.qcow2.Qcow2Image;

/**
 * Entry point of the library: opens, creates, checks, repairs and converts disk images. The only class of the API
 * that reaches into the engine; everything it returns is an API type.
 */
public final class Images {
    private Images() {
    }

    /** Opens {@code path} (format probed) with its backing chain. */
    public static DiskImage open(Path path) throws IOException {
        return open(path, OpenOptions.defaults());
    }

    /** Opens {@code path} with its backing chain as {@code options} say. */
    public static DiskImage open(Path path, OpenOptions options) throws IOException {
        return new ChainOpener(options).open(path.toString(), options.format(), 0, null);
    }

    /** The format of {@code path} as qemu-img probes it: "qcow2" if it starts with the qcow2 magic, else "raw". */
    public static String probeFormat(Path path) throws IOException {
        return ChainOpener.probe(path);
    }

    /**
     * Opens the qcow2 or raw image {@code path} for reading and writing (a qcow2 image's backing chain read-only).
     * A dirty qcow2 image (lazy refcounts, not closed) is repaired first, as QEMU does; one marked corrupt opens
     * read-only with a warning. Persistent bitmaps are loaded, flagged in use on disk, record writes and are stored on
     * close ({@link DirtyBitmaps}). An external data file is written as QEMU writes it (data clusters at their guest
     * offsets; a raw one kept equal to the disk). Images
     * with internal snapshots take writes as QEMU's do (shared tables and clusters copied on write). A raw image whose format was probed refuses writes that would make it probe as qcow2.
     * Writes follow the request rules of {@code options} (writethrough, discard, detect-zeroes).
     */
    public static WritableImage openWritable(Path path, OpenOptions options) throws IOException {
        return ManagedImage.of(Qcow2Image.openWritable(path, options), options);
    }

    /**
     * Opens {@code path} as QEMU's {@code snapshot=on} does ({@code qemu-io -s}): read-only, as the backing file of a
     * new temporary qcow2 overlay that takes the writes and is deleted on close, so {@code path} never changes. The
     * overlay is made in {@code $TMPDIR} (else {@code /var/tmp}); writes follow the rules of {@code options}.
     */
    public static WritableImage openTemporaryOverlay(Path path, OpenOptions options) throws IOException {
        return TemporaryOverlay.open(path, options);
    }

    /** Opens {@code path} for writing with the default options. */
    public static WritableImage openWritable(Path path) throws IOException {
        return openWritable(path, OpenOptions.defaults());
    }

    /** The internal snapshots of the qcow2 image {@code path} ({@code qemu-img snapshot -l}), read-only. */
    public static List<org.qcow4j.format.Snapshot> snapshots(Path path, OpenOptions options) throws IOException {
        try (DiskImage d = open(path, options.withoutBacking())) {
            return d.qcow2().map(Qcow2Metadata::snapshots).orElse(List.of());
        }
    }

    /**
     * Opens the qcow2 image {@code path} read-only as of its snapshot with that {@code id} and {@code name} (either
     * null to match any), as QEMU's {@code bdrv_snapshot_load_tmp} for {@code qemu-img convert -l}: reads go through
     * the snapshot's L1 table (and the backing chain below); the size is the image's current one, as in QEMU.
     *
     * @throws SnapshotException (NOT_FOUND) when none matches, (NOT_SUPPORTED) for a raw image
     */
    public static DiskImage openSnapshot(Path path, OpenOptions options, String id, String name) throws IOException {
        return Qcow2Image.openSnapshot(path, options, id, name);
    }

    /**
     * Takes an internal snapshot of the qcow2 image {@code path} named {@code name}, dated now, as {@code qemu-img
     * snapshot -c} does (QEMU's id: one more than the largest; no VM state; clocks 0), byte for byte in QEMU's
     * layout and order of writes: the L1 copy and the raised refcounts are on disk before the snapshot table and
     * the header name them, so a crash leaves the image without the snapshot (at most leaked clusters) or with it
     * whole. Names need not be unique (nor are they in QEMU).
     *
     * @throws SnapshotException (TOO_BIG) past QEMU's 65536 snapshots or 64 MiB of table, nothing written
     */
    public static org.qcow4j.format.Snapshot createSnapshot(Path path, OpenOptions options, String name)
            throws IOException {
        java.time.Instant now = java.time.Instant.now();
        return Qcow2Image.createSnapshot(path, options, name, now.getEpochSecond(), now.getNano() / 1000 * 1000L);
    }

    /**
     * Reverts the qcow2 image {@code path} to the snapshot whose id, or else name, is {@code idOrName} ({@code
     * qemu-img snapshot -a}): its disk size and L1 table become the image's, the snapshot stays. QEMU's order: the
     * snapshot's clusters referenced once more before its L1 entries replace the active ones, the old ones'
     * references dropped after. Returns the snapshot applied.
     *
     * @throws SnapshotException (NOT_FOUND) when no snapshot has that id or name, nothing written
     */
    public static org.qcow4j.format.Snapshot applySnapshot(Path path, OpenOptions options, String idOrName)
            throws IOException {
        return Qcow2Image.applySnapshot(path, options, idOrName);
    }

    /**
     * Deletes the snapshot of the qcow2 image {@code path} with that {@code id} and {@code name} (either may be null
     * to match any, as QEMU's {@code bdrv_snapshot_delete}; {@code qemu-img snapshot -d NAME} matches the name): the
     * snapshot table without it is written and named by the header first, then the references go, so a crash
     * leaves leaked clusters at most. Returns the snapshot deleted.
     *
     * @throws SnapshotException (NOT_FOUND) when none matches, nothing written
     */
    public static org.qcow4j.format.Snapshot deleteSnapshot(Path path, OpenOptions options, String id, String name)
            throws IOException {
        if (id == null && name == null) {
            throw new IllegalArgumentException("an id or a name is needed");
        }
        return Qcow2Image.deleteSnapshot(path, options, id, name);
    }

    /** The persistent dirty bitmaps of the qcow2 image {@code path} (what {@code qemu-img info} lists), read-only. */
    public static List<org.qcow4j.format.Bitmap> bitmaps(Path path, OpenOptions options) throws IOException {
        try (DiskImage d = open(path, options.withoutBacking())) {
            return d.qcow2().map(Qcow2Metadata::bitmaps).orElse(List.of());
        }
    }

    /**
     * Adds the persistent dirty bitmap {@code name} to the qcow2 image {@code path} ({@code qemu-img bitmap --add}):
     * {@code granularity} bytes per bit (0: QEMU's default), recording writes unless {@code disabled}. Like the
     * other bitmap calls below, it opens the image for writing, makes the change and closes it, which stores the
     * bitmaps in QEMU's order (see {@link DirtyBitmaps}).
     *
     * @throws BitmapException when QEMU refuses the same, nothing changed
     */
    public static void addBitmap(Path path, OpenOptions options, String name, long granularity, boolean disabled)
            throws IOException {
        editBitmaps(path, options, b -> b.add(name, granularity, disabled));
    }

    /** Removes the bitmap {@code name} ({@code qemu-img bitmap --remove}); see {@link #addBitmap}. */
    public static void removeBitmap(Path path, OpenOptions options, String name) throws IOException {
        editBitmaps(path, options, b -> b.remove(name));
    }

    /** Clears every bit of the bitmap {@code name} ({@code qemu-img bitmap --clear}); see {@link #addBitmap}. */
    public static void clearBitmap(Path path, OpenOptions options, String name) throws IOException {
        editBitmaps(path, options, b -> b.clear(name));
    }

    /** Makes the bitmap {@code name} record writes ({@code qemu-img bitmap --enable}); see {@link #addBitmap}. */
    public static void enableBitmap(Path path, OpenOptions options, String name) throws IOException {
        editBitmaps(path, options, b -> b.enable(name));
    }

    /** Makes the bitmap {@code name} stop recording writes ({@code qemu-img bitmap --disable}); see {@link #addBitmap}. */
    public static void disableBitmap(Path path, OpenOptions options, String name) throws IOException {
        editBitmaps(path, options, b -> b.disable(name));
    }

    /**
     * Sets in the bitmap {@code target} of {@code path} every bit of the bitmap {@code sourceName} of {@code
     * sourceImage} (opened read-only with {@code sourceOptions}; null for {@code path} itself): {@code qemu-img bitmap
     * --merge SOURCE [-b SOURCE_IMAGE]}. See {@link #addBitmap}.
     */
    public static void mergeBitmap(Path path, OpenOptions options, String target, Path sourceImage,
                                   OpenOptions sourceOptions, String sourceName) throws IOException {
        if (sourceImage == null) {
            editBitmaps(path, options, b -> b.merge(target, b, sourceName));
            return;
        }
        try (DiskImage source = open(sourceImage, sourceOptions.withoutBacking())) {
            DirtyBitmaps from = source.dirtyBitmaps().orElseThrow(() -> new BitmapException(sourceImage.toString(),
                    "Dirty bitmap '" + sourceName + "' not found"));
            editBitmaps(path, options, b -> b.merge(target, from, sourceName));
        }
    }

    /**
     * {@code qemu-img convert --bitmaps}, before the conversion: refuses a source whose bitmaps cannot be copied
     * (not qcow2 version 3: "Source lacks bitmap support"; an inconsistent bitmap unless {@code skipBroken}).
     */
    public static void checkBitmapsCopyable(DiskImage source, boolean skipBroken) throws IOException {
        org.qcow4j.ops.BitmapCopier.check(source, skipBroken);
    }

    /**
     * {@code qemu-img convert --bitmaps}, after the conversion: copies every persistent bitmap of {@code source}
     * (granularity, enabled state, bits) into {@code target}, inconsistent ones skipped with a warning when
     * {@code skipBroken}; they are stored when {@code target} closes.
     *
     * @throws BitmapException in qemu-img's words (a target that cannot hold bitmaps, a bitmap that exists already)
     */
    public static void copyBitmaps(DiskImage source, WritableImage target, boolean skipBroken, Consumer<String> warnings)
            throws IOException {
        org.qcow4j.ops.BitmapCopier.copy(source, target, skipBroken, warnings);
    }

    /** A change to an image's bitmaps, for {@link #editBitmaps}. */
    @FunctionalInterface
    public interface BitmapEdit {
        void apply(DirtyBitmaps bitmaps) throws IOException;
    }

    /**
     * Opens the qcow2 image {@code path} for writing, applies {@code edit} to its bitmaps and closes it (storing them):
     * several changes in one session, as one {@code qemu-img bitmap} command line makes them. What {@code edit} did
     * before it failed is kept, as in qemu-img.
     */
    public static void editBitmaps(Path path, OpenOptions options, BitmapEdit edit) throws IOException {
        try (WritableImage image = openWritable(path, options.withQemuLayout(true))) {
            DirtyBitmaps b = image.dirtyBitmaps().orElseThrow(() -> new UnsupportedFeatureException(path.toString(),
                    "persistent bitmaps in " + image.format() + " images"));
            edit.apply(b);
        }
    }

    /**
     * Creates the qcow2 image {@code path} as {@code qemu-img create -f qcow2} does, byte for byte. The file appears
     * under its name only when complete (an existing file is replaced then).
     *
     * @param options validated first ({@link CreateOptions#validate}): a bad combination is a {@link QcowException}
     */
    public static void create(Path path, CreateOptions options) throws IOException {
        Conversion.create(path, options);
    }

    /**
     * Creates a file in QEMU's {@code luks} format ({@code qemu-img create -f luks}): a LUKS1 header with the
     * passphrase in key slot 0, then a payload of {@code size} bytes. qcow4j makes such files; it does not open them.
     */
    public static void createLuks(Path path, long size, EncryptionOptions e) throws IOException {
        if (e.passphrase() == null) {
            throw new QcowException(path.toString(), "Parameter 'key-secret' is required for cipher", null,
                    "Parameter 'key-secret' is required for cipher");
        }
        org.qcow4j.crypto.CipherSpec spec;
        try {
            spec = org.qcow4j.crypto.CipherSpec.of(e.cipherAlg(), e.cipherMode(), e.ivgenAlg(), e.ivgenHashAlg(), e.hashAlg());
        } catch (IllegalArgumentException x) {
            throw new QcowException(path.toString(), x.getMessage(), null, x.getMessage());
        } catch (UnsupportedOperationException x) {
            throw new UnsupportedFeatureException(path.toString(), "LUKS " + x.getMessage());
        }
        byte[] pass = e.passphrase().bytes();
        try {
            org.qcow4j.crypto.LuksFile.create(path, (size + 511) & ~511L, spec, pass, e.iterTimeMs());
        } finally {
            java.util.Arrays.fill(pass, (byte) 0);
        }
    }

    /**
     * Creates the raw image {@code path} of {@code size} bytes (rounded up to whole 512-byte sectors), sparse: no
     * block allocated, as {@code qemu-img create -f raw} does. The file appears under its name only when complete.
     */
    public static void createRaw(Path path, long size) throws IOException {
        Conversion.createRaw(path, size);
    }

    /** Checks the qcow2 image {@code image} as {@code qemu-img check} does; the result holds the diagnostic lines. */
    public static CheckResult check(Path image) throws IOException {
        return Qcow2Check.check(image);
    }

    /**
     * Checks the qcow2 image {@code image} as {@code qemu-img check} does, handing each diagnostic line to {@code
     * diagnostics} as it is found (a badly damaged image's millions of lines need no memory); the result counts
     * what was found. Nothing is written.
     *
     * @throws QcowException when the image cannot be opened (as QEMU would not open it) or the check cannot complete
     *         (qemu-img's "Check failed: ...", exit code 1)
     */
    public static CheckResult check(Path image, Consumer<String> diagnostics) throws IOException {
        return Qcow2Check.check(image, diagnostics);
    }

    /**
     * {@link #check(Path, Consumer)} with {@code options}: of them, {@link OpenOptions#forceShare} applies, and
     * {@link OpenOptions#passphrase} unlocks an encrypted image first, as qemu-img check opens it.
     */
    public static CheckResult check(Path image, OpenOptions options, Consumer<String> diagnostics) throws IOException {
        return Qcow2Check.check(image, options.forceShare(), options.passphrase(), diagnostics);
    }

    /**
     * Repairs the qcow2 image {@code image} in place as {@code qemu-img check -r leaks|all} does, with the same
     * diagnostics, counts and resulting bytes. When anything was fixed the image is checked again, as qemu-img's
     * "Double checking the fixed image now..." (its diagnostics go to {@code diagnostics} too), and the result is that
     * check's counts with the repair's fixed counts. An image with persistent bitmaps is then opened for writing and
     * closed, as qemu-img's repair holds it open: the bitmaps are stored anew. Images that need repairs qcow4j does
     * not make are refused with a {@link QcowException} before anything is written.
     */
    public static CheckResult repair(Path image, RepairMode mode, Consumer<String> diagnostics) throws IOException {
        return Qcow2Check.repairAndCheckAgain(image, mode == RepairMode.ALL, diagnostics);
    }

    /**
     * Writes the inputs, one after the other, as a new image {@code output} ({@code qemu-img convert}): raw or
     * qcow2 as {@code options} say. Work follows allocated data. The output appears under its name only when
     * complete, so a failed conversion leaves no half output behind (an existing file is replaced on success; a
     * device is written in place).
     */
    public static void convert(List<DiskImage> inputs, Path output, ConvertOptions options) throws IOException {
        Conversion.convert(inputs, output, options);
    }

    /**
     * Writes a new image {@code output} of {@code size} bytes from {@code source}, which writes its data in ascending
     * order on the calling thread (whole clusters for qcow2); what it does not write reads as zeros and is left
     * unallocated. For producers that know where their data is and that it is not zero (e2image's metadata): the
     * same file as {@link #convert} of that data (all-zero clusters left out), without a conversion's pipeline. Raw
     * if {@code qcow2} is null, else qcow2 with those options (uncompressed); {@code dataClusters} bounds the data
     * clusters (it sizes the refcount table, as a conversion's count of allocated clusters does). Like a
     * conversion's, the output appears under its name only when complete; {@code durable} flushes it.
     */
    public static void writeSequentially(Path output, long size, CreateOptions qcow2, long dataClusters,
            boolean durable, BlockWriter.Source source) throws IOException {
        SequentialWrite.write(output, size, qcow2, dataClusters, durable, source);
    }

    /**
     * The inputs as {@link ConvertOptions#salvage} makes a conversion read them, without its warnings: a 512-byte
     * sector whose block status or data cannot be read is data that reads as zeros. Closing a view closes its input.
     */
    public static List<DiskImage> salvaged(List<DiskImage> inputs) {
        return Conversion.salvaged(inputs);
    }

    /**
     * Writes the inputs as raw data into the existing (or new) file {@code target} at byte {@code offset}, in
     * place, keeping the bytes outside that range (e2image's {@code -O}: an image inside a larger disk image).
     */
    public static void convertInto(List<DiskImage> inputs, Path target, long offset, ConvertOptions options)
            throws IOException {
        Conversion.convertInto(inputs, target, offset, options);
    }

    /**
     * Writes the inputs, one after the other, into the existing image {@code target} from its first byte
     * ({@code qemu-img convert -n}): where they read as zeros the target is zeroed too (unless
     * {@link ConvertOptions#targetIsZero}), the rest of it past their end is kept. Of {@code options}, these apply:
     * {@code minSparse}, {@code targetIsZero}, {@code backing} (non-null: ranges the inputs leave to their backing
     * chain stay unwritten), {@code copyRange}, {@code rateLimit}, {@code salvage}, {@code progress} and
     * {@code durable} (a flush at the end); the copy runs on the calling thread.
     *
     * @throws QcowException if the target is smaller than the inputs
     */
    public static void convertInto(List<DiskImage> inputs, WritableImage target, ConvertOptions options)
            throws IOException {
        ImageCopier.copy(inputs, target, options);
    }

    /**
     * Compares the guest data of two open images as {@code qemu-img compare} does: by block status, reading only where
     * one of them holds data, so sparse images compare at once. Past the shorter image's end the longer must read as
     * zeros; with {@code strict}, different sizes or block statuses (allocation) differ too. {@code progress} (may be
     * null) is told the length of each chunk compared.
     *
     * @throws ImageOperationException when a block status or data of either image cannot be read, with qemu-img's
     *         line as its {@link ImageOperationException#qemuMessage()} ("Sector allocation test failed for NAME",
     *         "Error while reading offset N of NAME: Input/output error")
     */
    public static CompareResult compare(DiskImage first, DiskImage second, boolean strict, LongConsumer progress)
            throws IOException {
        return ImageComparison.compare(first, second, strict, progress);
    }

    /**
     * Changes the virtual size of an image opened for writing as {@code qemu-img resize} does, in QEMU's order of
     * writes (open it with {@link OpenOptions#withQemuLayout} for QEMU's bytes exactly): shrinking drops the clusters
     * past the new end, the L2 tables and refcount blocks no longer needed and the file's free tail; growing grows the
     * L1 table and, with {@code preallocation}, maps ({@code METADATA}, qcow2) or also allocates ({@code FALLOC},
     * {@code FULL}) the new part. qemu-img's own rules (a positive size, {@code --shrink}) are the caller's.
     *
     * @throws QcowException what QEMU refuses, with its words as {@link QcowException#qemuWords()}: a size that is no
     *         multiple of 512 (qcow2), an L1 table past QEMU's limit, a version 2 image with snapshots, preallocation
     *         when shrinking or {@code METADATA} on raw
     */
    public static void resize(WritableImage image, long newSize, CreateOptions.Preallocation preallocation)
            throws IOException {
        ImageResize.resize(image, newSize, preallocation);
    }

    /**
     * Copies {@code length} guest bytes of {@code input} from {@code offset} into a new image {@code output} of that
     * size, as {@code qemu-img dd} does: raw, or qcow2 with {@code options.qcow2()}'s creation options; written in
     * blocks of {@code blockSize} bytes from the output's start, every block as data (all-zero ones too), in QEMU's
     * layout. Of {@code options}, {@code qcow2} and {@code progress} (told each block's length) apply. An existing
     * file is replaced when the new one is created, before the copy.
     */
    public static void copyRange(DiskImage input, long offset, long length, Path output, ConvertOptions options,
                                 int blockSize) throws IOException {
        RangeCopy.copy(input, offset, length, output, options, blockSize);
    }

    /**
     * The size a new image would need, as {@code qemu-img measure} computes it: made from {@code source} (whose data
     * is counted by allocation; null: an empty image of {@code size} bytes) as qcow2 with {@code qcow2}'s options
     * (version, cluster size, refcount width, extended L2, preallocation, and whether it names a backing file; its
     * size is ignored), or as raw when {@code qcow2} is null.
     *
     * @throws IllegalArgumentException in qemu-img's words when the size needs an L1 table past QEMU's limit
     */
    public static MeasureResult measure(DiskImage source, long size, CreateOptions qcow2) throws IOException {
        return Measurement.measure(source, size, qcow2);
    }

    /**
     * Gives the image {@code path} a new backing file, as {@code qemu-img rebase} does (see {@link RebaseOptions}). In
     * safe mode the clusters whose content differs between the old backing chain and the new one (where the image
     * does not allocate them itself) are first written into the image, so it reads the same before and after; then
     * the header names the new backing file, in one write of cluster 0 once the writes are on disk.
     *
     * @throws ImageOperationException what qemu-img refuses in its own words (a format not given, a header too full,
     *         a raw image, a new backing file that does not open)
     */
    public static void rebase(Path path, RebaseOptions options) throws IOException {
        org.qcow4j.ops.Rebase.rebase(path, options);
    }

    /**
     * Writes what the image {@code path} holds above its base (its backing file, or {@link CommitOptions#base}) into
     * the base, as {@code qemu-img commit} does (QEMU's active commit), then empties the image as QEMU's
     * {@code make_empty} does unless {@link CommitOptions#drop}. The base is flushed before the image changes.
     *
     * @throws ImageOperationException what qemu-img refuses in its own words (no backing file, a base not in the chain)
     */
    public static void commit(Path path, CommitOptions options) throws IOException {
        org.qcow4j.ops.Commit.commit(path, options);
    }

    /**
     * Changes the options of the qcow2 image {@code path} that QEMU 7.2 amends ({@code qemu-img amend -o}): version
     * 2 and 3 both ways (a downgrade expands zero clusters and refuses what version 2 cannot hold), lazy refcounts,
     * the refcount width (the refcount structure rewritten), the raw flag and name of an external data file, the
     * size; the backing file only as it is. In QEMU's order, each header change one write of cluster 0 once what it
     * names is on disk. Persistent bitmaps are flagged in use by the image's open and stored anew when it closes, as
     * QEMU's amend leaves them, a refused amend included.
     *
     * @throws ImageOperationException what QEMU refuses, in its words
     * @throws UnsupportedFeatureException on an image with persistent bitmaps, a refcount width change or the removal
     *         of the data file name (which qemu-img makes), before anything is written
     */
    public static void amend(Path path, AmendOptions options) throws IOException {
        org.qcow4j.qcow2.Qcow2Amend.amend(path, options);
    }

    /**
     * Bytes {@code file} occupies on disk (its allocated blocks, qemu-img info's "actual-size"), or -1 when that cannot
     * be told.
     */
    public static long allocatedBytes(Path file) {
        return org.qcow4j.io.FileExtents.allocatedBytes(file);
    }

    /**
     * A channel over {@code image}'s guest bytes, as {@link WritableImage#channel} gives it: for implementations
     * outside this module (the NBD client) to serve the same contract as the engine's images.
     */
    public static java.nio.channels.SeekableByteChannel channel(WritableImage image) {
        return new org.qcow4j.io.ImageChannel(image);
    }

    /**
     * The index of the first non-zero byte of {@code buf[from, to)}, or -1: how a {@link BlockWriter.Source} tells the
     * blocks it need not write (the writers' own zero test, by mismatch against zeros: fast before the JIT has
     * compiled anything).
     */
    public static int firstNonZero(ByteBuffer buf, int from, int to) {
        return org.qcow4j.io.Zeros.firstNonZero(buf, from, to);
    }

    /**
     * The file a backing or data file name written in {@code imageName} refers to: absolute names as they are,
     * relative names against the image's directory (QEMU's {@code path_combine}).
     */
    public static String resolveRelative(String imageName, String name) throws UnsupportedFeatureException {
        return ChainOpener.resolveRelative(imageName, name);
    }
}
