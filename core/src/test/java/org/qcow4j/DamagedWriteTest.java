package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.testing.Processes;

/**
 * Writing into damaged images: the writer must refuse (a {@link FormatException}) rather than hang, put guest
 * data or tables over metadata, or lower a refcount twice. Each case is one a review found by hand.
 */
class DamagedWriteTest {
    @TempDir
    Path dir;

    private Path make(String script, String name) {
        Processes.Result r = Processes.run(dir, "bash", "-ec", script);
        assertEquals(0, r.exit(), r.err());
        return dir.resolve(name);
    }

    private static void poke(Path file, long at, byte[] bytes) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(at);
            f.write(bytes);
        }
    }

    private static long headerLong(Path file, int at) throws IOException {
        return ByteBuffer.wrap(Files.readAllBytes(file)).getLong(at);
    }

    @Test
    void aMissingFirstRefcountBlockIsRefusedNotLoopedOn() throws Exception {
        Path img = make("qemu-img create -q -f qcow2 t.qcow2 16M", "t.qcow2");
        poke(img, headerLong(img, 48), new byte[8]); // refcount table entry 0 = 0: the header counts for nothing
        assertTimeoutPreemptively(Duration.ofSeconds(10), () -> {
            try (WritableImage image = Images.openWritable(img)) {
                CorruptionException e = assertThrows(CorruptionException.class, () -> image.write(ByteBuffer.allocate(4096), 0));
                assertTrue(e.getMessage().contains("would overwrite the header"), e.getMessage());
                assertEquals("Preventing invalid allocation of L2 table at offset 0", e.qemuWords()); // QEMU's words
                assertThrows(QcowException.class, () -> image.write(ByteBuffer.allocate(4096), 0), "no more writes");
            }
            try (WritableImage again = Images.openWritable(img)) {
                assertTrue(again.readOnly(), "marked corrupt: opens read-only until repaired");
            }
        });
    }

    @Test
    void zeroedRefcountsNeverLetGuestDataOrTablesOverMetadata() throws Exception {
        Path img = make("qemu-img create -q -f qcow2 t.qcow2 16M", "t.qcow2");
        long block = headerLong(img, 48);
        block = ByteBuffer.wrap(Files.readAllBytes(img)).getLong((int) block);
        poke(img, block, new byte[65536]); // every refcount 0, the metadata's own included
        byte[] before = Files.readAllBytes(img);
        try (WritableImage image = Images.openWritable(img)) {
            assertThrows(FormatException.class, () -> image.write(ByteBuffer.allocate(65536), 0));
        } catch (FormatException e) {
            // refused at close as well: nothing may have been written over the metadata either way
        }
        byte[] after = Files.readAllBytes(img);
        before[79] |= 2; // the corrupt bit, which QEMU sets too
        assertArrayEquals(java.util.Arrays.copyOf(before, 4 * 65536), java.util.Arrays.copyOf(after, 4 * 65536),
                "header (but for the corrupt bit), refcount table, refcount block and L1 table untouched");
    }

    @Test
    void aFreeThatFailsIsNotAppliedTwice() throws Exception {
        // Compressed streams of four guest clusters share host clusters; one entry is damaged to point far away.
        Path img = make("yes abcdefgh | head -c 262144 > r; qemu-img convert -q -c -O qcow2 r t.qcow2; "
                + "qemu-img map --output=json t.qcow2 > /dev/null", "t.qcow2");
        byte[] raw = Files.readAllBytes(dir.resolve("r"));
        long l1 = headerLong(img, 40);
        long l2 = ByteBuffer.wrap(Files.readAllBytes(img)).getLong((int) l1) & 0x00ff_ffff_ffff_fe00L;
        long entry3 = ByteBuffer.wrap(Files.readAllBytes(img)).getLong((int) l2 + 24);
        poke(img, l2 + 24, ByteBuffer.allocate(8).putLong(0, (entry3 & ~((1L << 54) - 1)) | (1L << 50)).array());
        try (WritableImage image = Images.openWritable(img)) {
            image.discard(0, 65536);
            image.discard(3 * 65536, 65536);
            for (int i = 0; i < 4; i++) {
                image.flush();
            }
            image.write(ByteBuffer.wrap(new byte[65536]), 0);
            ByteBuffer one = ByteBuffer.allocate(65536);
            image.read(one, 65536);
            assertArrayEquals(java.util.Arrays.copyOfRange(raw, 65536, 131072), one.array(), "guest cluster 1 intact");
        }
        Processes.Result check = Processes.run(dir, "qemu-img", "check", "t.qcow2");
        assertTrue(check.exit() == 0 || check.exit() == 3, "at most leaks:\n" + check.out() + check.err());
    }
}
