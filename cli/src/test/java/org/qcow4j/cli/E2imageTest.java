package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code e2image -Q} and {@code -r} against e2fsprogs' own, on filesystems made at test time: the same clusters,
 * the same raw images byte for byte, and e2fsck, dumpe2fs and debugfs see the same filesystem.
 */
class E2imageTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    static Path root;

    /** Files for the filesystems: directories, an htree directory, symlinks, an xattr block, sparse and large files. */
    private static final String SOURCE = """
            set -e
            mkdir -p src/d1 src/big src/d1/d2
            echo hi > src/f1
            head -c 200000 /dev/urandom > src/d1/rand
            truncate -s 5M src/sparse; echo tail >> src/sparse
            ln -s f1 src/fastlink
            ln -s $(printf 'x%.0s' $(seq 200)) src/slowlink
            for i in $(seq 600); do echo $i > src/big/file_with_a_long_name_$i; done
            """;

    private record Fs(String name, String mkfsOptions) {
    }

    static List<Fs> filesystems() {
        return List.of(
                new Fs("ext2", "-t ext2"),
                new Fs("ext3", "-t ext3"),
                new Fs("ext4-1k", "-t ext4"),
                new Fs("ext4-4k", "-t ext4 -b 4096"),
                new Fs("ext4-2k-nojournal", "-t ext4 -b 2048 -O ^has_journal"),
                new Fs("ext4-64bit-csum-metabg", "-t ext4 -b 4096 -O 64bit,metadata_csum,^resize_inode,meta_bg"),
                new Fs("ext4-inline", "-t ext4 -b 4096 -O inline_data -I 256"),
                new Fs("ext4-noflex", "-t ext4 -O ^flex_bg,^uninit_bg,^metadata_csum"),
                new Fs("ext4-bigalloc", "-t ext4 -b 4096 -O bigalloc -C 16384"));
    }

    private static Path build(Fs fs) throws IOException {
        Path dir = Files.createDirectories(root.resolve(fs.name()));
        Qemu.run(dir, "bash", "-c", SOURCE + "mke2fs -q -F " + fs.mkfsOptions() + " -d src fs.img 64M\n"
                + "debugfs -w -R \"ea_set /f1 user.big $(printf 'v%.0s' $(seq 700))\" fs.img >/dev/null 2>&1\n"
                + "e2fsck -fyD fs.img >/dev/null 2>&1 || true\n").ok();
        return dir;
    }

    private static TreeSet<Long> dataClusters(Path dir, String image) throws IOException {
        TreeSet<Long> set = new TreeSet<>();
        JsonNode map = JSON.readTree(Qemu.img(dir, "map", "--output=json", image).out());
        JsonNode info = JSON.readTree(Qemu.img(dir, "info", "--output=json", image).out());
        long cs = info.path("cluster-size").asLong();
        for (JsonNode e : map) {
            if (e.path("data").asBoolean()) {
                for (long c = e.path("start").asLong() / cs; c < (e.path("start").asLong() + e.path("length").asLong()) / cs; c++) {
                    set.add(c);
                }
            }
        }
        return set;
    }

    private static String fsck(Path dir, String image) {
        return Qemu.run(dir, "e2fsck", "-fn", image).out().replace(image, "IMG");
    }

    @TestFactory
    Stream<DynamicTest> imagesMetadataLikeE2image() {
        return filesystems().stream().map(fs -> DynamicTest.dynamicTest(fs.name(), () -> {
            Path dir = build(fs);
            String img = dir.resolve("fs.img").toString();
            Qemu.run(dir, "e2image", "-Q", img, dir.resolve("ref.qcow2").toString()).ok();
            Qemu.run(dir, "e2image", "-r", img, dir.resolve("ref.raw").toString()).ok();

            Qemu.qcow4j("e2image", "-Q", img, dir.resolve("our.qcow2").toString()).ok();
            WriteCompatibilityTest.assertClean(dir, dir.resolve("our.qcow2").toString());
            assertEquals(dataClusters(dir, dir.resolve("ref.qcow2").toString()), dataClusters(dir, dir.resolve("our.qcow2").toString()),
                    "clusters allocated by e2image -Q and by ours");
            // e2fsprogs reads our image back to the same raw image as its own.
            Qemu.run(dir, "e2image", "-r", dir.resolve("our.qcow2").toString(), dir.resolve("our-by-e2image.raw").toString()).ok();
            assertEquals(-1L, Files.mismatch(dir.resolve("ref.raw"), dir.resolve("our-by-e2image.raw")));
            // Our -r: of the filesystem, of e2image's -Q image, of our -Q image.
            for (String from : new String[] {"fs.img", "ref.qcow2", "our.qcow2"}) {
                Path out = dir.resolve("our-r-" + from + ".raw");
                Qemu.qcow4j("e2image", "-r", dir.resolve(from).toString(), out.toString()).ok();
                assertEquals(-1L, Files.mismatch(dir.resolve("ref.raw"), out), "qcow4j e2image -r " + from);
            }
            // The metadata is the filesystem's: e2fsck, dumpe2fs and debugfs see the same.
            String raw = dir.resolve("our-r-our.qcow2.raw").toString();
            assertEquals(fsck(dir, img), fsck(dir, raw), "e2fsck -fn");
            assertEquals(Qemu.run(dir, "dumpe2fs", img).out(), Qemu.run(dir, "dumpe2fs", raw).out(), "dumpe2fs");
            assertEquals(Qemu.run(dir, "debugfs", "-R", "ls -l -R /", img).out().replace(img, "IMG"),
                    Qemu.run(dir, "debugfs", "-R", "ls -l -R /", raw).out().replace(raw, "IMG"), "debugfs ls -l -R /");
        }));
    }

    @Test
    void allDataAndScramblingMatchE2image() throws IOException {
        Path dir = build(new Fs("ext4-a-s", "-t ext4"));
        String img = dir.resolve("fs.img").toString();
        for (String flag : new String[] {"-Qa", "-Qs"}) {
            String ref = dir.resolve("ref" + flag + ".qcow2").toString();
            String our = dir.resolve("our" + flag + ".qcow2").toString();
            Qemu.run(dir, "e2image", flag, img, ref).ok();
            Qemu.qcow4j("e2image", flag, img, our).ok();
            WriteCompatibilityTest.assertClean(dir, our);
            assertEquals(dataClusters(dir, ref), dataClusters(dir, our), flag);
            WriteCompatibilityTest.assertSameContent(dir, ref, our);
        }
    }

    @Test
    void writesARawImageIntoAnExistingFileAtAnOffset() throws IOException {
        Path dir = build(new Fs("ext4-offset", "-t ext4"));
        String img = dir.resolve("fs.img").toString();
        Qemu.run(dir, "e2image", "-r", img, dir.resolve("ref.raw").toString()).ok();
        long fsSize = Files.size(dir.resolve("fs.img"));
        long offset = 1 << 20;
        // A "disk" full of 0xff, longer than the filesystem: only [offset, offset + fsSize) may change.
        Qemu.run(dir, "bash", "-c", "head -c " + (fsSize + 3 * offset) + " /dev/zero | tr '\\0' '\\377' > disk.raw").ok();
        Qemu.qcow4j("e2image", "-r", "-O", Long.toString(offset), img, dir.resolve("disk.raw").toString()).ok();
        byte[] disk = Files.readAllBytes(dir.resolve("disk.raw"));
        byte[] ref = Files.readAllBytes(dir.resolve("ref.raw"));
        assertEquals(fsSize + 3 * offset, disk.length, "the disk keeps its length");
        for (int i = 0; i < offset; i++) {
            assertEquals((byte) 0xff, disk[i], "byte " + i + " before the image");
        }
        assertEquals(-1, java.util.Arrays.mismatch(disk, (int) offset, (int) (offset + fsSize), ref, 0, ref.length),
                "the image at the offset");
        for (long i = offset + fsSize; i < disk.length; i++) {
            assertEquals((byte) 0xff, disk[(int) i], "byte " + i + " after the image");
        }
    }

    @Test
    void compressedMetadataImagesAreAtLeastThreeTimesSmaller() throws IOException {
        Path dir = Files.createDirectories(root.resolve("many-files"));
        Qemu.run(dir, "bash", "-c", """
                set -e
                mkdir src
                for d in $(seq 40); do mkdir src/dir$d; for f in $(seq 100); do echo "$d/$f" > src/dir$d/file$f; done; done
                mke2fs -q -F -t ext4 -d src fs.img 128M
                """).ok();
        String img = dir.resolve("fs.img").toString();
        String plain = dir.resolve("plain.qcow2").toString();
        Qemu.qcow4j("e2image", "-Q", img, plain).ok();
        for (String c : new String[] {"zstd", "zlib"}) {
            String packed = dir.resolve(c + ".qcow2").toString();
            Qemu.qcow4j("e2image", "-Q", "--compress", c, img, packed).ok();
            WriteCompatibilityTest.assertClean(dir, packed);
            WriteCompatibilityTest.assertSameContent(dir, plain, packed);
            long a = Files.size(Path.of(plain));
            long b = Files.size(Path.of(packed));
            assertTrue(b * 3 <= a, c + ": " + b + " bytes is not 3x smaller than " + a);
        }
    }

    @Test
    void damagedPrimarySuperblockIsRefusedOrReadFromABackup() throws IOException {
        Path dir = Files.createDirectories(root.resolve("damaged"));
        Qemu.run(dir, "bash", "-c", "mke2fs -q -F -t ext4 -b 1024 fs.img 32M && printf '\\x00\\x00' | "
                + "dd of=fs.img bs=1 seek=$((1024+56)) conv=notrunc status=none").ok();
        String img = dir.resolve("fs.img").toString();
        Qemu.Result r = Qemu.qcow4j("e2image", "-Q", img, dir.resolve("x.qcow2").toString());
        assertEquals(1, r.exit());
        assertTrue(r.err().startsWith("qcow4j: " + img + ": ") && r.err().lines().count() == 1, r.err());
        assertTrue(r.err().contains("magic"), r.err());
        assertTrue(Files.notExists(dir.resolve("x.qcow2")));
        // With a backup superblock it works.
        Qemu.qcow4j("e2image", "-Q", "-b", "8193", "-B", "1024", img, dir.resolve("b.qcow2").toString()).ok();
        WriteCompatibilityTest.assertClean(dir, dir.resolve("b.qcow2").toString());
    }
}
