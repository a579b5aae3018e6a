package org.qcow4j.ext;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.qcow4j.FormatException;

/**
 * Visits the inodes in use, group by group, as e2fsprogs' inode scan does for e2image: with group descriptor
 * checksums it is lazy, skipping INODE_UNINIT groups and the {@code bg_itable_unused} inodes at the end of each
 * table (never written, so possibly garbage); of the rest, only inodes with {@code i_links_count != 0} are passed on.
 */
final class InodeScanner {
    /** Inode table bytes read at a time: larger saves a few system calls but costs a page fault per page of buffer
     *  (twice: the JDK reads into a heap array through a temporary direct buffer as large). */
    private static final int CHUNK_BYTES = 256 * 1024;

    /** Receives each inode in use: inode number {@code ino} is at byte {@code offset} of {@code table}. */
    interface InodeConsumer {
        void accept(long ino, byte[] table, int offset) throws IOException;
    }

    private InodeScanner() {
    }

    static void scan(BlockDevice device, Superblock sb, List<GroupDescriptor> groups, InodeConsumer consumer)
            throws IOException {
        boolean lazy = sb.hasGroupDescriptorChecksums();
        int inodeSize = sb.inodeSize();
        int blockSize = sb.blockSize();
        int inodesPerBlock = sb.inodesPerBlock();
        // no more than the largest table (validated: under 2^16 blocks), so a small filesystem gets a small buffer
        long chunkBlocks = Math.max(1, Math.min(CHUNK_BYTES / blockSize, sb.inodeBlocksPerGroup()));
        ByteBuffer chunk = ByteBuffer.allocate((int) chunkBlocks * blockSize);
        byte[] table = chunk.array();
        for (int g = 0; g < groups.size(); g++) {
            GroupDescriptor group = groups.get(g);
            if (lazy && group.hasFlag(GroupDescriptor.INODE_UNINIT)) {
                continue;
            }
            long inodes = sb.inodesPerGroup();
            if (lazy) {
                inodes = Math.max(0, inodes - group.itableUnused());
            }
            if (inodes == 0) {
                continue;
            }
            if (group.inodeTable() == 0) {
                throw new FormatException(device.file(), "bg_inode_table of group " + g, 0,
                        "the group has inodes in use but no inode table");
            }
            long blocks = (inodes + inodesPerBlock - 1) / inodesPerBlock;
            long firstIno = (long) g * sb.inodesPerGroup() + 1;
            long index = 0;
            for (long b = 0; b < blocks; b += chunkBlocks) {
                int n = (int) Math.min(chunkBlocks, blocks - b);
                device.readBlocks(group.inodeTable() + b, n, "bg_inode_table of group " + g, chunk);
                int end = (int) Math.min((long) n * blockSize, (inodes - index) * inodeSize);
                long ino = firstIno + index;
                for (int off = 0; off < end; off += inodeSize, ino++) {
                    // i_links_count == 0: free or deleted
                    if (table[off + 0x1A] != 0 || table[off + 0x1B] != 0) {
                        consumer.accept(ino, table, off);
                    }
                }
                index += n * (long) inodesPerBlock;
            }
        }
    }
}
