package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.testing.Processes;

/** Backing names that are not images: found by DamagedImageFuzzTest, pinned here. */
class BackingChainTest {
    @TempDir
    Path dir;

    private Path overlayNamed(String backingName) throws IOException {
        assertEquals(0, Processes.run(dir, "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "placeholder",
                "-F", "qcow2", "top.qcow2", "1M").exit());
        Path top = dir.resolve("top.qcow2");
        try (FileChannel ch = FileChannel.open(top, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer h = ByteBuffer.allocate(20);
            ch.read(h, 0);
            long nameOffset = h.getLong(8);
            ch.write(ByteBuffer.wrap(backingName.getBytes()), nameOffset);
            ch.write(ByteBuffer.allocate(4).putInt(0, backingName.length()), 16);
        }
        return top;
    }

    @Test
    void backingFileThatIsADirectoryIsRefusedByName() throws IOException {
        Files.createDirectory(dir.resolve("sub"));
        Path top = overlayNamed("sub");
        QcowException e = assertThrows(QcowException.class, () -> Images.open(top));
        assertTrue(e.getMessage().contains("sub: is a directory (backing file of " + top + ")"), e.getMessage());
    }

    @Test
    void emptyBackingNameMeansNoBackingFileAsInQemu() throws IOException {
        Path top = overlayNamed("");
        try (DiskImage d = Images.open(top)) {
            assertNull(d.backing());
        }
    }

    /** qemu-img info's open (BDRV_O_NO_BACKING): the backing file named, not opened, even when it is missing. */
    @Test
    void withoutBackingTheImageOpensAloneAndReadsZerosBelowItsOwnData() throws IOException {
        assertEquals(0, Processes.run(dir, "qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "1M").exit());
        assertEquals(0, Processes.run(dir, "qemu-io", "-c", "write -P 7 0 1M", "base.qcow2").exit());
        assertEquals(0, Processes.run(dir, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F",
                "qcow2", "top.qcow2", "1M").exit());
        assertEquals(0, Processes.run(dir, "qemu-io", "-c", "write -P 9 64k 64k", "top.qcow2").exit());
        Path top = dir.resolve("top.qcow2");
        Files.delete(dir.resolve("base.qcow2"));
        assertThrows(QcowException.class, () -> Images.open(top));
        try (DiskImage d = Images.open(top, OpenOptions.defaults().withoutBacking())) {
            assertNull(d.backing());
            assertEquals("base.qcow2", d.qcow2().orElseThrow().header().backingFile());
            assertEquals(dir.resolve("base.qcow2").toString(), d.qcow2().orElseThrow().fullBackingFilename());
            ByteBuffer b = ByteBuffer.allocate(2);
            d.read(b.slice(0, 1), 0);
            d.read(b.slice(1, 1), 65536);
            assertEquals(0, b.get(0));
            assertEquals(9, b.get(1));
        }
        QcowException e = assertThrows(QcowException.class,
                () -> Images.openWritable(top, OpenOptions.defaults().withoutBacking()));
        assertTrue(e.getMessage().contains("needs its backing chain"), e.getMessage());
    }
}
