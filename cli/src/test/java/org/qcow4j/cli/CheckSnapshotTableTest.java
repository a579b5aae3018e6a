package org.qcow4j.cli;

import static org.qcow4j.cli.ImageBytes.get;
import static org.qcow4j.cli.ImageBytes.getInt;
import static org.qcow4j.cli.ImageBytes.getLong;
import static org.qcow4j.cli.ImageBytes.put;
import static org.qcow4j.cli.ImageBytes.putInt;
import static org.qcow4j.cli.ImageBytes.putLong;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code check} and {@code check -r} of images whose snapshot table is damaged, built as QEMU's iotest 261 builds
 * them (bytes poked into images qemu-img made), against qemu-img check on a copy: the same stdout, stderr and exit
 * code (qcow4j run as the qemu-img drop-in), and after a repair the same bytes, which qemu-img then finds clean.
 */
class CheckSnapshotTableTest {
    private static final int OFF_VERSION = 4;
    private static final int OFF_REFCOUNT_TABLE_OFFSET = 48;
    private static final int OFF_NB_SNAPSHOTS = 60;
    private static final int OFF_SNAPSHOTS_OFFSET = 64;
    private static final int OFF_REFCOUNT_ORDER = 96;
    private static final int OFF_HEADER_LENGTH = 100;

    @TempDir
    Path dir;

    private int run;

    /**
     * qemu-img runs started ahead by {@link #startQemu}, by their arguments. On the tables of 65536 and more entries
     * qemu-img takes 15-50 s a command where qcow4j takes 1-2 s: those run two at a time, one per core, which takes
     * about a minute and a half off the suite.
     */
    private final Map<List<String>, CompletableFuture<QemuRun>> started = new HashMap<>();
    private final ExecutorService qemuRunners = Executors.newFixedThreadPool(2);

    /** qemu-img's result on its copy of the image. */
    private record QemuRun(Path copy, Qemu.Result result) {
    }

    @AfterEach
    void stopQemuRunners() {
        qemuRunners.shutdownNow();
    }

    /**
     * iotest 261's "Repair botched v3": a version 2 table (entries with no, 50 and 8 bytes of extra data) in an image
     * whose header says version 3, which needs 16 bytes in each entry. The check finds two incomplete entries;
     * -r leaks leaves them; -r all writes the table anew, every entry with 24 bytes of extra data at least and the
     * unknown extra data kept.
     */
    @Test
    void incompleteEntriesOfVersion3AreRepaired() throws IOException {
        Path img = create("botched.qcow2", "-o", "compat=0.10", "64M");
        for (String sn : List.of("sn0", "sn1", "sn2")) {
            Qemu.img(dir, "snapshot", "-c", sn, img.toString());
        }
        List<Entry> entries = entries(img);
        byte[] sn1Extra = new byte[50];
        System.arraycopy(entries.get(1).extra, 0, sn1Extra, 0, 24);
        byte[] important = "very important data".getBytes(StandardCharsets.US_ASCII);
        System.arraycopy(important, 0, sn1Extra, 24, important.length);
        rewrite(img, List.of(entries.get(0).withExtra(new byte[0]), entries.get(1).withExtra(sn1Extra),
                entries.get(2).withExtra(java.util.Arrays.copyOf(entries.get(2).extra, 8))));
        assertEquals(0, Qemu.run(dir, "qemu-img", "check", img.toString()).exit(), "a valid version 2 table");
        putInt(img, OFF_VERSION, 3);
        putInt(img, OFF_HEADER_LENGTH, 0x68);
        putInt(img, OFF_REFCOUNT_ORDER, 4);

        Qemu.Result plain = assertLikeQemu(img, "check");
        assertEquals(2, plain.exit());
        assertEquals("ERROR snapshot table entry 0 is incomplete\nERROR snapshot table entry 2 is incomplete\n", plain.err());
        assertEquals(2, assertLikeQemu(img, "check", "-r", "leaks").exit());
        assertLikeQemu(img, "check", "--output=json");
        Qemu.Result all = assertLikeQemu(img, "check", "-r", "all");
        assertEquals(0, all.exit());
        assertEquals("Repairing snapshot table entry 0 is incomplete\nRepairing snapshot table entry 2 is incomplete\n",
                all.err());
        assertTrue(all.out().contains("    2 corruptions\n"), all.out());
        assertLikeQemu(img, "check", "-r", "all", "--output=json");
        assertLikeQemu(img, "check", "-r", "all", "-q");
    }

    /**
     * iotest 261's "Reject too much unknown extra data": an entry claiming 64 KiB of extra data (over QEMU's 1024),
     * which also reaches into a cluster with no refcount. Opening fails, a check fails ("File too large") and so does
     * -r leaks; -r all cuts the extra data to 1024 bytes, rebuilds the refcounts and writes the table anew.
     */
    @Test
    void tooMuchExtraDataIsCutByRepair() throws IOException {
        Path img = create("extra.qcow2", "64M");
        for (String sn : List.of("sn0", "sn1", "sn2", "sn3")) {
            Qemu.img(dir, "snapshot", "-c", sn, img.toString());
        }
        long sn3 = entries(img).get(3).offset;
        putInt(img, sn3 + 36, 0x10000);

        Qemu.Result info = assertLikeQemu(img, "info");
        assertEquals(1, info.exit());
        assertTrue(info.err().endsWith(": Too much extra metadata in snapshot table entry 3\n"
                + "You can force-remove this extra metadata with qemu-img check -r all\n"), info.err());
        Qemu.Result plain = assertLikeQemu(img, "check");
        assertEquals("qemu-img: ERROR failed to read the snapshot table: Too much extra metadata in snapshot table entry 3\n"
                + "You can force-remove this extra metadata with qemu-img check -r all\n"
                + "qemu-img: Check failed: File too large\n", plain.err());
        assertEquals(1, plain.exit());
        assertEquals(1, assertLikeQemu(img, "check", "-r", "leaks").exit());
        Qemu.Result all = assertLikeQemu(img, "check", "-r", "all");
        assertEquals(0, all.exit(), all.err());
        assertTrue(all.err().startsWith("Discarding too much extra metadata in snapshot table entry 3 (65536 > 1024)\n"),
                all.err());
        assertTrue(all.err().contains("Rebuilding refcount structure\n"), all.err());
    }

    /**
     * iotest 261's "Too many snapshots": 131072 all-zero entries (valid in version 2), one of those past QEMU's 65536
     * with an L1 and an L2 table. Opening, a check and -r leaks fail; -r all drops the overhanging entries (the
     * header's count written at once) and repairs the clusters they leaked, without writing the table anew.
     */
    @Test
    void tooManySnapshotsAreDroppedByRepair() throws IOException {
        Path img = create("many.qcow2", "-o", "compat=0.10", "64M");
        putLong(img, OFF_SNAPSHOTS_OFFSET, 1 << 20);
        putInt(img, OFF_NB_SNAPSHOTS, 131072);
        truncate(img, (1 << 20) + 40L * 131072);
        long entry = (1 << 20) + 40L * 65536;
        putLong(img, entry, 0xe0000);
        putInt(img, entry + 8, 1);
        putLong(img, (1 << 20) - 2 * 65536, 0x8000_0000_000f_0000L);
        allocateInRefblock0(img, (1 << 20) - 2 * 65536, (1 << 20) + 40L * 131072);
        startQemu(img, "check", "-r", "all"); // about 50 s each in qemu-img
        startQemu(img, "check", "-r", "all", "--output=json");

        Qemu.Result info = assertLikeQemu(img, "info");
        assertEquals(1, info.exit());
        assertTrue(info.err().endsWith(": Snapshot table too large\n"), info.err());
        Qemu.Result plain = assertLikeQemu(img, "check");
        assertEquals("qemu-img: ERROR snapshot table too large\n"
                + "You can force-remove all 65536 overhanging snapshots with qemu-img check -r all\n"
                + "qemu-img: Check failed: File too large\n", plain.err());
        assertEquals(1, assertLikeQemu(img, "check", "-r", "leaks").exit());
        Qemu.Result all = assertLikeQemu(img, "check", "-r", "all");
        assertEquals(0, all.exit(), all.err());
        assertTrue(all.out().contains("    42 leaked clusters\n    65536 corruptions\n"), all.out());
        assertLikeQemu(img, "check", "-r", "all", "--output=json");
    }

    /**
     * iotest 261's "Snapshot table too big": entries of 1 KiB extra data and 64 KiB id and name each, one more than
     * fits in QEMU's 64 MiB table limit (that one with an L1 and an L2 table). -r all drops the last entry.
     */
    @Test
    void snapshotTableTooBigLosesItsLastEntries() throws IOException {
        Path img = create("big.qcow2", "64M");
        putLong(img, OFF_SNAPSHOTS_OFFSET, 1 << 20);
        int entrySize = 40 + 1024 + 65535 + 65535 + 2;
        ByteBuffer fixed = ByteBuffer.allocate(40);
        fixed.putShort(12, (short) 0xffff).putShort(14, (short) 0xffff).putInt(36, 1024);
        long offset = 1 << 20;
        int count = 0;
        for (long written = 0; written <= 64L << 20; written += entrySize) {
            put(img, offset, fixed.duplicate());
            offset += entrySize;
            count++;
        }
        truncate(img, offset);
        putLong(img, offset - entrySize, 0xe0000);
        putInt(img, offset - entrySize + 8, 1);
        putLong(img, (1 << 20) - 2 * 65536, 0x8000_0000_000f_0000L);
        allocateInRefblock0(img, (1 << 20) - 2 * 65536, offset);
        putInt(img, OFF_NB_SNAPSHOTS, count);

        Qemu.Result info = assertLikeQemu(img, "info");
        assertTrue(info.err().endsWith(": Snapshot table is too big\n"
                + "You can force-remove all 1 overhanging snapshots with qemu-img check -r all\n"), info.err());
        assertEquals(1, assertLikeQemu(img, "check").exit());
        Qemu.Result all = assertLikeQemu(img, "check", "-r", "all");
        assertEquals(0, all.exit(), all.err());
        assertTrue(all.err().startsWith("Discarding 1 overhanging snapshots (snapshot table is too big)\n"), all.err());
        assertEquals(count - 1, getInt(dir.resolve("qcow4j-" + run).resolve("img.qcow2"), OFF_NB_SNAPSHOTS));
    }

    /**
     * QEMU keeps ids and names as C strings: a name stored as "a\0b" lists as "a", is found as "a", and the table
     * written after a deletion keeps the other entries' names up to their NUL (and frees the old table whole).
     */
    @Test
    void namesEndAtTheirFirstNulByte() throws IOException {
        Path img = create("nul.qcow2", "64M");
        for (String sn : List.of("sn0", "sn1", "sn2")) {
            Qemu.img(dir, "snapshot", "-c", sn, img.toString());
        }
        List<Entry> entries = entries(img);
        for (int i = 0; i < 2; i++) {
            Entry e = entries.get(i);
            int idSize = ByteBuffer.wrap(e.fixed).getShort(12);
            put(img, e.offset + 40 + e.extra.length + idSize, ByteBuffer.wrap(new byte[] {'a', 0, (byte) ('b' + i)}));
        }
        Qemu.Result list = assertLikeQemu(img, "snapshot", "-l");
        assertTrue(list.out().contains(" a "), list.out());
        assertLikeQemu(img, "info");
        assertLikeQemu(img, "check");
        assertEquals(0, assertLikeQemu(img, "snapshot", "-d", "sn2").exit());
        assertEquals(0, assertLikeQemu(img, "snapshot", "-d", "a").exit());
    }

    /**
     * iotest 080's "Hitting snapshot table size limit": 65536 entries at 16 MiB, past the end of the file, which QEMU
     * reads as zeros (empty entries): the image opens, a new snapshot is one too many (EFBIG), and the check counts
     * every entry incomplete and the table past the end of the file.
     */
    @Test
    void tablePastTheEndOfTheFileReadsAsZeros() throws IOException {
        Path img = create("limit.qcow2", "64M");
        putLong(img, OFF_SNAPSHOTS_OFFSET, 16 << 20);
        putInt(img, OFF_NB_SNAPSHOTS, 65536);
        for (String[] args : new String[][] {{"snapshot", "-c", "test"}, {"snapshot", "-l"}, {"check"}, {"info"}}) {
            startQemu(img, args); // 15-20 s each in qemu-img
        }
        Qemu.Result create = assertLikeQemu(img, "snapshot", "-c", "test");
        assertEquals("qemu-img: Could not create snapshot 'test': -27 (File too large)\n",
                create.err().replace(dir.toString(), "DIR"));
        Qemu.Result list = assertLikeQemu(img, "snapshot", "-l");
        assertEquals(65538, list.out().split("\n").length, "the header lines and 65536 empty snapshots");
        assertEquals(2, assertLikeQemu(img, "check").exit());
        assertLikeQemu(img, "info");
    }

    // ================================================================ comparing with qemu-img

    /**
     * qemu-img ARGS on one copy of {@code img} and qcow4j as the qemu-img drop-in on another (same file name, in
     * sibling directories): the same exit code, stdout and stderr (file names aside), the same bytes afterwards, and
     * no stack trace. Returns qcow4j's result.
     */
    private Qemu.Result assertLikeQemu(Path img, String... args) throws IOException {
        CompletableFuture<QemuRun> ahead = started.remove(List.of(args));
        QemuRun qemuRun = ahead != null ? ahead.join() : runQemu(img, args);
        Path q = qemuRun.copy();
        Qemu.Result qr = qemuRun.result();
        Path o = Files.createDirectories(dir.resolve("qcow4j-" + (++run))).resolve("img.qcow2");
        Files.copy(img, o);
        List<String> ours = new ArrayList<>(List.of(args));
        ours.add(o.toString());
        Qemu.Result or = Qemu.asQemuImg(ours.toArray(String[]::new));
        String what = String.join(" ", args) + "\nqemu-img: exit " + qr.exit() + "\n" + qr.out() + qr.err()
                + "\nqcow4j: exit " + or.exit() + "\n" + or.out() + or.err();
        assertEquals(qr.exit(), or.exit(), "exit code " + what);
        assertEquals(qr.out(), or.out().replace(o.toString(), q.toString()), "stdout " + what);
        assertEquals(qr.err(), or.err().replace(o.toString(), q.toString()), "stderr " + what);
        assertFalse(or.err().contains("\tat "), "stack trace " + what);
        assertTrue(Files.size(q) == Files.size(o) && java.util.Arrays.equals(Files.readAllBytes(q), Files.readAllBytes(o)),
                "the same bytes after " + what);
        if (args.length > 2 && args[1].equals("-r") && args[2].equals("all") && qr.exit() == 0) {
            assertEquals(0, Qemu.run(dir, "qemu-img", "check", o.toString()).exit(), "qemu-img check after " + what);
        }
        return or;
    }

    /**
     * Starts qemu-img ARGS on its own copy of {@code img} now, for a later {@code assertLikeQemu(img, ARGS)}; the image
     * must not change in between.
     */
    private void startQemu(Path img, String... args) throws IOException {
        Path copy = copyForQemu(img);
        started.put(List.of(args), CompletableFuture.supplyAsync(() -> new QemuRun(copy, qemuImg(copy, args)),
                qemuRunners));
    }

    private QemuRun runQemu(Path img, String... args) throws IOException {
        Path copy = copyForQemu(img);
        return new QemuRun(copy, qemuImg(copy, args));
    }

    private Path copyForQemu(Path img) throws IOException {
        Path q = Files.createDirectories(dir.resolve("qemu-" + (++run))).resolve("img.qcow2");
        Files.copy(img, q);
        return q;
    }

    private Qemu.Result qemuImg(Path image, String... args) {
        List<String> qemu = new ArrayList<>(List.of("qemu-img"));
        qemu.addAll(List.of(args));
        qemu.add(image.toString());
        return Qemu.run(dir, qemu.toArray(String[]::new));
    }

    // ================================================================ building damaged images

    /** One snapshot table entry as stored: its fixed part, extra data, and id and name. */
    private record Entry(long offset, byte[] fixed, byte[] extra, byte[] idName) {
        Entry withExtra(byte[] extraData) {
            byte[] f = fixed.clone();
            ByteBuffer.wrap(f).putInt(36, extraData.length);
            return new Entry(offset, f, extraData, idName);
        }
    }

    private static List<Entry> entries(Path img) throws IOException {
        int n = getInt(img, OFF_NB_SNAPSHOTS);
        long offset = getLong(img, OFF_SNAPSHOTS_OFFSET);
        List<Entry> list = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            offset = (offset + 7) & ~7L;
            ByteBuffer f = get(img, offset, 40);
            int idName = (f.getShort(12) & 0xffff) + (f.getShort(14) & 0xffff);
            int extra = f.getInt(36);
            list.add(new Entry(offset, f.array().clone(), get(img, offset + 40, extra).array().clone(),
                    get(img, offset + 40 + extra, idName).array().clone()));
            offset += 40 + extra + idName;
        }
        return list;
    }

    /** Writes {@code entries} over the table (each padded to 8 bytes with zeros), as iotest 261 splices its table. */
    private static void rewrite(Path img, List<Entry> entries) throws IOException {
        long offset = getLong(img, OFF_SNAPSHOTS_OFFSET);
        for (Entry e : entries) {
            int len = e.fixed.length + e.extra.length + e.idName.length;
            ByteBuffer b = ByteBuffer.allocate((len + 7) & ~7);
            b.put(e.fixed).put(e.extra).put(e.idName).clear();
            put(img, offset, b);
            offset += b.capacity();
        }
    }

    /** iotest 261's refblock0_allocate: a refcount of 1 for every cluster of {@code [start, end)} (16-bit refcounts). */
    private static void allocateInRefblock0(Path img, long start, long end) throws IOException {
        long refblock = getLong(img, getLong(img, OFF_REFCOUNT_TABLE_OFFSET));
        ByteBuffer ones = ByteBuffer.allocate((int) (2 * ((end + 65535) / 65536 - start / 65536)));
        for (int i = 0; i < ones.capacity(); i += 2) {
            ones.putShort(i, (short) 1);
        }
        put(img, refblock + start / 65536 * 2, ones);
    }

    private static void truncate(Path img, long length) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(length);
        }
    }

    private Path create(String name, String... args) {
        return Qemu.createQcow2(dir, name, args);
    }
}
