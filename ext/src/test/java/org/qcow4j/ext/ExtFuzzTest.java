package org.qcow4j.ext;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.LongStream;
import org.qcow4j.QcowException;
import org.qcow4j.testing.DamagedInput;
import org.qcow4j.testing.FuzzTemplates;

/**
 * Coverage-guided: the ext parser over a small filesystem whose metadata comes from the fuzzer. The first input
 * byte picks a filesystem mke2fs makes once (ext4 with extents, an extent tree, a multi-block directory and
 * symlinks; or ext2 with indirect blocks); the rest overwrites its metadata blocks (superblock, group descriptors,
 * bitmaps, inode table, directories, extent and indirect blocks) in block order. {@link ExtMetadata#image} read
 * through, and the scan of {@link DamagedFilesystemFuzzTest#scanAll}, must work or throw a {@link QcowException},
 * within 5 s. Regression inputs: {@code src/test/resources/org/qcow4j/ext/ExtFuzzTestInputs/metadata/}.
 */
class ExtFuzzTest {
    private static final int BLOCK = 1024;
    private static final String TREE = "rm -rf t; mkdir -p t/d; for i in $(seq 60); do echo $i > t/d/file-$i; done; "
            + "seq 1 20000 > t/big; for i in 0 1 2 3 4 5 6; do printf x | dd of=t/sparse bs=1k seek=$((i * 8)) "
            + "conv=notrunc status=none; done; ln -s $(printf 'x%.0s' $(seq 80)) t/long; ln -s d t/short; ";
    private static final List<String> KINDS = List.of("-t ext4 -O ^has_journal", "-t ext2");
    /** Each kind's metadata blocks (the template's own), in block order. */
    private static final Map<Integer, long[]> METADATA = new HashMap<>();

    @FuzzTest
    void metadata(byte[] input) {
        if (input.length == 0) {
            return;
        }
        int kind = Math.floorMod(input[0], KINDS.size());
        String name = "fs" + kind + ".img";
        byte[] template = FuzzTemplates.template(name, TREE + "mke2fs -q -F -b 1024 -N 128 " + KINDS.get(kind)
                + " -d t " + name + " 2M");
        long[] blocks = metadataBlocks(kind, FuzzTemplates.dir().resolve(name));
        byte[] bytes = template.clone();
        for (int i = 0; i < blocks.length && 1 + i * BLOCK < input.length; i++) {
            System.arraycopy(input, 1 + i * BLOCK, bytes, (int) blocks[i] * BLOCK, Math.min(BLOCK, input.length - 1 - i * BLOCK));
        }
        Path img = FuzzTemplates.write("fuzz-ext.img", bytes);
        DamagedInput.runOrRefuse(5000, QcowException.class, () -> {
            try (MetadataImage image = ExtMetadata.image(img, ExtMetadata.Options.defaults().withScrambling(true))) {
                ByteBuffer buf = ByteBuffer.allocate(256 * 1024);
                for (long pos = 0; pos < image.size(); pos += buf.capacity()) {
                    image.read(buf.clear().limit((int) Math.min(buf.capacity(), image.size() - pos)), pos);
                }
            }
            DamagedFilesystemFuzzTest.scanAll(img);
        });
    }

    private static synchronized long[] metadataBlocks(int kind, Path template) {
        return METADATA.computeIfAbsent(kind, k -> {
            try (FileChannel ch = FileChannel.open(template, StandardOpenOption.READ)) {
                LongStream.Builder list = LongStream.builder();
                ExtFilesystem.open(ch, template.toString(), 0, 0, 0).metadataBlocks(false).iterator().forEachRemaining(list);
                return list.build().toArray();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }
}
