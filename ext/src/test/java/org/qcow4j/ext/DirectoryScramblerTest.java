package org.qcow4j.ext;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;
import org.qcow4j.FormatException;

/** {@link DirectoryScrambler} on hand-made blocks (ScramblerOracleTest compares it with e2image -s). */
class DirectoryScramblerTest {

    /** A 1 KiB block: ".", "..", "abc", "xyz" and a deleted "hello" whose record runs to the end. */
    private static ByteBuffer block() {
        ByteBuffer b = ByteBuffer.allocate(1024).order(ByteOrder.LITTLE_ENDIAN);
        entry(b, 0, 2, 12, ".");
        entry(b, 12, 2, 12, "..");
        entry(b, 24, 11, 12, "abc");
        entry(b, 36, 12, 20, "xyz");
        b.put(36 + 12, (byte) 'Q'); // stale bytes after the name: zeroed
        entry(b, 56, 0, 1024 - 56, "hello");
        return b;
    }

    private static void entry(ByteBuffer b, int at, int inode, int recLen, String name) {
        b.putInt(at, inode).putShort(at + 4, (short) recLen).put(at + 6, (byte) name.length()).put(at + 7, (byte) 1);
        b.put(at + 8, name.getBytes(StandardCharsets.US_ASCII));
    }

    private static String name(ByteBuffer b, int at) {
        byte[] n = new byte[b.get(at + 6)];
        b.get(at + 8, n);
        return new String(n, StandardCharsets.US_ASCII);
    }

    @Test
    void namesBecomeCountedAsKeepingDotAndDotDot() throws FormatException {
        ByteBuffer b = block();
        DirectoryScrambler s = new DirectoryScrambler(1024);
        s.scramble(b);
        assertEquals(".", name(b, 0));
        assertEquals("..", name(b, 12));
        assertEquals("AAA", name(b, 24));  // first 3-byte name: counter 0
        assertEquals("BAA", name(b, 36));  // second: counter 1, added from the first character on
        assertEquals(0, b.get(36 + 12), "slack after the name is zeroed");
        assertEquals("AAAAA", name(b, 56));
        assertEquals(20, b.getShort(36 + 4), "lengths are kept");
        assertEquals(12, b.getInt(36), "inode numbers are kept");

        ByteBuffer again = block();
        s.scramble(again); // counters run on across blocks
        assertEquals("CAA", name(again, 24));
        assertEquals("DAA", name(again, 36));
        assertEquals("BAAAA", name(again, 56));
    }

    @Test
    void counterIsBase26LeastSignificantFirst() throws FormatException {
        DirectoryScrambler s = new DirectoryScrambler(1024);
        ByteBuffer b = null;
        for (int i = 0; i <= 27; i++) {
            b = ByteBuffer.allocate(1024).order(ByteOrder.LITTLE_ENDIAN);
            entry(b, 0, 2, 1024, "xy");
            s.scramble(b);
        }
        assertEquals("BB", name(b, 0)); // 27 = 1 + 1*26
    }

    @Test
    void wholeBlockRecordLengths() throws FormatException {
        for (int raw : new int[] {0, 0xFFFF}) {
            ByteBuffer b = ByteBuffer.allocate(65536).order(ByteOrder.LITTLE_ENDIAN);
            entry(b, 0, 5, 0, "name");
            b.putShort(4, (short) raw);
            b.put(100, (byte) 7);
            new DirectoryScrambler(65536).scramble(b);
            assertEquals("AAAA", name(b, 0));
            assertEquals(0, b.get(100), "rec_len " + raw + " means the whole block");
        }
    }

    @Test
    void respectsTheBuffersPositionAndOrder() throws FormatException {
        ByteBuffer big = ByteBuffer.allocate(3000);
        ByteBuffer expected = block();
        new DirectoryScrambler(1024).scramble(expected);
        big.position(1000).put(block().array()).position(1000).limit(2024);
        new DirectoryScrambler(1024).scramble(big);
        assertEquals(1000, big.position());
        assertEquals(ByteOrder.BIG_ENDIAN, big.order());
        byte[] got = new byte[1024];
        big.get(1000, got);
        assertArrayEquals(expected.array(), got);
    }

    @Test
    void corruptEntriesAreRefusedUntouched() {
        ByteBuffer b = block();
        b.putShort(24 + 4, (short) 1004); // "abc" would run 4 bytes past the end
        byte[] before = b.array().clone();
        FormatException e = assertThrows(FormatException.class, () -> new DirectoryScrambler("fs.img", 1024)
                .scramble(b));
        assertEquals("rec_len of the directory entry at byte 24", e.field());
        assertEquals("1004", e.value());
        assertArrayEquals(before, b.array());

        ByteBuffer odd = block();
        odd.putShort(24 + 4, (short) 14); // low bits are length bits 16-17: 131084
        FormatException oddLength = assertThrows(FormatException.class,
                () -> new DirectoryScrambler(1024).scramble(odd));
        assertEquals("14", oddLength.value());
        assertTrue(oddLength.getMessage().contains("a length of 131084"), oddLength::getMessage);

        ByteBuffer longName = block();
        longName.put(24 + 6, (byte) 5);
        assertEquals("name_len of the directory entry at byte 24",
                assertThrows(FormatException.class, () -> new DirectoryScrambler(1024).scramble(longName)).field());
    }

    @Test
    void rejectsWrongSizes() {
        assertThrows(IllegalArgumentException.class, () -> new DirectoryScrambler(1000));
        assertThrows(IllegalArgumentException.class,
                () -> new DirectoryScrambler(1024).scramble(ByteBuffer.allocate(512)));
    }
}
