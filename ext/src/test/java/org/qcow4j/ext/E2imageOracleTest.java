package org.qcow4j.ext;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The oracle: for every filesystem of the matrix, the blocks the real {@code e2image -Q} (and {@code -Qa}) writes,
 * read back from its qcow2 file with {@code qemu-img map}, must be exactly {@link ExtFilesystem#metadataBlocks}
 * minus the blocks that are all zeros on disk (e2image skips those at write time).
 */
class E2imageOracleTest {

    static Stream<String> matrix() {
        return Fixtures.MATRIX.keySet().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void metadataMatchesE2imageQ(String name) throws IOException {
        assertMatches(name, Fixtures.filesystem(name), false);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void allDataMatchesE2imageQa(String name) throws IOException {
        assertMatches(name, Fixtures.filesystem(name), true);
    }

    /** With garbage in the blocks e2image should not select, its zero skipping hides nothing. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void metadataMatchesE2imageQOnDirtyImages(String name) throws IOException {
        assertMatches(name, Fixtures.dirty(name), false);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void allDataMatchesE2imageQaOnDirtyImages(String name) throws IOException {
        assertMatches(name, Fixtures.dirty(name), true);
    }

    @ParameterizedTest(name = "ext2 -b {0}")
    @ValueSource(longs = {8193, 24577})
    void backupSuperblockWithoutChecksums(long superblock) throws IOException {
        assertBackupMatches("ext2", superblock, 1024);
    }

    /** From a backup, e2fsprogs trusts no uninit flag: all inode tables and bitmaps are written whole. */
    @ParameterizedTest(name = "ext4 -b {0}")
    @ValueSource(longs = {8193, 57345})
    void backupSuperblockWithChecksums(long superblock) throws IOException {
        assertBackupMatches("ext4", superblock, 1024);
    }

    /** meta_bg: each descriptor block's backup is in the second group of its meta group. */
    @ParameterizedTest(name = "metabg -b {0}")
    @ValueSource(longs = {1025, 3073})
    void backupSuperblockWithMetaBg(long superblock) throws IOException {
        assertBackupMatches("metabg", superblock, 1024);
    }

    @Test
    void backupSuperblock4k() throws IOException {
        assertBackupMatches("k2", 16384, 2048);
    }

    /** A filesystem that starts 1 MiB into its file (a partition) gives the same blocks. */
    @Test
    void filesystemAtAnOffset() throws IOException {
        Path img = Fixtures.filesystem("ext4k");
        Path padded = Fixtures.dir().resolve("offset.img");
        try (FileChannel in = FileChannel.open(img);
                FileChannel out = FileChannel.open(padded, StandardOpenOption.CREATE,
                        StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.READ,
                        StandardOpenOption.WRITE)) {
            out.write(ByteBuffer.wrap("partition table and friends".getBytes()), 0);
            in.transferTo(0, in.size(), out.position(1 << 20));
            ExtFilesystem plain = Fixtures.open(in, img);
            ExtFilesystem shifted = ExtFilesystem.open(out, "offset.img", 1 << 20, 0, 0);
            assertEquals(plain.blocksCount(), shifted.blocksCount());
            assertEquals(plain.metadataBlocks(false), shifted.metadataBlocks(false));
            assertEquals(plain.metadataBlocks(true), shifted.metadataBlocks(true));
            assertEquals(plain.directoryBlocks(), shifted.directoryBlocks());
        }
    }

    @Test
    void theResizeInodeBringsPrimaryReservedGdtOnly() throws IOException {
        // Notes section 1: on a 1 KiB ext4, blocks 3-258 (primary reserved GDT, the resize inode's indirect
        // blocks) are in; the backups at 8195... (its data) come only with -a.
        Path img = Fixtures.filesystem("ext4");
        try (FileChannel ch = FileChannel.open(img)) {
            ExtFilesystem fs = Fixtures.open(ch, img);
            BlockRanges meta = fs.metadataBlocks(false);
            assertTrue(meta.contains(3) && meta.contains(258), meta::toString);
            assertTrue(!meta.contains(8195) && fs.metadataBlocks(true).contains(8195));
        }
    }

    /**
     * Extents that overlap what came before (a corrupt file): e2fsprogs' block iterator skips one that ends before
     * its position together with the entry after it, and shifts one that starts before its position. The real
     * e2image -Qa on such a file is the reference.
     */
    @Test
    void overlappingExtentsAreWalkedAsE2fsprogsDoes() throws IOException {
        Path img = Fixtures.dirty("ext4k");
        Path bad = img.resolveSibling("overlap-extents.img");
        Files.copy(img, bad, StandardCopyOption.REPLACE_EXISTING);
        long leaf = Fixtures.debugfsBlock(Fixtures.filesystem("ext4k"), "/sparse", "(ETB0)");
        try (FileChannel ch = FileChannel.open(bad, StandardOpenOption.WRITE)) {
            // Entry 2 (logical 400) moves to logical 100: skipped, and entry 3 with it.
            ch.write(le32(100), leaf * 4096 + 12 + 2 * 12);
            // Entry 5 (logical 1000, 1 block) becomes logical 800, 3 blocks: it starts 1 block before the
            // iterator's position 801, so e2fsprogs reports its 3 blocks from 1 block further on.
            ch.write(le32(800), leaf * 4096 + 12 + 5 * 12);
            ch.write(ByteBuffer.allocate(2).order(ByteOrder.LITTLE_ENDIAN).putShort(0, (short) 3),
                    leaf * 4096 + 12 + 5 * 12 + 4);
        }
        assertMatches("overlapping extents", bad, true);
    }

    private static ByteBuffer le32(int v) {
        return ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(0, v);
    }

    private static void assertMatches(String name, Path img, boolean allData) throws IOException {
        try (FileChannel ch = FileChannel.open(img)) {
            ExtFilesystem fs = Fixtures.open(ch, img);
            BlockRanges ours = Fixtures.nonZero(img, fs.metadataBlocks(allData), fs.blockSize());
            BlockRanges e2image = allData ? Fixtures.e2imageBlocks(img, fs.blockSize(), "-a")
                    : Fixtures.e2imageBlocks(img, fs.blockSize());
            assertEquals(e2image, ours, () -> name + (allData ? " -Qa" : " -Q") + "\n  e2image: " + e2image
                    + "\n  ours:    " + ours + "\n  only e2image: " + minus(e2image, ours)
                    + "\n  only ours:    " + minus(ours, e2image));
        }
    }

    private static void assertBackupMatches(String name, long superblock, int blockSize) throws IOException {
        Path img = Fixtures.dirty(name);
        try (FileChannel ch = FileChannel.open(img)) {
            ExtFilesystem fs = ExtFilesystem.open(ch, name, 0, superblock, blockSize);
            BlockRanges ours = Fixtures.nonZero(img, fs.metadataBlocks(false), fs.blockSize());
            BlockRanges e2image = Fixtures.e2imageBlocks(img, blockSize, "-b", Long.toString(superblock), "-B",
                    Integer.toString(blockSize));
            assertEquals(e2image, ours, () -> name + " -b " + superblock + "\n  only e2image: "
                    + minus(e2image, ours) + "\n  only ours:    " + minus(ours, e2image));
            assertTrue(ours.contains(superblock), "the -b superblock is written");
        }
    }

    static String minus(BlockRanges a, BlockRanges b) {
        BlockRangesBuilder out = new BlockRangesBuilder();
        for (var it = a.iterator(); it.hasNext();) {
            long block = it.nextLong();
            if (!b.contains(block)) {
                out.add(block);
            }
        }
        return out.build(0, 0, Long.MAX_VALUE).toString();
    }
}
