package org.qcow4j.ext;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.qcow4j.testing.Processes;

/**
 * Filesystems made at test time with e2fsprogs (the recipe of the e2image notes, section 5), and the reference
 * tools run on them. Each filesystem is built once per test JVM, on first use, in a directory removed at exit.
 * ./test.sh installs e2fsprogs and qemu-utils, so a missing tool is a failure, not a skip.
 */
final class Fixtures {
    /**
     * The matrix: name, then mke2fs arguments. Every one is 64 MiB and gets the same tree (see {@link #source}),
     * an xattr block on /f1 and an htree /big (e2fsck -D).
     */
    static final Map<String, List<String>> MATRIX = new LinkedHashMap<>();

    static {
        MATRIX.put("ext2", List.of("-t", "ext2"));
        MATRIX.put("ext3", List.of("-t", "ext3"));
        MATRIX.put("ext4", List.of("-t", "ext4"));
        MATRIX.put("ext4k", List.of("-t", "ext4", "-b", "4096"));
        MATRIX.put("m64", List.of("-t", "ext4", "-b", "4096", "-O", "64bit,metadata_csum,^resize_inode,meta_bg"));
        MATRIX.put("metabg", List.of("-t", "ext4", "-b", "1024", "-g", "1024", "-O", "64bit,meta_bg,^resize_inode"));
        MATRIX.put("sparse2", List.of("-t", "ext4", "-b", "1024", "-O", "sparse_super2"));
        MATRIX.put("inline", List.of("-t", "ext4", "-b", "4096", "-O", "inline_data", "-I", "256"));
        MATRIX.put("bigalloc", List.of("-t", "ext4", "-b", "4096", "-O", "bigalloc", "-C", "16384"));
        MATRIX.put("bigalloc1k", List.of("-t", "ext4", "-b", "1024", "-O", "bigalloc", "-C", "16384"));
        MATRIX.put("quota", List.of("-t", "ext4", "-O", "quota,project", "-I", "256"));
        MATRIX.put("mmp", List.of("-t", "ext4", "-b", "4096")); // mmp is turned on afterwards, see build()
        MATRIX.put("orphan", List.of("-t", "ext4", "-b", "4096", "-O", "orphan_file"));
        MATRIX.put("noflex", List.of("-t", "ext4", "-O", "^flex_bg,^uninit_bg,^metadata_csum"));
        MATRIX.put("k64", List.of("-t", "ext4", "-b", "65536"));
        MATRIX.put("k2", List.of("-t", "ext4", "-b", "2048", "-O", "^has_journal"));
    }

    private static final Path DIR;
    private static final Map<String, Path> BUILT = new LinkedHashMap<>();
    private static final Map<String, Path> DIRTY = new LinkedHashMap<>();

    static {
        try {
            DIR = Files.createTempDirectory("qcow4j-ext-");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> delete(DIR)));
    }

    private Fixtures() {
    }

    static Path dir() {
        return DIR;
    }

    /** The filesystem image of the matrix entry {@code name}, built on first use. */
    static synchronized Path filesystem(String name) {
        return BUILT.computeIfAbsent(name, Fixtures::build);
    }

    /** A fresh copy of {@code name}'s image, to damage. */
    static Path copy(String name, String copyName) {
        try {
            return Files.copy(filesystem(name), DIR.resolve(copyName),
                    StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * {@code name}'s image with garbage where a fresh filesystem has zeros e2image never looks at, so that its
     * all-zero skipping no longer hides which blocks it selects: every all-zero block outside the inode tables
     * (free blocks, never-written bitmaps of BLOCK_UNINIT groups, bigalloc clusters' unused blocks, zero data),
     * and the inode table blocks the lazy scan skips (whole tables of INODE_UNINIT groups, the bg_itable_unused
     * tail of the others, found with dumpe2fs); reserved GDT blocks are left alone. Garbage inodes get i_links_count 0, so that a scan that does read
     * them (e2image -b, which trusts no uninit flag) skips them. This image is for block selection only: its free
     * space and unused inodes no longer pass e2fsck.
     */
    static synchronized Path dirty(String name) {
        return DIRTY.computeIfAbsent(name, n -> {
            Path img = copy(n, n + "-dirty.img");
            String dump = run("dumpe2fs", img.toString()).ok().out();
            int blockSize = Integer.parseInt(field(dump, "Block size:\\s+(\\d+)"));
            int inodeSize = Integer.parseInt(field(dump, "Inode size:\\s+(\\d+)"));
            String features = field(dump, "Filesystem features:\\s+(.*)");
            boolean csum = features.contains("metadata_csum") || features.contains("uninit_bg");
            List<long[]> tables = new ArrayList<>(); // {first, last, first block to fill}: kept from the zero fill
            Matcher group = Pattern.compile("^Group \\d+: .*?(\\[.*\\])?$((?:\\n  .*)*)", Pattern.MULTILINE)
                    .matcher(dump);
            while (group.find()) {
                String flags = group.group(1) == null ? "" : group.group(1);
                Matcher table = Pattern.compile("Inode table at (\\d+)-(\\d+)").matcher(group.group(2));
                if (!table.find()) {
                    continue;
                }
                long first = Long.parseLong(table.group(1));
                long last = Long.parseLong(table.group(2));
                long skippedFrom = last + 1;
                Matcher unused = Pattern.compile("(\\d+) unused inodes").matcher(group.group(2));
                if (csum && flags.contains("INODE_UNINIT")) {
                    skippedFrom = first;
                } else if (csum && unused.find()) {
                    skippedFrom = last + 1 - Long.parseLong(unused.group(1)) / (blockSize / inodeSize);
                }
                tables.add(new long[] {first, last, skippedFrom});
            }
            // The resize inode's indirect blocks (the primary reserved GDT blocks) and its double indirect block
            // may be all zeros on a filesystem with no backup groups; garbage there would be block pointers.
            Matcher reserved = Pattern.compile("Reserved GDT blocks at (\\d+)-(\\d+)").matcher(dump);
            while (reserved.find()) {
                long first = Long.parseLong(reserved.group(1));
                long last = Long.parseLong(reserved.group(2));
                tables.add(new long[] {first, last, last + 1});
            }
            if (features.contains("resize_inode")) {
                String resize = run("debugfs", "-R", "stat <7>", img.toString()).ok().out();
                Matcher dind = Pattern.compile("\\(DIND\\):(\\d+)").matcher(resize);
                while (dind.find()) {
                    long block = Long.parseLong(dind.group(1));
                    tables.add(new long[] {block, block, block + 1});
                }
            }
            try (FileChannel ch = FileChannel.open(img, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
                int blocks = (int) (ch.size() / blockSize);
                BitSet kept = new BitSet(blocks); // inode tables and resize inode blocks
                BitSet inodeGarbage = new BitSet(blocks);
                for (long[] t : tables) {
                    kept.set((int) t[0], (int) t[1] + 1);
                    inodeGarbage.set((int) t[2], (int) t[1] + 1);
                }
                byte[] garbage = new byte[blockSize];
                Arrays.fill(garbage, (byte) 0xA5);
                byte[] garbageInodes = garbage.clone();
                for (int off = 0; off < blockSize; off += inodeSize) {
                    garbageInodes[off + 0x1A] = 0; // i_links_count
                    garbageInodes[off + 0x1B] = 0;
                }
                int chunk = Math.max(1, (1 << 20) / blockSize);
                ByteBuffer buf = ByteBuffer.allocate(chunk * blockSize);
                for (int first = 0; first < blocks; first += chunk) {
                    int count = Math.min(chunk, blocks - first);
                    buf.clear().limit(count * blockSize);
                    ch.read(buf, (long) first * blockSize);
                    byte[] a = buf.array();
                    for (int i = 0; i < count; i++) {
                        int block = first + i;
                        if (inodeGarbage.get(block)) {
                            System.arraycopy(garbageInodes, 0, a, i * blockSize, blockSize);
                        } else if (!kept.get(block) && isZero(a, i * blockSize, blockSize)) {
                            System.arraycopy(garbage, 0, a, i * blockSize, blockSize);
                        }
                    }
                    buf.flip();
                    ch.write(buf, (long) first * blockSize);
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return img;
        });
    }

    private static String field(String text, String regex) {
        Matcher m = Pattern.compile(regex, Pattern.MULTILINE).matcher(text);
        if (!m.find()) {
            throw new AssertionError("no " + regex + " in dumpe2fs output");
        }
        return m.group(1).trim();
    }

    private static Path build(String name) {
        Path img = DIR.resolve(name + ".img");
        List<String> mke2fs = new ArrayList<>(List.of("mke2fs", "-q", "-F"));
        mke2fs.addAll(MATRIX.get(name));
        mke2fs.addAll(List.of("-d", source().toString(), img.toString(), "64M"));
        run(mke2fs.toArray(String[]::new)).ok();
        // An xattr too big for the inode: it goes to an EA block (i_file_acl).
        run("debugfs", "-w", "-R", "ea_set /f1 user.big " + "v".repeat(700), img.toString()).ok();
        if (MATRIX.get(name).contains("ext4")) {
            // Uninitialized extents: a regular file of preallocated blocks.
            run("debugfs", "-w", "-R", "write /dev/null /prealloc", img.toString()).ok();
            run("debugfs", "-w", "-R", "fallocate /prealloc 0 39", img.toString()).ok();
        }
        // mke2fs -d makes no htree; -D indexes /big. Exit 1 = "errors corrected" (quota usage, the new file).
        Result fsck = run("e2fsck", "-fyD", img.toString());
        if (fsck.exit() > 1) {
            throw new AssertionError("e2fsck " + name + ": " + fsck);
        }
        if (name.equals("mmp")) {
            // Set last: with MMP on, debugfs -w and e2fsck each wait for the MMP interval (~11 s).
            run("tune2fs", "-O", "mmp", "-E", "mmp_update_interval=1", img.toString()).ok();
        }
        return img;
    }

    private static Path source;

    /**
     * The tree every filesystem is made from: a small file, a 200 KB file (one indirect block with 1 KiB blocks),
     * a 400 KB one (double indirect), a sparse 70 MB file with 10 data blocks (triple indirect, or a depth-1 extent
     * tree), fast and slow symlinks, a fifo, an empty directory and a directory of 600 files.
     */
    static synchronized Path source() {
        if (source != null) {
            return source;
        }
        try {
            Path src = Files.createDirectories(DIR.resolve("src"));
            Random random = new Random(42);
            Files.writeString(src.resolve("f1"), "hi\n");
            Files.createDirectories(src.resolve("d1"));
            Files.createDirectories(src.resolve("empty"));
            Files.write(src.resolve("d1/rand"), bytes(random, 200_000));
            Files.write(src.resolve("d1/big"), bytes(random, 400_000));
            try (FileChannel sparse = FileChannel.open(src.resolve("sparse"), StandardOpenOption.CREATE_NEW,
                    StandardOpenOption.WRITE)) {
                for (int k = 0; k < 9; k++) {
                    sparse.write(ByteBuffer.wrap(bytes(random, 4096)), k * 2L * 100 * 4096);
                }
                sparse.write(ByteBuffer.wrap(bytes(random, 4096)), 17900L * 4096);
                sparse.truncate(70L << 20);
            }
            Files.createSymbolicLink(src.resolve("fastlink"), Path.of("f1"));
            Files.createSymbolicLink(src.resolve("slowlink"), Path.of("x".repeat(200)));
            run("mkfifo", src.resolve("fifo").toString()).ok();
            Path big = Files.createDirectories(src.resolve("big"));
            for (int i = 1; i <= 600; i++) {
                Files.writeString(big.resolve("file_with_long_name_" + i), i + "\n");
            }
            source = src;
            return src;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static byte[] bytes(Random random, int n) {
        byte[] b = new byte[n];
        random.nextBytes(b);
        return b;
    }

    // ------------------------------------------------------------------------------------------ reference tools

    /**
     * The guest blocks {@code e2image FLAGS -Q img} writes: its qcow2 file's allocated clusters (qemu-img map
     * entries with "data": true), one cluster per filesystem block.
     */
    static BlockRanges e2imageBlocks(Path img, int blockSize, String... flags) {
        Path qcow2 = DIR.resolve(img.getFileName() + "-" + String.join("", flags) + ".qcow2");
        List<String> cmd = new ArrayList<>(List.of("e2image", "-Q"));
        cmd.addAll(List.of(flags));
        cmd.addAll(List.of(img.toString(), qcow2.toString()));
        try {
            Files.deleteIfExists(qcow2);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        run(cmd.toArray(String[]::new)).ok();
        String json = run("qemu-img", "map", "--output=json", qcow2.toString()).ok().out();
        Pattern entry = Pattern.compile("\\{[^}]*\"start\": (\\d+), \"length\": (\\d+)[^}]*\"data\": (true|false)[^}]*}");
        Matcher m = entry.matcher(json);
        BlockRangesBuilder blocks = new BlockRangesBuilder();
        while (m.find()) {
            if (m.group(3).equals("true")) {
                long start = Long.parseLong(m.group(1));
                long length = Long.parseLong(m.group(2));
                assertEquals(0, start % blockSize, "cluster-aligned map entry");
                blocks.add(start / blockSize, (start + length) / blockSize);
            }
        }
        return blocks.build(0, 0, Long.MAX_VALUE);
    }

    /** The blocks of {@code set} that are not all zeros in {@code img} (e2image skips those). */
    static BlockRanges nonZero(Path img, BlockRanges set, int blockSize) {
        BlockRangesBuilder out = new BlockRangesBuilder();
        try (FileChannel ch = FileChannel.open(img)) {
            ByteBuffer buf = ByteBuffer.allocate(blockSize);
            for (var it = set.iterator(); it.hasNext();) {
                long block = it.nextLong();
                buf.clear();
                while (buf.hasRemaining() && ch.read(buf, block * blockSize + buf.position()) > 0) {
                    // read fully
                }
                if (!isZero(buf.array())) {
                    out.add(block);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.build(0, 0, Long.MAX_VALUE);
    }

    static boolean isZero(byte[] b) {
        return isZero(b, 0, b.length);
    }

    static boolean isZero(byte[] b, int from, int length) {
        for (int i = from; i < from + length; i++) {
            if (b[i] != 0) {
                return false;
            }
        }
        return true;
    }

    /** The number after {@code label} in debugfs {@code stat} output, e.g. "(DIND):1647" for label "(DIND)". */
    static long debugfsBlock(Path img, String path, String label) {
        String stat = run("debugfs", "-R", "stat " + path, img.toString()).ok().out();
        Matcher m = Pattern.compile(Pattern.quote(label) + ":(\\d+)").matcher(stat);
        if (!m.find()) {
            throw new AssertionError("no " + label + " in debugfs stat " + path + ":\n" + stat);
        }
        return Long.parseLong(m.group(1));
    }

    static ExtFilesystem open(FileChannel ch, Path img) throws IOException {
        return ExtFilesystem.open(ch, img.getFileName().toString(), 0, 0, 0);
    }

    // ------------------------------------------------------------------------------------------ processes

    record Result(int exit, String out, String err) {
        Result ok() {
            assertEquals(0, exit, () -> "exit " + exit + "\nstdout: " + out + "\nstderr: " + err);
            return this;
        }
    }

    /** Runs a command in the fixture directory and waits for it (60 s at most). */
    static Result run(String... cmd) {
        Processes.Result r = Processes.run(DIR, cmd);
        return new Result(r.exit(), r.out(), r.err());
    }

    private static void delete(Path dir) {
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // best effort at exit
        }
    }
}
