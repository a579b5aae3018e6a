package org.qcow4j.ext;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The pure layout rules of {@link Superblock}: where superblock backups and descriptor blocks live. */
class SuperblockTest {

    private static Superblock superblock(int compat, int incompat, int roCompat, long firstMetaBg, long... backups) {
        ByteBuffer b = ByteBuffer.allocate(Superblock.SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(0x04, 1 << 20);       // blocks
        b.putInt(0x14, 1);             // first data block (1 KiB blocks)
        b.putInt(0x20, 8192);          // blocks per group
        b.putInt(0x24, 8192);
        b.putInt(0x28, 2048);
        b.putInt(0x00, 128 * 2048);    // 128 groups
        b.putShort(0x38, (short) 0xEF53);
        b.putInt(0x4C, 1);
        b.putShort(0x58, (short) 256);
        b.putInt(0x5C, compat).putInt(0x60, incompat).putInt(0x64, roCompat);
        b.putInt(0x104, (int) firstMetaBg);
        if (backups.length == 2) {
            b.putInt(0x24C, (int) backups[0]).putInt(0x250, (int) backups[1]);
        }
        return Superblock.parse(b);
    }

    @Test
    void sparseSuperGroupsArePowersOf3_5_7() {
        Superblock sb = superblock(0, 0, Superblock.RO_COMPAT_SPARSE_SUPER, 0);
        List<Long> with = new java.util.ArrayList<>();
        for (long g = 0; g < 128; g++) {
            if (sb.groupHasSuperblock(g)) {
                with.add(g);
            }
        }
        assertEquals(List.of(0L, 1L, 3L, 5L, 7L, 9L, 25L, 27L, 49L, 81L, 125L), with);
        Superblock dense = superblock(0, 0, 0, 0);
        assertTrue(dense.groupHasSuperblock(4));
    }

    @Test
    void sparseSuper2KeepsTwoBackups() {
        Superblock sb = superblock(Superblock.COMPAT_SPARSE_SUPER2, 0, Superblock.RO_COMPAT_SPARSE_SUPER, 0, 1, 127);
        assertTrue(sb.groupHasSuperblock(0) && sb.groupHasSuperblock(1) && sb.groupHasSuperblock(127));
        assertFalse(sb.groupHasSuperblock(3) || sb.groupHasSuperblock(125));
    }

    @Test
    void descriptorBlocksFollowTheSuperblockWithoutMetaBg() {
        Superblock sb = superblock(0, 0, Superblock.RO_COMPAT_SPARSE_SUPER, 0);
        assertEquals(4, sb.descriptorBlocks()); // 128 groups of 32 bytes in 1 KiB blocks
        assertEquals(2, sb.descriptorBlock(1, 0));
        assertEquals(5, sb.descriptorBlock(1, 3));
        assertEquals(8195, sb.descriptorBlock(8193, 1));
    }

    /** meta_bg: block i is in the first group of meta group i (after its superblock backup, if any). */
    @Test
    void descriptorBlocksOfMetaGroups() {
        Superblock sb = superblock(0, Superblock.INCOMPAT_META_BG, Superblock.RO_COMPAT_SPARSE_SUPER, 1);
        assertEquals(2, sb.descriptorBlock(1, 0));                 // below s_first_meta_bg
        assertEquals(1 + 32 * 8192, sb.descriptorBlock(1, 1));      // group 32: no backup superblock
        assertEquals(1 + 64 * 8192, sb.descriptorBlock(1, 2));
        assertEquals(1 + 96 * 8192, sb.descriptorBlock(1, 3));
        // From a backup superblock, the copy in the meta group's second group (33: no superblock either).
        assertEquals(1 + 33 * 8192, sb.descriptorBlock(8193, 1));
        Superblock early = superblock(0, Superblock.INCOMPAT_META_BG, Superblock.RO_COMPAT_SPARSE_SUPER, 0);
        assertEquals(2, early.descriptorBlock(1, 0));              // group 0 has the primary superblock
        assertEquals(1 + 8192 + 1, early.descriptorBlock(8193, 0)); // group 1 has a backup superblock
    }
}
