package org.qcow4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** The extent map must be exact or refused: a wrong one would skip data. */
class FileExtentsTest {
    private static final String HEAD = "Filesystem type is: ef53\nFile size of f is 8589934592 (8589934592 blocks of 1 bytes)\n"
            + " ext:     logical_offset:        physical_offset: length:   expected: flags:\n";

    @Test
    void parsesAndMergesExtents() {
        String out = HEAD
                + "   0:        0..    4095:  66609741824..66609745919:   4096:             \n"
                + "   1:     4096..    8191:  70000000000..70000004095:   4096: 66609745920:\n"
                + "   2: 104857600..105906175: 66609741824..66610790399: 1048576:  104857600: last,eof\n"
                + "f: 3 extents found\n";
        assertArrayEquals(new long[] {0, 8192, 104857600, 105906176}, FileExtents.parse(out, 8589934592L));
        assertArrayEquals(new long[0], FileExtents.parse(HEAD + "f: 0 extents found\n", 100));
    }

    @Test
    void refusesWhatItCannotTrust() {
        assertNull(FileExtents.parse("filefrag: FIEMAP not supported\n", 100));
        assertNull(FileExtents.parse(HEAD + "   0: 8192..9000: 1..2: 3:\n   1: 0..4095: 5..6: 7:\n", 10000), "unsorted");
        assertNull(FileExtents.parse(HEAD + "   0: 0..9000: 1..2: 3:\n   1: 4096..9999: 5..6: 7:\n", 10000), "overlapping");
        assertNull(FileExtents.parse(HEAD + "   0: 500..100: 1..2: 3:\n", 10000), "backwards");
    }

    @Test
    void takesTheLaunchersAnswerOnlyForTheFileItNamed() {
        Path here = Path.of("img.qcow2");
        assertEquals(4096, FileExtents.launcherAnswer("4096:img.qcow2", here));
        assertEquals(4096, FileExtents.launcherAnswer("4096:" + here.toAbsolutePath(), Path.of("./img.qcow2")));
        assertEquals(8192, FileExtents.launcherAnswer("8192:a:b.qcow2", Path.of("a:b.qcow2")), "a colon in the name");
        assertEquals(-1, FileExtents.launcherAnswer("4096:other.qcow2", here));
        assertEquals(-1, FileExtents.launcherAnswer(null, here));
        for (String bad : new String[] {"", ":img.qcow2", "4096:", "x:img.qcow2", "-5:img.qcow2", "4096"}) {
            assertEquals(-1, FileExtents.launcherAnswer(bad, here), bad);
        }
    }
}
