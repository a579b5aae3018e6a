package org.qcow4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.testing.Processes;

/**
 * The request rules of {@link OpenOptions} (writethrough, discard, detect-zeroes) and
 * {@link Images#openTemporaryOverlay}, each observed from outside: by QEMU's tools reading the file while the image is
 * open, by {@code qemu-img map}, by the bytes of the file.
 */
class RequestRulesTest {
    @TempDir
    Path dir;

    private Processes.Result run(String... cmd) {
        return Processes.run(dir, cmd);
    }

    private Path image(String name) {
        Processes.Result r = run("qemu-img", "create", "-q", "-f", "qcow2", name, "4M");
        assertEquals(0, r.exit(), r.err());
        return dir.resolve(name);
    }

    /** qemu-img map's JSON of the image, read while another process may hold it. */
    private String map(Path image) {
        Processes.Result r = run("qemu-img", "map", "-U", "--output=json", image.toString());
        assertEquals(0, r.exit(), r.err());
        return r.out();
    }

    @Test
    void writethroughMakesEachWriteVisibleToOthersAtOnce() throws IOException {
        for (boolean writethrough : List.of(true, false)) {
            Path img = image("wt-" + writethrough + ".qcow2");
            try (WritableImage w = Images.openWritable(img, OpenOptions.defaults().withWritethrough(writethrough))) {
                byte[] data = new byte[65536];
                Arrays.fill(data, (byte) 0x5a);
                w.write(ByteBuffer.wrap(data), 0);
                // qemu-io -U reads the file as it is on disk: the new cluster is mapped only once the L2 table is
                Processes.Result r = run("qemu-io", "-U", "-r", "-c", "read -P 0x5a 0 64k", img.toString());
                assertEquals(writethrough, !r.out().contains("Pattern verification failed"), "writethrough=" + writethrough
                        + ": " + r.out() + r.err());
            }
        }
    }

    @Test
    void discardIgnoreKeepsTheClusters() throws IOException {
        for (boolean discard : List.of(true, false)) {
            Path img = image("d-" + discard + ".qcow2");
            try (WritableImage w = Images.openWritable(img, OpenOptions.defaults().withDiscard(discard))) {
                w.write(ByteBuffer.wrap(filled(1 << 20, 1)), 0);
                w.discard(0, 256 << 10);
                w.writeZeroes(256 << 10, 256 << 10, true);
            }
            String map = map(img);
            // with discard=unmap the discarded clusters go and the zeroed ones give their host clusters back; with
            // ignore the discard does nothing and the zeroed clusters keep theirs
            if (discard) {
                assertTrue(entryAt(map, 0).contains("\"present\": true, \"zero\": true, \"data\": false}"), map);
            } else {
                assertTrue(entryAt(map, 0).contains("\"zero\": false, \"data\": true, \"offset\""), map);
                assertTrue(entryAt(map, 256 << 10).contains("\"zero\": true, \"data\": false, \"offset\""), map);
            }
            try (DiskImage d = Images.open(img)) {
                byte[] got = new byte[1 << 20];
                d.read(ByteBuffer.wrap(got), 0);
                byte[] want = filled(1 << 20, 1);
                Arrays.fill(want, 256 << 10, 512 << 10, (byte) 0);
                if (discard) {
                    Arrays.fill(want, 0, 256 << 10, (byte) 0);
                }
                assertArrayEquals(want, got);
            }
        }
    }

    @Test
    void detectZeroesWritesZeroDataAsZeroes() throws IOException {
        String[] maps = new String[3];
        for (OpenOptions.DetectZeroes mode : OpenOptions.DetectZeroes.values()) {
            Path img = image("dz-" + mode + ".qcow2");
            try (WritableImage w = Images.openWritable(img, OpenOptions.defaults().withDetectZeroes(mode))) {
                w.write(ByteBuffer.wrap(filled(128 << 10, 1)), 0);
                w.write(ByteBuffer.wrap(new byte[64 << 10]), 0);        // over data
                w.write(ByteBuffer.wrap(new byte[64 << 10]), 1 << 20);  // over nothing
            }
            maps[mode.ordinal()] = map(img);
        }
        // off: zero data is data; on: zero clusters, the host cluster kept; unmap: the host cluster given back; where
        // nothing was, nothing is allocated
        assertTrue(entryAt(maps[0], 0).contains("\"zero\": false, \"data\": true"), maps[0]);
        assertTrue(entryAt(maps[0], 1 << 20).contains("\"zero\": false, \"data\": true"), maps[0]);
        assertTrue(entryAt(maps[1], 0).contains("\"zero\": true, \"data\": false, \"offset\": "), maps[1]);
        assertTrue(entryAt(maps[2], 0).contains("\"zero\": true, \"data\": false}"), maps[2]);
        for (String m : List.of(maps[1], maps[2])) {
            assertFalse(m.contains("\"start\": 1048576, \"length\": 65536, \"depth\": 0, \"present\": true, \"zero\": false"), m);
        }
    }

    @Test
    void temporaryOverlayTakesTheWritesAndLeavesNothing() throws IOException {
        Path img = image("base.qcow2");
        assertEquals(0, run("qemu-io", "-c", "write -P 0x11 0 1M", img.toString()).exit());
        byte[] before = Files.readAllBytes(img);
        Path overlay;
        try (WritableImage w = Images.openTemporaryOverlay(img, OpenOptions.defaults())) {
            overlay = Path.of(w.filename());
            assertTrue(Files.isRegularFile(overlay) && overlay.getFileName().toString().startsWith("vl."), overlay.toString());
            assertEquals(4 << 20, w.size());
            w.write(ByteBuffer.wrap(filled(4096, 0x22)), 4096);
            byte[] got = new byte[3 * 4096];
            w.read(ByteBuffer.wrap(got), 0);
            byte[] want = filled(3 * 4096, 0x11);
            Arrays.fill(want, 4096, 8192, (byte) 0x22);
            assertArrayEquals(want, got);
            assertEquals("qcow2", w.format());
            assertTrue(w.backing() != null && w.backing().filename().equals(img.toAbsolutePath().toString()),
                    String.valueOf(w.backing() == null ? null : w.backing().filename()));
            // the image is held as a backing file is: others may read it, nobody may write it
            assertNotEquals(0, run("qemu-io", "-c", "write 0 512", img.toString()).exit());
            assertEquals(0, run("qemu-io", "-r", "-c", "read -P 0x11 0 512", img.toString()).exit());
        }
        assertArrayEquals(before, Files.readAllBytes(img));
        assertFalse(Files.exists(overlay), "the overlay is deleted");
    }

    /** The map entry that starts at {@code start}. */
    private static String entryAt(String map, long start) {
        return map.lines().filter(l -> l.contains("\"start\": " + start + ",")).findFirst().orElse("none at " + start);
    }

    private static byte[] filled(int n, int value) {
        byte[] b = new byte[n];
        Arrays.fill(b, (byte) value);
        return b;
    }

    @Test
    void policyFreeOptionsGiveTheDriversImage() throws IOException {
        Path img = image("plain.qcow2");
        try (WritableImage w = Images.openWritable(img, OpenOptions.defaults())) {
            assertFalse(w.getClass().getSimpleName().equals("ManagedImage"));
        }
    }
}
