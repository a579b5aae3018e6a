package org.qcow4j.format;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class L2EntryTest {
    @Test
    void decodesCompressedDescriptorsQemuWrote() {
        // Entries observed in qemu-img convert -c output with 64 KiB clusters (qcow2-reference.md section 2).
        assertEquals(0x50000, L2Entry.compressedOffset(0x4000000000050000L, 16));
        assertEquals(512, L2Entry.compressedSize(0x4000000000050000L, 16));
        assertEquals(0x500c3, L2Entry.compressedOffset(0x40000000000500c3L, 16));
        assertEquals(512 - 0xc3, L2Entry.compressedSize(0x40000000000500c3L, 16));
        assertEquals(0x50186, L2Entry.compressedOffset(0x4040000000050186L, 16));
        assertEquals(1024 - 0x186, L2Entry.compressedSize(0x4040000000050186L, 16));
        assertEquals(54, L2Entry.compressedSizeShift(16));
        assertEquals(61, L2Entry.compressedSizeShift(9));
    }

    @Test
    void classifiesStandardEntries() {
        assertEquals(SubclusterType.UNALLOCATED_PLAIN, L2Entry.classify(0, 0, 0, false, false));
        assertEquals(SubclusterType.ZERO_PLAIN, L2Entry.classify(1, 0, 0, false, false));
        assertEquals(SubclusterType.ZERO_ALLOC, L2Entry.classify(0x8000000000050001L, 0, 0, false, false));
        assertEquals(SubclusterType.NORMAL, L2Entry.classify(0x8000000000050000L, 0, 0, false, false));
        assertEquals(SubclusterType.COMPRESSED, L2Entry.classify(0x4000000000050000L, 0, 0, false, false));
        // External data file: offset 0 with COPIED maps guest cluster 0.
        assertEquals(SubclusterType.NORMAL, L2Entry.classify(0x8000000000000000L, 0, 0, false, true));
        assertEquals(SubclusterType.UNALLOCATED_PLAIN, L2Entry.classify(0x8000000000000000L, 0, 0, false, false));
    }

    @Test
    void classifiesExtendedEntriesPerSubcluster() {
        // Observed: 128k clusters, write 4k@4k + zero 8k@64k -> alloc bit 1, zero bits 16 and 17.
        long entry = 0x80000000000a0000L;
        long bitmap = 0x0003_0000_0000_0002L;
        assertEquals(SubclusterType.UNALLOCATED_ALLOC, L2Entry.classify(entry, bitmap, 0, true, false));
        assertEquals(SubclusterType.NORMAL, L2Entry.classify(entry, bitmap, 1, true, false));
        assertEquals(SubclusterType.ZERO_ALLOC, L2Entry.classify(entry, bitmap, 16, true, false));
        assertEquals(SubclusterType.ZERO_PLAIN, L2Entry.classify(0, 0xffff_ffff_0000_0000L, 5, true, false));
        assertEquals(SubclusterType.UNALLOCATED_PLAIN, L2Entry.classify(0, 0, 5, true, false));
        // Both bits for one subcluster, or alloc bits without a host cluster; a compressed entry's bitmap is ignored.
        assertEquals(SubclusterType.INVALID, L2Entry.classify(entry, 0x0000_0002_0000_0002L, 3, true, false));
        assertEquals(SubclusterType.INVALID, L2Entry.classify(0, 1, 0, true, false));
        assertEquals(SubclusterType.COMPRESSED, L2Entry.classify(0x4000000000050000L, 0x0000_0001_8000_0000L, 0, true, false));
    }

    @Test
    void geometryIndexesLikeQemu() {
        ClusterGeometry g = new ClusterGeometry(16, false);
        assertEquals(8192, g.l2Entries());
        assertEquals(512L << 20, g.l2Coverage());
        assertEquals(2, g.l1Index((1L << 30) + 5));
        assertEquals(1, g.l2Index(65536 + 7));
        ClusterGeometry e = new ClusterGeometry(17, true);
        assertEquals(8192, e.l2Entries());
        assertEquals(4096, e.subclusterSize());
        assertEquals(3, e.subclusterIndex(131072 + 3 * 4096 + 1));
        assertEquals(64, new ClusterGeometry(9, false).l1EntriesFor(2L << 20)); // 64 entries x 512 B per L2 table
    }

    @Test
    void subclusterBitmapMasks() {
        assertEquals(0x1L, L2Entry.subclusterBits(0, 0));
        assertEquals(0x8000_0000L, L2Entry.subclusterBits(31, 31));
        assertEquals(L2Entry.BITMAP_ALL_ALLOC, L2Entry.subclusterBits(0, 31));
        assertEquals(0x0000_0ff0L, L2Entry.subclusterBits(4, 11));
        assertEquals(0x0000_0ff0_0000_0000L, L2Entry.zeroBits(L2Entry.subclusterBits(4, 11)));
        assertEquals(L2Entry.BITMAP_ALL_ZERO, L2Entry.zeroBits(L2Entry.BITMAP_ALL_ALLOC));
    }
}
