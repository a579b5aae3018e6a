package org.qcow4j.qcow2;

import org.qcow4j.FormatException;
import org.qcow4j.InvalidTableException;
import org.qcow4j.format.ClusterGeometry;
import org.qcow4j.format.L1Entry;

/**
 * The checks a snapshot's L1 table passes before anything reads it, for every operation that does (apply, delete,
 * reading a snapshot, expanding zero clusters): QEMU's {@code qcow2_validate_table} with its "Snapshot L1 table"
 * name, and then the file's end, which QEMU does not check (it would read zeros there) and qcow4j refuses.
 */
final class SnapshotL1Table {
    private SnapshotL1Table() {
    }

    /**
     * Refuses snapshot {@code id}'s L1 table of {@code entries} entries (l1_size, unsigned) at {@code offset} in a file
     * of {@code fileLength} bytes ({@code Long.MAX_VALUE}: QEMU's {@code qcow2_validate_table} alone, the file's end
     * not checked).
     */
    static void validate(String file, String id, long offset, long entries, ClusterGeometry geo, long fileLength)
            throws FormatException {
        String field = "snapshot " + id;
        if (entries > L1Entry.MAX_ENTRIES) {
            throw new InvalidTableException(file, field + " l1_size", entries, InvalidTableException.Reason.TOO_LARGE,
                    "more than QEMU's limit of " + L1Entry.MAX_ENTRIES + " entries", "Snapshot L1 table too large");
        }
        long bytes = entries * 8;
        if (offset < 0 || offset > Long.MAX_VALUE - bytes || geo.offsetInCluster(offset) != 0) {
            throw new InvalidTableException(file, field + " l1_table_offset", FormatException.hex(offset),
                    InvalidTableException.Reason.OFFSET_INVALID, offset < 0 || offset > Long.MAX_VALUE - bytes
                    ? "the table would reach past the largest file offset" : "not aligned to a cluster",
                    "Snapshot L1 table offset invalid");
        }
        if (bytes > 0 && offset + bytes > fileLength) {
            throw new FormatException(file, field + " l1_table_offset", FormatException.hex(offset), "the table of "
                    + bytes + " bytes runs past the end of the file (" + fileLength + " bytes)");
        }
    }
}
