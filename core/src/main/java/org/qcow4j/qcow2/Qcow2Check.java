package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.qcow4j.CheckFailedException;
import org.qcow4j.CheckResult;
import org.qcow4j.FormatException;
import org.qcow4j.ImageLockedException;
import org.qcow4j.MissingFileException;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.format.BitmapTable;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.io.Access;
import org.qcow4j.io.FileStorage;
import org.qcow4j.io.OpenFile;
import org.qcow4j.io.OpenFiles;

/**
 * A read-only consistency check of a qcow2 image that reports what {@code qemu-img check} (QEMU 7.2, no {@code -r})
 * reports, number for number and line for line. Like QEMU's {@code qcow2_check_refcounts} it recomputes every host
 * cluster's refcount from all metadata (header, active and snapshot L1 tables with their L2 tables and data
 * clusters, the snapshot table, refcount table and blocks, bitmap directory, tables and data), compares the result
 * with the stored refcounts, then checks the COPIED flags of the active tables against the stored refcounts.
 *
 * <p>The image is not opened through {@link Qcow2Image}: that refuses L1 entries pointing past the end of the file
 * or into metadata, which are exactly what a check must count instead. What QEMU refuses to open an image for
 * (a bad header, a broken bitmap directory, a missing backing or data file) is refused here too, as an exception.
 *
 * <p>Memory: one counter of the image's refcount width per host cluster (as QEMU), the refcount table (at most
 * 8 MiB), one L1 table at a time (at most 32 MiB), one L2 table and a few MiB of refcount blocks.
 *
 * <p>{@link #repair} is {@code qemu-img check -r leaks|all}, with QEMU's refcount structure rebuild; {@link
 * #repairDirty} is the repair QEMU runs when it opens a dirty (lazy refcounts) image for writing.
 *
 * <p>This class holds the entry points, what QEMU refuses at open, and the order of the steps (QEMU's {@code
 * qcow2_co_check_locked}); the steps are the package's: {@link RefcountScan} finds and reports (with {@link
 * CheckSnapshotTable}), {@link RefcountRepair} fixes single entries, COPIED flags and the dirty and corrupt bits,
 * {@link RefcountRebuild} rebuilds the refcount structure; they share one {@link CheckContext}.
 */
public final class Qcow2Check {
    private final CheckContext c;
    private final RefcountScan scan;
    private final RefcountRepair repairs;
    private final RefcountRebuild rebuilder;

    /** One run's parts around one context; the mode ({@code writer}, {@code fixLeaks}, {@code fixErrors}) is its. */
    private Qcow2Check(String filename, FileStorage storage, Header header, Consumer<String> report, FileChannel writer,
                       boolean fixLeaks, boolean fixErrors) {
        this.c = new CheckContext(filename, storage, header, report, writer, fixLeaks, fixErrors);
        this.repairs = new RefcountRepair(c);
        this.scan = new RefcountScan(c, repairs);
        this.rebuilder = new RefcountRebuild(c, scan);
    }

    /**
     * Checks the qcow2 image {@code image}; the diagnostic lines are collected in the result.
     *
     * @throws FormatException and other {@link QcowException}s when the image cannot be opened (as QEMU would not
     *         open it) or the check cannot complete (qemu-img's "Check failed: ..." with exit code 1)
     */
    public static CheckResult check(Path image) throws IOException {
        List<String> lines = new ArrayList<>();
        CheckResult r = check(image, lines::add);
        return new CheckResult(r.filename(), r.format(), r.checkErrors(), r.corruptions(), r.leaks(),
                r.corruptionsFixed(), r.leaksFixed(), r.imageEndOffset(), r.totalClusters(), r.allocatedClusters(),
                r.fragmentedClusters(), r.compressedClusters(), lines);
    }

    /**
     * Checks the qcow2 image {@code image}, handing each diagnostic line to {@code diagnostics} as it is found (so
     * a badly damaged image's millions of lines need no memory, and lines found before a failure are not lost);
     * the result's diagnostics are then empty.
     */
    public static CheckResult check(Path image, Consumer<String> diagnostics) throws IOException {
        return check(image, false, diagnostics);
    }

    /** {@link #check(Path, Consumer)}, with {@code forceShare} reading the image whatever others do ({@code -U}). */
    public static CheckResult check(Path image, boolean forceShare, Consumer<String> diagnostics) throws IOException {
        return check(image, forceShare, null, diagnostics);
    }

    /**
     * {@link #check(Path, boolean, Consumer)}; an encrypted image is unlocked with {@code passphrase} first, as
     * qemu-img check opens it (without one, or with a wrong one, it is refused in QEMU's words).
     */
    public static CheckResult check(Path image, boolean forceShare, org.qcow4j.Passphrase passphrase,
                                    Consumer<String> diagnostics) throws IOException {
        String filename = image.toString();
        try (FileStorage storage = FileStorage.open(image, forceShare ? Access.SHARED_READ : Access.READ)) {
            Header h = Qcow2Image.readHeaderForCheck(storage, filename);
            Encryption e = Encryption.open(storage, h, filename, passphrase, false);
            if (e != null) {
                e.close();
            }
            Qcow2Check check = new Qcow2Check(filename, storage, h, diagnostics, null, false, false);
            check.open(forceShare);
            check.run();
            return check.c.result();
        }
    }

    /**
     * qemu-img check's repair as a whole: {@link #repair}, then, if it fixed anything, {@link #check} again (the
     * result: that check's counts with the repair's fixed counts), then, for an image with persistent bitmaps, QEMU's
     * close of the image it held open for writing: the bitmaps flagged in use and stored anew
     * ({@link Qcow2Image#openAndClose}). QEMU flags them when it opens the image, before the repair; neither the
     * flags, written in place, nor the repair depends on the other, so the bytes are the same.
     */
    @SuppressWarnings("try") // the hold is there only for its locks
    public static CheckResult repairAndCheckAgain(Path image, boolean fixErrors, Consumer<String> diagnostics)
            throws IOException {
        // held throughout, as QEMU holds the image open: no other process gets in between the steps
        try (OpenFile hold = openForRepair(image)) {
            return repairCheckAndStoreBitmaps(image, fixErrors, diagnostics);
        }
    }

    private static CheckResult repairCheckAndStoreBitmaps(Path image, boolean fixErrors, Consumer<String> diagnostics)
            throws IOException {
        CheckResult r = repair(image, fixErrors, diagnostics);
        if (r.leaksFixed() != 0 || r.corruptionsFixed() != 0) {
            CheckResult again = check(image, diagnostics);
            r = new CheckResult(again.filename(), again.format(), again.checkErrors(), again.corruptions(),
                    again.leaks(), r.corruptionsFixed(), r.leaksFixed(), again.imageEndOffset(), again.totalClusters(),
                    again.allocatedClusters(), again.fragmentedClusters(), again.compressedClusters(), List.of());
        }
        Header after;
        try (FileStorage storage = FileStorage.open(image, Access.PROBE)) {
            after = Qcow2Image.readHeaderForCheck(storage, image.toString());
        }
        // (an image still marked corrupt opens read-only: QEMU's repair, opened for checking, leaves its bitmaps be)
        if (after.has(Feature.BITMAPS) && !after.has(Feature.CORRUPT)) {
            Qcow2Image.openAndClose(image, null);
        }
        return r;
    }


    /**
     * {@code qemu-img check -r leaks} ({@code fixErrors} false) or {@code -r all} ({@code fixErrors} true), repairing
     * what QEMU 7.2's {@code qcow2_co_check_locked} repairs, in the same way and with the same counts:
     * <ul>
     * <li>stored refcounts higher than the references (leaks) are lowered (a cluster left unreferenced is zeroed,
     *     as QEMU discards it); with {@code -r all} non-zero refcounts lower than the references are raised;
     * <li>with {@code -r all}, a refcount structure QEMU rebuilds (a used cluster with refcount 0, a refcount table
     *     entry with reserved bits or unaligned, a refcount block referenced more than once, e.g. overlapping other
     *     metadata) is rebuilt: "Rebuilding refcount structure", new refcount blocks and table written to free
     *     clusters or at the end of the file, forced to disk, and only then the header switched to them; the old
     *     structure's clusters are then leaks, repaired at once. A refcount block past the end of the file first
     *     has the file grown to it, as QEMU does. With {@code -r leaks} such an image fails as in QEMU ("ERROR need
     *     to rebuild refcount structures", "Check failed: Input/output error"), with nothing written;
     * <li>with {@code -r all}, an L2 entry of a preallocated cluster (no data) at a misaligned offset becomes a zero
     *     cluster, written at once (QEMU's {@code fix_l2_entry_by_zero}); the cluster then leaks;
     * <li>COPIED flags of the active L1 and L2 tables are set or cleared as QEMU's {@code check_oflag_copied} does;
     * <li>with {@code -r all}, the snapshot table as QEMU's check repairs it ({@link CheckSnapshotTable}): overhanging
     *     entries dropped before the refcount check, extra data cut and incomplete version 3 entries completed by
     *     writing the table anew after it;
     * <li>the dirty bit (lazy refcounts) and the corrupt bit are cleared when the repair leaves no corruptions and
     *     no check errors (QEMU's {@code qcow2_mark_clean} and {@code qcow2_mark_consistent}), after everything
     *     else is on disk.
     * </ul>
     * The diagnostics, "Repairing ..." lines included, go to {@code diagnostics} as QEMU prints them; the result
     * counts what was found and fixed. The image is written in place and forced to disk; {@link #repairAndCheckAgain}
     * double-checks it, as qemu-img does, and stores persistent bitmaps anew (their clusters are counted here and the
     * bitmaps autoclear bit kept).
     *
     * <p>Before anything is written the image is checked read-only; an image with corruptions no repair touches
     * (reserved bits in L1/L2 entries, references past the end of the file, a data cluster at a misaligned offset,
     * ...) is refused with a {@link QcowException}, untouched. Unknown autoclear bits are cleared, as QEMU clears them when it
     * opens the image for the repair (raw external data is kept). An external data file is not touched: its clusters
     * have no refcounts.
     */
    private static CheckResult repair(Path image, boolean fixErrors, Consumer<String> diagnostics) throws IOException {
        // Held for the whole repair, as QEMU holds the image open read-write: the opens below share its file.
        try (OpenFile hold = openForRepair(image)) {
            return repair(image, hold.channel(), fixErrors, diagnostics);
        }
    }

    private static OpenFile openForRepair(Path image) throws IOException {
        try {
            return OpenFiles.open(image, Access.WRITE, image.toString());
        } catch (ImageLockedException e) {
            throw e;
        } catch (IOException e) {
            throw new QcowException(image.toString(), "cannot open for writing: " + CheckContext.describe(e));
        }
    }

    private static CheckResult repair(Path image, FileChannel out, boolean fixErrors, Consumer<String> diagnostics)
            throws IOException {
        // the autoclear bits QEMU keeps: raw external data, and bitmaps, whose clusters the check counts
        long kept = Feature.RAW_EXTERNAL_DATA.mask() | Feature.BITMAPS.mask();
        String filename = image.toString();
        try (FileStorage storage = FileStorage.open(image, Access.PROBE)) {
            Header header = Qcow2Image.readHeaderForCheck(storage, filename);
            // (an external data file holds only data, which has no refcounts: the repair is the image file's alone)
            // The dry run: the same decisions, nothing written, nothing printed.
            Qcow2Check dry = new Qcow2Check(filename, storage, header, line -> { }, null, true, fixErrors);
            dry.open(false);
            dry.run();
            if (dry.c.unrepairable > 0) {
                throw new QcowException(filename, "cannot repair (nothing written): " + dry.c.unrepairable
                        + " problems need repairs qcow4j does not make (use qemu-img check -r all), the first: "
                        + dry.c.firstUnrepairable);
            }
            if (header.version() >= 3 && (header.autoclearFeatures() & ~kept) != 0) {
                // As QEMU opening the image read-write for the repair: unknown autoclear bits are cleared
                try {
                    out.write(java.nio.ByteBuffer.allocate(8).putLong(0, header.autoclearFeatures() & kept),
                            Header.AUTOCLEAR_FEATURES_AT);
                    out.force(false);
                } catch (IOException e) {
                    throw new QcowException(filename, "write failed (autoclear_features): " + CheckContext.describe(e));
                }
            }
        }
        try (FileStorage storage = FileStorage.open(image, Access.PROBE)) {
            Qcow2Check check = new Qcow2Check(filename, storage, Qcow2Image.readHeaderForCheck(storage, filename), diagnostics,
                    out, true, fixErrors);
            try {
                check.open(false);
                check.run();
                check.c.force();
                return check.c.result();
            } finally {
                check.c.closeReopened(); // opened again after the file grew
            }
        }
    }

    /**
     * The repair QEMU makes when it opens a dirty image (lazy refcounts, not closed cleanly) for writing: {@code
     * check -r all} ({@link #repair}), which clears the dirty bit once the refcounts are right. The read-write opener
     * calls this before it opens a dirty image; the diagnostics ("Repairing ...", "Rebuilding refcount structure")
     * go to {@code diagnostics}, and the result counts what was fixed. On an image that is not dirty it is just
     * {@code check -r all}.
     *
     * @throws QcowException if the image is refused by {@link #repair} (nothing written), or is still dirty after
     *         the repair (QEMU's "Could not repair dirty image")
     */
    public static CheckResult repairDirty(Path image, Consumer<String> diagnostics) throws IOException {
        CheckResult r = repair(image, true, diagnostics);
        if (isDirty(image) && r.checkErrors() > 0 && r.corruptionsFixed() > 0) {
            // QEMU keeps the bit when the repair met check errors (unreadable refcount blocks, replaced by the
            // rebuild); the rebuilt image then checks clean, and a second run clears it.
            r = repair(image, true, diagnostics);
        }
        if (isDirty(image)) {
            throw new QcowException(image.toString(), "could not repair dirty image: " + r.corruptions() + " corruptions, "
                    + r.checkErrors() + " check errors left");
        }
        return r;
    }

    private static boolean isDirty(Path image) throws IOException {
        try (FileStorage storage = FileStorage.open(image, Access.PROBE)) {
            return Qcow2Image.readHeaderForCheck(storage, image.toString()).has(Feature.DIRTY);
        }
    }

    // ------------------------------------------------------------------ what QEMU checks when it opens the image

    /** Refuses what QEMU's open refuses beyond the header: broken bitmaps, a missing backing or data file. */
    private void open(boolean forceShare) throws IOException {
        Header header = c.header;
        String filename = c.filename;
        c.activeL1 = c.readLongs(header.l1TableOffset(), header.l1Size());
        if (header.bitmaps() != null && header.has(Feature.BITMAPS)) {
            c.bitmapTables = BitmapTable.readDirectory(header.bitmaps(), c.storage::read, filename, c.fileLength,
                    header.virtualSize(), c.clusterBits);
            for (BitmapTable t : c.bitmapTables) {
                long[] entries = c.readBitmapTable(t);
                for (int i = 0; i < entries.length; i++) {
                    if (!BitmapTable.isValidEntry(entries[i], c.clusterSize)) {
                        throw new FormatException(filename, "entry " + i + " of the table of bitmap '" + t.name() + "'",
                                FormatException.hex(entries[i]), "invalid bitmap table entry");
                    }
                }
            }
        }
        if (header.backingFile() != null) {
            // qemu-img check opens the whole backing chain and fails if it cannot.
            String name = ChainOpener.resolveRelative(filename, header.backingFile());
            new ChainOpener(OpenOptions.defaults().withForceShare(forceShare))
                    .open(name, header.backingFormat(), 1, filename).close();
        }
        if (c.hasDataFile) {
            String name = ChainOpener.dataFileName(header, null, filename);
            try {
                FileStorage.open(Path.of(name), Access.PROBE).close(); // it only has to open
            } catch (NoSuchFileException e) {
                throw new MissingFileException(name, MissingFileException.Role.DATA_FILE, filename, 0);
            } catch (AccessDeniedException e) {
                throw new QcowException(name, "permission denied (external data file of " + filename + ")");
            }
        }
    }

    // ------------------------------------------------------------------ QEMU's qcow2_co_check_locked

    private void run() throws IOException {
        CheckSnapshotTable snapshots = CheckSnapshotTable.read(c);

        c.nbClusters = c.sizeToClusters(c.fileLength);
        if (c.nbClusters > CheckContext.MAX_CLUSTERS) {
            throw new CheckFailedException(c.filename, CheckContext.EFBIG, c.nbClusters + " clusters; QEMU checks at most "
                    + CheckContext.MAX_CLUSTERS, List.of());
        }
        // A reference may reach less than one cluster past the end of the file (QEMU allows a partial last
        // cluster), so the array can grow by one cluster and never more.
        c.computed = RefcountArray.allocate(c.nbClusters + 1, c.header.refcountOrder(), c.filename);
        c.stored = new StoredRefcounts(c.storage, c.header);

        scan.calculateRefcounts(snapshots, c.fixErrors);
        checkRefcounts(snapshots);
        scan.checkCopiedFlags();
        snapshots.fix(c);
        repairs.markClean();
    }

    /**
     * The rest of QEMU's {@code qcow2_check_refcounts}: the computed refcounts are compared with the stored ones;
     * then a repair either rebuilds the refcount structure ({@code -r all}), fails if it needed one ({@code -r
     * leaks}, nothing written), or compares again from the same counts, fixing single entries.
     */
    private void checkRefcounts(CheckSnapshotTable snapshots) throws IOException {
        CheckContext.Counts beforeCompare = c.counts();
        scan.compareRefcounts(false, false);
        if (c.writer == null) {
            return;
        }
        if (c.rebuild && c.fixErrors) {
            rebuilder.rebuildAndRecount(snapshots);
        } else if (c.rebuild) {
            c.report.accept("ERROR need to rebuild refcount structures");
            c.checkErrors++;
            throw c.checkFailed(CheckContext.EIO);
        } else if (c.leaks != 0 || c.corruptions != 0) {
            c.restore(beforeCompare);
            scan.compareRefcounts(c.fixLeaks, c.fixErrors);
        }
    }
}
