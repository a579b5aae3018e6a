package org.qcow4j.ops;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedByInterruptException;
import java.util.ArrayList;
import java.util.List;
import java.util.NavigableMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.function.Consumer;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.FilterDiskImage;
import org.qcow4j.FormatException;
import org.qcow4j.io.Zeros;

/**
 * {@code qemu-img convert --salvage} (qemu-img.c's {@code convert_iteration_sectors} and {@code convert_co_read} in
 * salvaging mode): a 512-byte sector of an input whose block status cannot be read is taken as data, and one whose
 * data cannot be read (an I/O error, a cluster the driver refuses) reads as zeros, each with qemu-img's warning. The
 * offsets are the sector's within its input, as qemu-img prints them.
 *
 * <p>qemu-img prints the warnings as its coroutines meet them: every block-status failure once while it counts the
 * work, then, copying, each again with the read failures among them. Here they are collected (the converters look at
 * a range more than once and read on several threads) and told in that order by {@link #report}: the block-status
 * failures by offset, then the block-status and read failures by offset, a sector's block status before its data.
 */
final class Salvage {
    private final Consumer<String> warnings;
    /** Guest offset in the concatenated inputs to the offset within its input, per kind of failure. */
    private final NavigableMap<Long, Long> status = new ConcurrentSkipListMap<>();
    private final NavigableMap<Long, Long> reads = new ConcurrentSkipListMap<>();
    /** Per input (by its first guest offset), QEMU's line for the first corruption it signals there. */
    private final NavigableMap<Long, String> corruption = new ConcurrentSkipListMap<>();

    private Salvage(Consumer<String> warnings) {
        this.warnings = warnings;
    }

    /** The inputs as {@code options} reads them: wrapped when it salvages ({@code warnings} not null). */
    static Salvage of(Consumer<String> warnings) {
        return new Salvage(warnings);
    }

    List<DiskImage> wrap(List<DiskImage> inputs) {
        if (warnings == null) {
            return inputs;
        }
        List<DiskImage> wrapped = new ArrayList<>();
        long start = 0;
        for (DiskImage in : inputs) {
            wrapped.add(new Salvaged(in, start));
            start += in.size();
        }
        return wrapped;
    }

    /** Tells every failure met, in qemu-img's order. */
    void report() {
        if (warnings == null) {
            return;
        }
        // qcow2_signal_corruption on a read-only image: printed as met, before qemu-img's own warnings
        corruption.values().forEach(warnings);
        status.forEach((guest, local) -> warnings.accept(statusWarning(local)));
        TreeSet<Long> all = new TreeSet<>(status.keySet());
        all.addAll(reads.keySet());
        for (long guest : all) {
            if (status.containsKey(guest)) {
                warnings.accept(statusWarning(status.get(guest)));
            }
            if (reads.containsKey(guest)) {
                warnings.accept("warning: error while reading offset " + reads.get(guest) + ": Input/output error");
            }
        }
    }

    private static String statusWarning(long offset) {
        return "warning: error while reading block status at offset " + offset + ": Input/output error";
    }

    /** Not a failure to salvage: the conversion was stopped. Else the corruption QEMU signals for it, if any. */
    private boolean interrupted(IOException e, long input) {
        if (e instanceof InterruptedIOException || e instanceof ClosedByInterruptException) {
            return true;
        }
        if (e instanceof FormatException f && f.qemuWords() != null) {
            corruption.putIfAbsent(input, "qcow2: Image is corrupt: " + f.qemuWords()
                    + "; further non-fatal corruption events will be suppressed");
        }
        return false;
    }

    /** One input, read sector by sector where it fails. */
    private final class Salvaged extends FilterDiskImage {
        private final long start;

        Salvaged(DiskImage in, long start) {
            super(in);
            this.start = start;
        }

        /**
         * A failed block status is asked again of a quarter of the range (rounded up to sectors) until it succeeds
         * or is down to one sector, which is then data: qemu-img's retries.
         */
        @Override
        public Extent extentAt(long offset, long maxLength) throws IOException {
            long sector = offset & -SparseRuns.SECTOR;
            long n = (offset + maxLength - sector + SparseRuns.SECTOR - 1) / SparseRuns.SECTOR;
            while (true) {
                try {
                    return in.extentAt(offset, Math.min(maxLength, sector + n * SparseRuns.SECTOR - offset));
                } catch (IOException e) {
                    if (interrupted(e, start)) {
                        throw e;
                    }
                    if (n == 1) {
                        status.put(start + sector, sector);
                        return new Extent(offset, Math.min(maxLength, sector + SparseRuns.SECTOR - offset), 0, true,
                                false, true, -1);
                    }
                    n = (n + 3) / 4;
                }
            }
        }

        /** A failed read: again a sector at a time, those that fail read as zeros. */
        @Override
        public void read(ByteBuffer dst, long offset) throws IOException {
            try {
                in.read(dst.duplicate(), offset);
                dst.position(dst.limit());
                return;
            } catch (IOException e) {
                if (interrupted(e, start)) {
                    throw e;
                }
            }
            while (dst.hasRemaining()) {
                long sector = offset & -SparseRuns.SECTOR;
                int n = (int) Math.min(dst.remaining(), sector + SparseRuns.SECTOR - offset);
                ByteBuffer piece = dst.slice(dst.position(), n);
                try {
                    in.read(piece, offset);
                } catch (IOException e) {
                    if (interrupted(e, start)) {
                        throw e;
                    }
                    Zeros.fill(dst.slice(dst.position(), n));
                    reads.put(start + sector, sector);
                }
                dst.position(dst.position() + n);
                offset += n;
            }
        }
    }
}
