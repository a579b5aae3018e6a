package org.qcow4j.ext;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.QcowException;
import org.qcow4j.testing.DamagedInput;
import org.qcow4j.testing.Processes;

/**
 * Hostile filesystems at random: bytes flipped in the metadata of small filesystems mke2fs made. Listing the
 * metadata blocks (and scrambling the directories) must succeed or fail with a {@link QcowException}, never
 * another exception or a hang.
 */
class DamagedFilesystemFuzzTest {
    private static final int ROUNDS_PER_FS = 200;

    @TempDir
    Path dir;

    @Test
    void damagedMetadataIsScannedOrRefusedCleanly() throws Exception {
        String tree = "mkdir -p t/d; for i in $(seq 40); do echo $i > t/d/f$i; done; head -c 70000 /dev/urandom > t/r; "
                + "ln -sfn $(printf 'x%.0s' $(seq 80)) t/slow; ";
        List<String> kinds = List.of("-t ext2 -b 1024", "-t ext4 -b 1024", "-t ext4 -b 4096 -O 64bit,metadata_csum");
        Random random = new Random(Long.getLong("fuzz.seed", 42));
        int refused = 0;
        int scanned = 0;
        for (int k = 0; k < kinds.size(); k++) {
            Path fs = dir.resolve("fs" + k + ".img");
            assertEquals(0, Processes.run(dir, "bash", "-ec", tree + "mke2fs -q -F " + kinds.get(k) + " -d t "
                    + fs.getFileName() + " 8M").exit());
            byte[] bytes = Files.readAllBytes(fs);
            // The metadata of such a small filesystem sits in its first few hundred KiB.
            int span = Math.min(bytes.length, 512 * 1024);
            for (int round = 0; round < ROUNDS_PER_FS; round++) {
                byte[] damaged = bytes.clone();
                for (int f = 0, n = 1 + random.nextInt(6); f < n; f++) {
                    int at = random.nextInt(span);
                    damaged[at] = random.nextBoolean() ? (byte) random.nextInt() : (byte) (damaged[at] ^ (1 << random.nextInt(8)));
                }
                Path img = dir.resolve("damaged.img");
                Files.write(img, damaged);
                if (scan(img)) {
                    scanned++;
                } else {
                    refused++;
                }
            }
        }
        assertTrue(refused > 0 && scanned > 0, "refused " + refused + ", scanned " + scanned);
    }

    /** Lists the metadata and scrambles every directory block; false if refused with a QcowException. */
    private static boolean scan(Path img) throws Exception {
        return DamagedInput.readOrRefuse(img, 5000, () -> scanAll(img));
    }

    /** Lists the metadata (with and without data) and scrambles every directory block (also for ExtFuzzTest). */
    static void scanAll(Path img) throws IOException {
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.READ)) {
            ExtFilesystem fs = ExtFilesystem.open(ch, img.toString(), 0, 0, 0);
            fs.metadataBlocks(false);
            fs.metadataBlocks(true);
            BlockRanges dirs = fs.directoryBlocks();
            DirectoryScrambler scrambler = new DirectoryScrambler(img.toString(), fs.blockSize());
            for (var it = dirs.iterator(); it.hasNext(); ) {
                ByteBuffer block = ByteBuffer.allocate(fs.blockSize());
                ch.read(block, it.nextLong() * fs.blockSize());
                scrambler.scramble(block.clear());
            }
        }
    }
}
