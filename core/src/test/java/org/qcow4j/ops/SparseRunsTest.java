package org.qcow4j.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * qemu-img's is_allocated_sectors_min, worked by hand (in 512-byte sectors) on the layout of iotest 122's
 * "Non-zero -S" case, whose qemu-img map results these runs give.
 */
class SparseRunsTest {
    /** 132 sectors: data in sectors 0-1, 16-17 and 34-35 (bytes [0, 1k), [8k, 9k), [17k, 18k)), zeros elsewhere. */
    private static ByteBuffer layout() {
        ByteBuffer b = ByteBuffer.allocate(132 * 512);
        for (int sector : new int[] {0, 1, 16, 17, 34, 35}) {
            b.put(sector * 512 + 100, (byte) 0xcd);
        }
        return b;
    }

    private static List<String> runs(ByteBuffer b, long firstSector, int minSectors) throws IOException {
        List<String> out = new ArrayList<>();
        SparseRuns.forEach(b, b.capacity() / 512, firstSector, minSectors, SparseRuns.alignment(minSectors),
                (from, length, data) -> out.add((data ? "data " : "zero ") + from / 512 + "+" + length / 512));
        return out;
    }

    @Test
    void fourKiBWidensDataToItsAlignmentAndLeavesWholeZeroBlocks() throws IOException {
        assertEquals(List.of("data 0+8", "zero 8+8", "data 16+8", "zero 24+8", "data 32+8", "zero 40+92"),
                runs(layout(), 0, 8));
    }

    @Test
    void eightKiBWritesZeroRunsShorterThanItInsideData() throws IOException {
        assertEquals(List.of("data 0+48", "zero 48+84"), runs(layout(), 0, 16));
    }

    @Test
    void oneSectorFollowsTheDataExactly() throws IOException {
        assertEquals(List.of("data 0+2", "zero 2+14", "data 16+2", "zero 18+16", "data 34+2", "zero 36+96"),
                runs(layout(), 0, 1));
    }

    @Test
    void alignmentCountsFromTheGuestSectorNotTheBuffer() throws IOException {
        // The same bytes from guest sector 1 on: every data run ends on a 4 KiB boundary of the disk.
        assertEquals(List.of("data 0+7", "zero 7+8", "data 15+8", "zero 23+8", "data 31+8", "zero 39+93"),
                runs(layout(), 1, 8));
    }

    @Test
    void allZeroAndAllDataAreOneRun() throws IOException {
        assertEquals(List.of("zero 0+128"), runs(ByteBuffer.allocate(65536), 0, 8));
        ByteBuffer full = ByteBuffer.allocate(65536);
        for (int i = 0; i < 65536; i += 512) {
            full.put(i, (byte) 1);
        }
        assertEquals(List.of("data 0+128"), runs(full, 0, 8));
    }

    /** forEach's shortcut for buffers without a zero block gives the runs of the rule itself (allocatedMin's loop). */
    @Test
    void shortcutAgreesWithTheRuleOnRandomLayouts() throws IOException {
        Random random = new Random(16);
        for (int round = 0; round < 2000; round++) {
            int sectors = 1 + random.nextInt(300);
            ByteBuffer b = ByteBuffer.allocate(sectors * 512);
            int zeroOneIn = 1 + random.nextInt(40); // from mostly zero sectors to almost none
            for (int s = 0; s < sectors; s++) {
                if (random.nextInt(zeroOneIn) != 0) {
                    b.put(s * 512 + random.nextInt(512), (byte) (1 + random.nextInt(255)));
                }
            }
            long first = random.nextInt(4) == 0 ? random.nextInt(64) : random.nextInt(8) * 128L;
            int min = new int[] {1, 2, 8, 12, 16, 128}[random.nextInt(6)];
            List<String> want = new ArrayList<>();
            int alignment = SparseRuns.alignment(min);
            for (int at = 0; at < sectors; ) {
                long run = SparseRuns.allocatedMin(b, at, sectors - at, min, first + at, alignment);
                int n = (int) (run >>> 1);
                want.add(((run & 1) != 0 ? "data " : "zero ") + at + "+" + n);
                at += n;
            }
            assertEquals(want, runs(b, first, min), "round " + round + ": " + sectors + " sectors from " + first
                    + ", min " + min);
        }
    }
}
