package org.qcow4j.ops;

import java.nio.ByteBuffer;
import org.qcow4j.io.Zeros;

/**
 * How {@code qemu-img convert} splits a buffer of read data into runs to write and zero runs to leave sparse, by its
 * {@code -S} size ({@code is_allocated_sectors_min}): in 512-byte sectors, a zero run is left out only when it is at
 * least {@code min} sectors long once its end is aligned, and the data runs around it are widened to the alignment
 * ({@code max(pow2floor(min), the target's request alignment)}) so that writes avoid read-modify-write cycles.
 */
public final class SparseRuns {
    /** One sector, the unit of the rule. */
    public static final int SECTOR = 512;

    /** Told each run in order: {@code [from, from + length)} in bytes of the buffer, and whether it is written. */
    @FunctionalInterface
    public interface RunConsumer {
        void run(int from, int length, boolean data) throws java.io.IOException;
    }

    private SparseRuns() {
    }

    /** QEMU's alignment for a target without request alignment of its own: {@code pow2floor(min)}, in sectors. */
    public static int alignment(int minSectors) {
        return Integer.highestOneBit(Math.max(1, minSectors));
    }

    /**
     * Splits {@code buf[0, sectors * 512)}, which holds the guest sectors from {@code firstSector} on, into runs as
     * qemu-img convert writes them with {@code -S min * 512} (min at least 1): consecutive runs alternate, the first
     * may be either.
     */
    public static void forEach(ByteBuffer buf, int sectors, long firstSector, int min, int alignment,
                               RunConsumer out) throws java.io.IOException {
        if (sectors > 0 && (firstSector & (alignment - 1)) == 0 && !hasZeroBlock(buf, sectors, alignment)) {
            out.run(0, sectors * SECTOR, true);
            return;
        }
        int at = 0;
        while (at < sectors) {
            long run = allocatedMin(buf, at, sectors - at, min, firstSector + at, alignment);
            int n = (int) (run >>> 1);
            out.run(at * SECTOR, n * SECTOR, (run & 1) != 0);
            at += n;
        }
    }

    /**
     * Whether one of the aligned blocks of {@code alignment} sectors (the last one possibly shorter) is all zeros. From
     * an aligned first sector, every run the rule leaves out is made of such blocks (runs start where the previous
     * one ended, and both data and zero runs end on the alignment or at the buffer's end), so without one the whole
     * buffer is a single data run. Data blocks mostly show it in their first 8 bytes: one check per block (4 KiB by
     * default) instead of one per sector, which is most of a fresh JVM's work on the copy before the JIT catches up.
     */
    private static boolean hasZeroBlock(ByteBuffer buf, int sectors, int alignment) {
        for (int b = 0; b < sectors; b += alignment) {
            if (Zeros.isZero(buf, b * SECTOR, Math.min(sectors, b + alignment) * SECTOR)) {
                return true;
            }
        }
        return false;
    }

    /** {@code is_allocated_sectors}: the sectors' count (shifted left by one) and whether they are data (bit 0). */
    static long allocated(ByteBuffer buf, int from, int n, long sectorNum, int alignment) {
        boolean zero = isZeroSector(buf, from);
        int i = 1;
        while (i < n && isZeroSector(buf, from + i) == zero) {
            i++;
        }
        if (i < n) {
            int tail = (int) ((sectorNum + i) & (alignment - 1));
            if (tail != 0) {
                if (zero && i <= tail) {
                    zero = false; // the data after it rewrites this tail anyway
                }
                i = zero ? i - tail : Math.min(n, i + alignment - tail);
            }
        }
        return ((long) i << 1) | (zero ? 0 : 1);
    }

    /** {@code is_allocated_sectors_min}: a data run goes on over zero runs shorter than {@code min}. */
    static long allocatedMin(ByteBuffer buf, int from, int n, int min, long sectorNum, int alignment) {
        min = Math.min(min, n);
        long first = allocated(buf, from, n, sectorNum, alignment);
        if ((first & 1) == 0) {
            return first;
        }
        int used = (int) (first >>> 1);
        int checked = used;
        while (checked < n) {
            long r = allocated(buf, from + checked, n - checked, sectorNum + checked, alignment);
            int p = (int) (r >>> 1);
            checked += p;
            if ((r & 1) != 0) {
                used = checked;
            } else if (p >= min) {
                break;
            }
        }
        return ((long) used << 1) | 1;
    }

    private static boolean isZeroSector(ByteBuffer buf, int sector) {
        int at = sector * SECTOR;
        return Zeros.isZero(buf, at, at + SECTOR);
    }
}
