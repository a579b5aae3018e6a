package org.qcow4j.ext;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.qcow4j.FormatException;
import org.qcow4j.UnsupportedFeatureException;

/**
 * Damaged and hostile filesystems: a valid image from the matrix has bytes patched, and opening it and listing its
 * blocks must fail with a {@link FormatException} naming the field and its value, within 2 s and without
 * allocating from the bad value.
 */
class MalformedFilesystemTest {
    private static final Duration LIMIT = Duration.ofSeconds(2);
    /** Far below what the bad fields would ask for (gigabytes), far above what a refusal needs. */
    private static final long ALLOCATION_BUDGET = 32L << 20;

    // Superblock field offsets (Superblock.java's Javadoc table), from the start of the filesystem.
    private static final int SB = 1024;
    private static final int S_INODES_COUNT = SB;
    private static final int S_BLOCKS_COUNT = SB + 0x04;
    private static final int S_LOG_BLOCK_SIZE = SB + 0x18;
    private static final int S_INODES_PER_GROUP = SB + 0x28;
    private static final int S_MAGIC = SB + 0x38;
    private static final int S_FEATURE_INCOMPAT = SB + 0x60;
    private static final int S_BLOCKS_COUNT_HI = SB + 0x150;

    // ---------------------------------------------------------------------------------------------- superblock

    @Test
    void badSuperblockMagic() throws IOException {
        Path img = Fixtures.copy("ext4", "magic.img");
        putU16(img, S_MAGIC, 0x1234);
        assertRefused(img, "s_magic", "0x1234");
    }

    @Test
    void fileTooShortForASuperblock() throws IOException {
        Path img = Fixtures.copy("ext4", "short.img");
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.WRITE)) {
            ch.truncate(1500);
        }
        assertRefused(img, "superblock", "bytes 1024-2047");
    }

    @Test
    void hugeBlockSize() throws IOException {
        Path img = Fixtures.copy("ext4", "logbs.img");
        putU32(img, S_LOG_BLOCK_SIZE, 100);
        assertRefused(img, "s_log_block_size", "100");
    }

    @Test
    void hugeInodesPerGroup() throws IOException {
        Path img = Fixtures.copy("ext4", "ipg.img");
        putU32(img, S_INODES_PER_GROUP, 0xFFFFFFFFL);
        assertRefused(img, "s_inodes_per_group", "4294967295");
    }

    /**
     * 2^36 blocks with a consistent inode count: 2^21 groups, whose descriptor table (128 MiB) the 64 MiB file
     * cannot hold. Refused before anything is sized from it.
     */
    @Test
    void hugeBlockCount() throws IOException {
        Path img = Fixtures.copy("ext4k", "blocks.img");
        putU32(img, S_BLOCKS_COUNT, 0);
        putU32(img, S_BLOCKS_COUNT_HI, 0x10);
        putU32(img, S_INODES_PER_GROUP, 16);
        putU32(img, S_INODES_COUNT, (1L << 21) * 16);
        assertRefused(img, "s_blocks_count", "68719476736");
    }

    /** e2image -B that does not match the filesystem (EXT2_ET_UNEXPECTED_BLOCK_SIZE). */
    @Test
    void blockSizeOtherThanTheOneGiven() throws IOException {
        Path img = Fixtures.filesystem("ext2");
        try (FileChannel ch = FileChannel.open(img)) {
            FormatException e = assertThrows(FormatException.class, () -> ExtFilesystem.open(ch, "ext2.img", 0, 0, 4096));
            assertEquals("s_log_block_size", e.field());
            assertTrue(e.getMessage().contains("block size 1024 is not the 4096 given"), e::getMessage);
            assertThrows(IllegalArgumentException.class, () -> ExtFilesystem.open(ch, "ext2.img", 0, 8193, 0));
        }
    }

    @Test
    void inodeCountInconsistent() throws IOException {
        Path img = Fixtures.copy("ext2", "icount.img");
        putU32(img, S_INODES_COUNT, 12345);
        assertRefused(img, "s_inodes_count", "12345");
    }

    @Test
    void journalDeviceIsRefusedByName() throws IOException {
        Path img = Fixtures.dir().resolve("journal.img");
        Fixtures.run("mke2fs", "-q", "-F", "-O", "journal_dev", "-b", "4096", img.toString(), "8M").ok();
        UnsupportedFeatureException e = assertThrows(UnsupportedFeatureException.class, () -> scan(img));
        assertTrue(e.feature().startsWith("journal_dev"), e::getMessage);
        assertTrue(e.getMessage().contains("Filesystem has unsupported feature(s)"), e::getMessage);
    }

    @Test
    void unknownIncompatibleFeatureIsRefusedByName() throws IOException {
        Path img = Fixtures.copy("ext4", "dirdata.img");
        putU32(img, S_FEATURE_INCOMPAT, getU32(img, S_FEATURE_INCOMPAT) | 0x1000 | 0x80000000L);
        UnsupportedFeatureException e = assertThrows(UnsupportedFeatureException.class, () -> scan(img));
        assertTrue(e.feature().startsWith("dirdata, FEATURE_I31"), e::getMessage);
    }

    // ---------------------------------------------------------------------------------------------- groups

    /** ext2 with 1 KiB blocks: the descriptor table is block 2, 32 bytes per group. */
    private static final int EXT2_GDT = 2 * 1024;

    @Test
    void blockBitmapPastTheEnd() throws IOException {
        Path img = Fixtures.copy("ext2", "bbitmap.img");
        putU32(img, EXT2_GDT + 32 + 0x00, 0x7FFFFFFFL);
        assertRefused(img, "bg_block_bitmap of group 1", "2147483647");
    }

    /** 64bit descriptors: the high half counts. */
    @Test
    void inodeBitmapHighWordPastTheEnd() throws IOException {
        Path img = Fixtures.copy("ext4k", "ibitmap.img");
        putU32(img, 4096 + 0x24, 1);
        assertRefused(img, "bg_inode_bitmap of group 0", Long.toString((1L << 32) + getU32(img, 4096 + 0x04)));
    }

    @Test
    void inodeTableOutsideTheFilesystem() throws IOException {
        Path img = Fixtures.copy("ext2", "itable.img");
        long blocks = getU32(img, S_BLOCKS_COUNT);
        putU32(img, EXT2_GDT + 3 * 32 + 0x08, blocks - 10);
        assertRefused(img, "bg_inode_table of group 3", Long.toString(blocks - 10));
    }

    /** Overlapping inode tables would let the scan read the same inodes again and again. */
    @Test
    void inodeTablesOverlap() throws IOException {
        Path img = Fixtures.copy("ext2", "overlap.img");
        putU32(img, EXT2_GDT + 5 * 32 + 0x08, getU32(img, EXT2_GDT + 4 * 32 + 0x08) + 1);
        assertRefused(img, "bg_inode_table of group 5", Long.toString(getU32(img, EXT2_GDT + 4 * 32 + 0x08) + 1));
    }

    @Test
    void itableUnusedMoreThanTheGroupHolds() throws IOException {
        Path img = Fixtures.copy("ext4k", "unused.img");
        putU16(img, 4096 + 0x1C, 0xFFFF);
        putU16(img, 4096 + 0x32, 0xFFFF);
        assertRefused(img, "bg_itable_unused of group 0", "4294967295");
    }

    @Test
    void truncatedFile() throws IOException {
        Path img = Fixtures.copy("noflex", "truncated.img");
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.WRITE)) {
            ch.truncate(20L << 20);
        }
        FormatException e = assertRefused(img, "bg_inode_table of group 3", "");
        assertTrue(e.getMessage().contains("past the end of the file (20971520 bytes"), e::getMessage);
    }

    // ---------------------------------------------------------------------------------------------- inodes

    @Test
    void xattrBlockPastTheEnd() throws IOException {
        Path img = Fixtures.copy("ext2", "xattr.img");
        long ino = inodeNumber(img, "/f1");
        putU32(img, inodeOffset(img, "/f1") + 0x68, 0xFFFFFFF0L);
        assertRefused(img, "i_file_acl of inode " + ino, "4294967280");
    }

    @Test
    void indirectBlockPastTheEnd() throws IOException {
        Path img = Fixtures.copy("ext2", "ind.img");
        long ino = inodeNumber(img, "/d1/rand");
        putU32(img, inodeOffset(img, "/d1/rand") + 0x28 + 12 * 4, 0xFFFFFF00L);
        assertRefused(img, "i_block[12] of inode " + ino, "4294967040");
    }

    /** A double indirect block whose first entry points back to itself. */
    @Test
    void indirectBlockLoop() throws IOException {
        Path img = Fixtures.copy("ext2", "indloop.img");
        long ino = inodeNumber(img, "/d1/big");
        long dind = Fixtures.debugfsBlock(img, "/d1/big", "(DIND)");
        putU32(img, dind * 1024, dind);
        FormatException e = assertRefused(img, "entry 0 of double indirect block " + dind + " (inode " + ino + ")",
                Long.toString(dind));
        assertTrue(e.getMessage().contains("reached twice"), e::getMessage);
    }

    /** The triple indirect block of the sparse file pointing at its own double indirect block's parent. */
    @Test
    void tripleIndirectLoop() throws IOException {
        Path img = Fixtures.copy("ext2", "tindloop.img");
        long ino = inodeNumber(img, "/sparse");
        long tind = Fixtures.debugfsBlock(img, "/sparse", "(TIND)");
        long firstEntry = getU32(img, tind * 1024);
        // The DIND block under it now points back at the TIND block.
        putU32(img, firstEntry * 1024, tind);
        assertRefused(img, "entry 0 of double indirect block " + firstEntry + " (inode " + ino + ")",
                Long.toString(tind));
    }

    /** An extent leaf turned into an index node whose entry points to itself: depth does not decrease. */
    @Test
    void extentChildPointingToItself() throws IOException {
        Path img = Fixtures.copy("ext4k", "extloop.img");
        long ino = inodeNumber(img, "/sparse");
        long leaf = Fixtures.debugfsBlock(img, "/sparse", "(ETB0)");
        writeIndexNode(img, leaf * 4096, 4096, 1, leaf);
        assertRefused(img, "eh_depth in the extent block " + leaf + " of inode " + ino, "1");
    }

    /**
     * The root claims depth 2 and the leaf, made a depth-1 index node, points to itself: every node is one level
     * below its parent, so only the visited set stops the walk.
     */
    @Test
    void extentTreeLoopThroughAnAncestor() throws IOException {
        Path img = Fixtures.copy("ext4k", "extloop2.img");
        long ino = inodeNumber(img, "/sparse");
        long leaf = Fixtures.debugfsBlock(img, "/sparse", "(ETB0)");
        putU16(img, inodeOffset(img, "/sparse") + 0x28 + 6, 2);
        writeIndexNode(img, leaf * 4096, 4096, 1, leaf);
        FormatException e = assertRefused(img,
                "ei_leaf of index 0 in the extent block " + leaf + " of inode " + ino, Long.toString(leaf));
        assertTrue(e.getMessage().contains("reached twice"), e::getMessage);
    }

    @Test
    void extentTreeTooDeep() throws IOException {
        Path img = Fixtures.copy("ext4k", "extdeep.img");
        long ino = inodeNumber(img, "/sparse");
        putU16(img, inodeOffset(img, "/sparse") + 0x28 + 6, 6);
        assertRefused(img, "eh_depth in the extent tree root of inode " + ino, "6");
    }

    @Test
    void extentEntriesMoreThanTheNodeHolds() throws IOException {
        Path img = Fixtures.copy("ext4k", "extentries.img");
        long ino = inodeNumber(img, "/sparse");
        putU16(img, inodeOffset(img, "/sparse") + 0x28 + 2, 0xFFFF);
        assertRefused(img, "eh_entries in the extent tree root of inode " + ino, "65535");
    }

    @Test
    void extentChildPastTheEnd() throws IOException {
        Path img = Fixtures.copy("ext4k", "extchild.img");
        long ino = inodeNumber(img, "/sparse");
        putU32(img, inodeOffset(img, "/sparse") + 0x28 + 12 + 4, 0xFFFFFFFFL);
        assertRefused(img, "ei_leaf of index 0 in the extent tree root of inode " + ino, "4294967295");
    }

    /** The scrambler, on a real directory block whose first entry claims 65520 bytes. */
    @Test
    void directoryRecLenOverflow() throws IOException {
        Path img = Fixtures.filesystem("ext4");
        try (FileChannel ch = FileChannel.open(img)) {
            ExtFilesystem fs = Fixtures.open(ch, img);
            long block = fs.directoryBlocks().start(0);
            ByteBuffer buf = ByteBuffer.allocate(fs.blockSize());
            ch.read(buf, block * fs.blockSize());
            buf.flip();
            buf.order(ByteOrder.LITTLE_ENDIAN).putShort(4, (short) 0xFFF0);
            byte[] before = buf.array().clone();
            DirectoryScrambler scrambler = new DirectoryScrambler("ext4.img", fs.blockSize());
            FormatException e = assertTimeoutPreemptively(LIMIT,
                    () -> assertThrows(FormatException.class, () -> scrambler.scramble(buf)));
            assertEquals("rec_len of the directory entry at byte 0", e.field());
            assertEquals("65520", e.value());
            assertEquals(ByteBuffer.wrap(before), ByteBuffer.wrap(buf.array()), "the block is left as it was");
        }
    }

    // ---------------------------------------------------------------------------------------------- helpers

    /**
     * Opens {@code img} and lists everything, on another thread with a time limit, and returns the
     * FormatException, whose field must be {@code field} and whose message must name the file, field and value.
     */
    private static FormatException assertRefused(Path img, String field, String value) {
        com.sun.management.ThreadMXBean counter = allocationCounter();
        long[] allocated = {-1};
        FormatException e = assertTimeoutPreemptively(LIMIT, () -> {
            long before = counter != null ? counter.getCurrentThreadAllocatedBytes() : 0;
            try {
                return assertThrows(FormatException.class, () -> scan(img));
            } finally {
                if (counter != null) {
                    allocated[0] = counter.getCurrentThreadAllocatedBytes() - before;
                }
            }
        }, () -> img.getFileName() + " took longer than " + LIMIT);
        assertEquals(field, e.field(), e::getMessage);
        if (!value.isEmpty()) {
            assertEquals(value, e.value(), e::getMessage);
        }
        assertTrue(e.getMessage().startsWith(img.getFileName() + ": " + field + " = "), e::getMessage);
        assertTrue(allocated[0] < ALLOCATION_BUDGET, () -> img.getFileName() + " allocated " + allocated[0]);
        return e;
    }

    private static void scan(Path img) throws IOException {
        try (FileChannel ch = FileChannel.open(img)) {
            ExtFilesystem fs = Fixtures.open(ch, img);
            fs.metadataBlocks(false);
            fs.metadataBlocks(true);
            fs.directoryBlocks();
        }
    }

    private static com.sun.management.ThreadMXBean allocationCounter() {
        if (ManagementFactory.getThreadMXBean() instanceof com.sun.management.ThreadMXBean mx
                && mx.isThreadAllocatedMemorySupported()) {
            if (!mx.isThreadAllocatedMemoryEnabled()) {
                mx.setThreadAllocatedMemoryEnabled(true);
            }
            return mx;
        }
        return null;
    }

    /** An extent index node of {@code depth} with one entry pointing at {@code child}. */
    private static void writeIndexNode(Path img, long offset, int blockSize, int depth, long child)
            throws IOException {
        ByteBuffer node = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN);
        node.putShort((short) 0xF30A).putShort((short) 1).putShort((short) ((blockSize - 12) / 12))
                .putShort((short) depth).putInt(0);
        node.putInt(0).putInt((int) child).putShort((short) 0).putShort((short) 0);
        write(img, offset, node.flip());
    }

    private static long inodeNumber(Path img, String path) {
        String out = Fixtures.run("debugfs", "-R", "imap " + path, img.toString()).ok().out();
        Matcher m = Pattern.compile("Inode (\\d+) is part").matcher(out);
        assertTrue(m.find(), out);
        return Long.parseLong(m.group(1));
    }

    /** Byte offset of {@code path}'s inode in the image, from debugfs {@code imap}. */
    private static long inodeOffset(Path img, String path) {
        String out = Fixtures.run("debugfs", "-R", "imap " + path, img.toString()).ok().out();
        Matcher m = Pattern.compile("located at block (\\d+), offset 0x([0-9a-f]+)").matcher(out);
        assertTrue(m.find(), out);
        int blockSize = 1024 << getU32Unchecked(img, S_LOG_BLOCK_SIZE);
        return Long.parseLong(m.group(1)) * blockSize + Long.parseLong(m.group(2), 16);
    }

    private static int getU32Unchecked(Path img, long offset) {
        try {
            return (int) getU32(img, offset);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static long getU32(Path img, long offset) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN);
        try (FileChannel ch = FileChannel.open(img)) {
            ch.read(b, offset);
        }
        return Integer.toUnsignedLong(b.getInt(0));
    }

    private static void putU16(Path img, long offset, int value) throws IOException {
        write(img, offset, ByteBuffer.allocate(2).order(ByteOrder.LITTLE_ENDIAN).putShort(0, (short) value));
    }

    private static void putU32(Path img, long offset, long value) throws IOException {
        write(img, offset, ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(0, (int) value));
    }

    private static void write(Path img, long offset, ByteBuffer data) throws IOException {
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.WRITE)) {
            ch.write(data, offset);
        }
    }
}
