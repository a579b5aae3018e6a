package org.qcow4j.ext;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code e2image -Qs} against {@link DirectoryScrambler}: every directory block of the real e2image's output (read
 * back through {@code qemu-img convert -O raw}) must equal the original block scrambled here, byte for byte, with
 * the blocks taken in ascending order as e2image does. The htree filesystem ("ext4", /big with 600 entries) is the
 * case the task names; the whole matrix costs little more.
 */
class ScramblerOracleTest {

    static Stream<String> matrix() {
        return Fixtures.MATRIX.keySet().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void directoryBlocksMatchE2imageQs(String name) throws IOException {
        Path img = Fixtures.filesystem(name);
        Path qcow2 = Fixtures.dir().resolve(name + "-s.qcow2");
        Path raw = Fixtures.dir().resolve(name + "-s.raw");
        Fixtures.run("rm", "-f", qcow2.toString(), raw.toString()).ok();
        Fixtures.run("e2image", "-Qs", img.toString(), qcow2.toString()).ok();
        Fixtures.run("qemu-img", "convert", "-O", "raw", qcow2.toString(), raw.toString()).ok();
        try (FileChannel source = FileChannel.open(img); FileChannel scrambled = FileChannel.open(raw)) {
            ExtFilesystem fs = Fixtures.open(source, img);
            int bs = fs.blockSize();
            BlockRanges directories = fs.directoryBlocks();
            assertTrue(directories.count() > 0);
            DirectoryScrambler scrambler = new DirectoryScrambler(name, bs);
            ByteBuffer ours = ByteBuffer.allocate(bs);
            ByteBuffer theirs = ByteBuffer.allocate(bs);
            int changed = 0;
            for (var it = directories.iterator(); it.hasNext();) {
                long block = it.nextLong();
                read(source, ours, block * bs);
                byte[] before = ours.array().clone();
                scrambler.scramble(ours);
                read(scrambled, theirs, block * bs);
                assertArrayEquals(theirs.array(), ours.array(), name + ": directory block " + block);
                changed += Arrays.equals(before, ours.array()) ? 0 : 1;
            }
            assertTrue(changed > 0, "some names were scrambled");
        }
    }

    private static void read(FileChannel ch, ByteBuffer buf, long position) throws IOException {
        Arrays.fill(buf.array(), (byte) 0);
        buf.clear();
        while (buf.hasRemaining()) {
            if (ch.read(buf, position + buf.position()) < 0) {
                break; // past the end of the raw file: a hole, zeros
            }
        }
        buf.clear();
    }
}
