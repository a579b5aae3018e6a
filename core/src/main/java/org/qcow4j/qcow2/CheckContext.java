package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.util.List;
import java.util.function.Consumer;
import org.qcow4j.CheckFailedException;
import org.qcow4j.CheckResult;
import org.qcow4j.FormatException;
import org.qcow4j.QcowException;
import org.qcow4j.format.BitmapTable;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.io.Access;
import org.qcow4j.io.FileStorage;

/**
 * The image under one {@link Qcow2Check} run and what its parts share: the file and its header, the stored and
 * the computed refcounts, the repair mode, and the counts QEMU's {@code BdrvCheckResult} holds, together with the
 * diagnostics that raise them. {@link RefcountScan} reads the image and reports, {@link RefcountRepair} and {@link
 * RefcountRebuild} write through {@link #write} and {@link #force}.
 */
final class CheckContext {
    /** QEMU refuses to check files of more clusters than this ({@code nb_clusters > INT_MAX}: EFBIG). */
    static final long MAX_CLUSTERS = Integer.MAX_VALUE;
    static final String EIO = "Input/output error";
    static final String EFBIG = "File too large";
    static final String EINVAL = "Invalid argument";

    final String filename;
    /** The file, read-only; opened again when a repair has made the file longer (it caches the length). */
    FileStorage storage;
    /** Whether {@link #storage} was opened by this check (again), so it closes it. */
    private boolean ownsStorage;
    /** The file's length as QEMU sees it: rounded up to whole 512-byte sectors. */
    long fileLength;
    final Header header;
    /** Where the refcount table is: the header's, then the one a rebuild wrote. */
    long refcountTableOffset;
    final int clusterBits;
    final long clusterSize;
    final boolean extendedL2;
    final boolean hasDataFile;
    final Consumer<String> report;

    /** The active L1 table and the bitmap tables, read when the image is opened ({@link Qcow2Check}). */
    long[] activeL1;
    List<BitmapTable> bitmapTables = List.of();
    StoredRefcounts stored;
    RefcountArray computed;
    /** QEMU's nb_clusters: the clusters of the file, plus one a reference may reach into past a partial last cluster. */
    long nbClusters;
    /** QEMU signals the first corruption it meets while reading refcounts, then stays quiet. */
    private boolean signaledCorruption;
    /**
     * QEMU's {@code rebuild}: the refcount structure is broken beyond fixing single entries (a refcount table entry
     * with reserved bits or unaligned, a refcount block not referenced exactly once, a used cluster with refcount 0).
     */
    boolean rebuild;

    /** Where repairs are written (positional writes), or null: a read-only check (plain, or a repair's dry run). */
    final FileChannel writer;
    /** QEMU's BDRV_FIX_LEAKS and BDRV_FIX_ERRORS; also set for a repair's dry run, which writes nothing. */
    final boolean fixLeaks;
    final boolean fixErrors;
    long leaksFixed;
    long corruptionsFixed;
    /** Findings {@link Qcow2Check#repair} does not repair as QEMU would (QEMU repairs them otherwise, or not at all). */
    long unrepairable;
    String firstUnrepairable;

    long checkErrors;
    long corruptions;
    long leaks;
    long allocatedClusters;
    long fragmentedClusters;
    long compressedClusters;
    long imageEndOffset;

    /** The counts QEMU's {@code BdrvCheckResult} holds, saved and restored as {@code qcow2_check_refcounts} does. */
    record Counts(long checkErrors, long corruptions, long leaks, long corruptionsFixed, long leaksFixed,
                  long unrepairable) {
    }

    /**
     * {@code writer} null: a read-only check; {@code fixLeaks} and {@code fixErrors} as {@code -r leaks} and {@code
     * -r all} set them (a repair's dry run sets them with no writer).
     */
    CheckContext(String filename, FileStorage storage, Header header, Consumer<String> report, FileChannel writer,
                 boolean fixLeaks, boolean fixErrors) {
        this.filename = filename;
        this.storage = storage;
        // QEMU's bdrv_getlength counts whole 512-byte sectors, so a reference may end in the last, partial sector.
        this.fileLength = (storage.length() + 511) & ~511L;
        this.header = header;
        this.refcountTableOffset = header.refcountTableOffset();
        this.clusterBits = header.clusterBits();
        this.clusterSize = header.clusterSize();
        this.extendedL2 = header.has(Feature.EXTENDED_L2);
        this.hasDataFile = header.has(Feature.EXTERNAL_DATA_FILE);
        this.report = report;
        this.writer = writer;
        this.fixLeaks = fixLeaks;
        this.fixErrors = fixErrors;
    }

    CheckResult result() {
        return new CheckResult(filename, "qcow2", checkErrors, corruptions, leaks, corruptionsFixed, leaksFixed, imageEndOffset,
                sizeToClusters(header.virtualSize()), allocatedClusters, fragmentedClusters, compressedClusters, List.of());
    }

    Counts counts() {
        return new Counts(checkErrors, corruptions, leaks, corruptionsFixed, leaksFixed, unrepairable);
    }

    void restore(Counts c) {
        checkErrors = c.checkErrors();
        corruptions = c.corruptions();
        leaks = c.leaks();
        corruptionsFixed = c.corruptionsFixed();
        leaksFixed = c.leaksFixed();
        unrepairable = c.unrepairable();
    }

    // ------------------------------------------------------------------ the file

    /**
     * Opens the file again (a repair made it longer, and a {@link FileStorage} keeps the length it was opened with),
     * and with it the stored refcounts, under the current refcount table.
     */
    void reopenStorage(int tableEntries) throws IOException {
        FileStorage reopened = FileStorage.open(storage.path(), Access.PROBE);
        if (ownsStorage) {
            storage.close();
        }
        storage = reopened;
        ownsStorage = true;
        fileLength = (storage.length() + 511) & ~511L;
        stored = new StoredRefcounts(storage, header, refcountTableOffset, tableEntries);
    }

    /** Closes the file if {@link #reopenStorage} opened it again after it grew (the caller closes the first). */
    void closeReopened() throws IOException {
        if (ownsStorage) {
            storage.close();
        }
    }

    /**
     * Reads {@code count} u64 at {@code offset} as QEMU's {@code bdrv_pread} would: zeros past the end of the file,
     * null (an I/O error) where QEMU's block layer addresses nothing (offsets with bit 63 set).
     */
    long[] readLongs(long offset, int count) throws IOException {
        long bytes = count * 8L;
        if (offset < 0 || offset > Long.MAX_VALUE - bytes) {
            return null;
        }
        long[] out = new long[count];
        storage.read(offset, (int) bytes).order(ByteOrder.BIG_ENDIAN).asLongBuffer().get(out);
        return out;
    }

    long[] readBitmapTable(BitmapTable t) throws IOException {
        long[] entries = readLongs(t.offset(), t.entries());
        if (entries == null) {
            throw new FormatException(filename, "bitmap '" + t.name() + "' table offset", FormatException.hex(t.offset()),
                    "could not read bitmap table: " + EIO);
        }
        return entries;
    }

    long offsetIntoCluster(long offset) {
        return offset & (clusterSize - 1);
    }

    long sizeToClusters(long bytes) {
        return (bytes + clusterSize - 1) >>> clusterBits;
    }

    void force() throws QcowException {
        try {
            writer.force(false); // fdatasync, as QEMU flushes
        } catch (IOException e) {
            throw new QcowException(filename, "write failed: " + describe(e));
        }
    }

    static String describe(IOException e) {
        return e.getMessage() == null ? e.getClass().getSimpleName() : e.getClass().getSimpleName() + ": " + e.getMessage();
    }

    /** A positional write of a repair; an I/O error is one clear line. */
    void write(ByteBuffer src, long pos) throws QcowException {
        try {
            StoredRefcounts.writeFully(writer, src, pos);
        } catch (IOException e) {
            throw new QcowException(filename, "write failed at offset " + pos + ": " + describe(e));
        }
    }

    // ------------------------------------------------------------------ diagnostics and what they count

    /** QEMU's {@code qcow2_signal_corruption} on a read-only image: one line, the first time only. */
    void signalCorruption(StoredRefcounts.UnreadableRefcount e) {
        if (e.corruption() != null && !signaledCorruption) {
            signaledCorruption = true;
            report.accept("qcow2: Image is corrupt: " + e.corruption() + "; further non-fatal corruption events will be suppressed");
        }
    }

    /** A corruption {@link Qcow2Check#repair} does not repair. */
    void corruption(String line) {
        repairableCorruption(line);
        unrepairable(line);
    }

    /** A corruption {@code -r all} repairs by rebuilding the refcount structure. */
    void rebuildCorruption(String line) {
        repairableCorruption(line);
        rebuild = true;
    }

    /**
     * A corruption {@link Qcow2Check#repair} handles as QEMU does: repairs it (a refcount too low, a wrong COPIED
     * flag, a refcount block past the end of the file) or, in the modes where QEMU does not, leaves it.
     */
    void repairableCorruption(String line) {
        report.accept(line);
        corruptions++;
    }

    void unrepairable(String line) {
        if (unrepairable++ == 0) {
            firstUnrepairable = line;
        }
    }

    /**
     * A check error. Not one {@link Qcow2Check#repair} refuses for: the refcounts it cannot read are under refcount
     * table entries that are corruptions themselves, which {@code -r all} rebuilds (the other check errors fail the
     * check).
     */
    void checkError(String line) {
        report.accept(line);
        checkErrors++;
    }

    /** The check cannot go on: qemu-img prints "Check failed: REASON" and exits 1 without a report. */
    CheckFailedException checkFailed(String reason) {
        return new CheckFailedException(filename, reason, List.of());
    }
}
