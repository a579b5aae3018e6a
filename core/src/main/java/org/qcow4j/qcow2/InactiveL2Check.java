package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import org.qcow4j.CorruptionException;
import org.qcow4j.FormatException;
import org.qcow4j.format.ClusterGeometry;
import org.qcow4j.format.L1Entry;
import org.qcow4j.format.SnapshotTable;
import org.qcow4j.io.FileStorage;

/**
 * QEMU's overlap check of inactive L2 tables ({@code overlap-check.inactive-l2}, on in {@code overlap-check=all}),
 * run before every write of new content to the image file as {@code qcow2_check_metadata_overlap} runs it: each
 * snapshot's L1 table is checked ({@link SnapshotL1Table}: a bad one fails the write with QEMU's errno, EINVAL or
 * EFBIG, nothing written) and read, and a write over an L2 table one of them names is refused and the image marked
 * corrupt, in QEMU's words. It reads every snapshot's L1 table on every write, which is why QEMU leaves it off by
 * default, and so does qcow4j.
 */
final class InactiveL2Check implements FileStorage.WriteCheck {
    private final String filename;
    private final FileStorage storage;
    private final ClusterGeometry geo;
    /** The snapshot table the image was opened with (QEMU checks the one it holds in memory). */
    private final List<SnapshotTable.Entry> snapshots;

    InactiveL2Check(String filename, FileStorage storage, ClusterGeometry geo, List<SnapshotTable.Entry> snapshots) {
        this.filename = filename;
        this.storage = storage;
        this.geo = geo;
        this.snapshots = snapshots;
    }

    @Override
    public void before(long pos, long length) throws IOException {
        if (length <= 0 || pos + length <= geo.clusterSize()) {
            return; // QEMU writes its header without the check (qcow2_update_header, qcow2_mark_dirty/_corrupt)
        }
        // "align range to test to cluster boundaries"
        long start = geo.startOfCluster(pos);
        long end = geo.startOfCluster(pos + length - 1) + geo.clusterSize();
        for (SnapshotTable.Entry sn : snapshots) {
            long entries = Integer.toUnsignedLong(sn.l1Size());
            // qcow2_validate_table's checks only: QEMU reads a table past the file's end as zeros
            SnapshotL1Table.validate(filename, sn.id(), sn.l1TableOffset(), entries, geo, Long.MAX_VALUE);
            entries = Math.min(entries, Math.max(0, storage.length() - sn.l1TableOffset()) / 8);
            for (int i = 0; i < entries; ) {
                int n = (int) Math.min(entries - i, 1 << 16); // read a bounded piece at a time
                ByteBuffer b = storage.read(sn.l1TableOffset() + 8L * i, n * 8).order(ByteOrder.BIG_ENDIAN);
                for (int j = 0; j < n; j++) {
                    long l2 = L1Entry.l2Offset(b.getLong(8 * j));
                    if (l2 != 0 && l2 < end && l2 + geo.clusterSize() > start) {
                        throw new CorruptionException(filename, "write at offset " + pos, FormatException.hex(l2),
                                "overlaps the L2 table " + (i + j) + " of snapshot " + sn.id(),
                                "Preventing invalid write on metadata (overlaps with inactive L2 table)");
                    }
                }
                i += n;
            }
        }
    }
}
