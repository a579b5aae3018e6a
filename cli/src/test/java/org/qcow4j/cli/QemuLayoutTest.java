package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;
import org.opentest4j.AssertionFailedError;
import org.qcow4j.testing.Shrinker;

/**
 * Images written in place are the images QEMU writes: the same qemu-io script run by qemu-io 7.2 on one image and by
 * {@code qcow4j io} on its twin leaves two files that are byte for byte the same (QEMU's iotests poke metadata at the
 * offsets QEMU's allocation gives). Writes (unaligned, multi-cluster, across L2 tables), zero writes with and without
 * {@code -u}, discards, flushes and truncations, on every image kind: 64 KiB, 512-byte and 2 MiB clusters, 1- and
 * 64-bit refcounts, extended L2, lazy refcounts, version 2, overlays with a backing file, zlib and zstd compressed
 * clusters, external data files (plain and raw, whose data files must come out the same too). Fixed scripts, then seeded random ones ({@code -Dlayout.seed=N}, {@code -Dlayout.runs=N} per kind),
 * shrunk when they fail. A difference is reported with its first offset and the structure it lies in.
 */
class QemuLayoutTest {
    private static final long SEED = Long.getLong("layout.seed", 20261201L);
    private static final int RUNS = Integer.getInteger("layout.runs", 2);

    @TempDir
    Path dir;

    /**
     * An image kind: qemu-img create options, virtual size, cluster size, and whether the image is an overlay of a
     * qcow2 base or a {@code convert -c} of data (compressed clusters).
     */
    record Kind(String name, String options, long size, int clusterSize, boolean backing, boolean compressed) {
        /** An external data file, {@code img.data} beside the image (each image in its own directory, named absolutely). */
        boolean dataFile() {
            return options.contains("data_file=");
        }
    }

    static final List<Kind> KINDS = List.of(
            new Kind("v3-64k", "compat=1.1", 64 << 20, 65536, false, false),
            new Kind("cluster-512", "cluster_size=512", 16 << 20, 512, false, false),
            new Kind("cluster-2M", "cluster_size=2M", 64 << 20, 2 << 20, false, false),
            new Kind("refcount-1", "refcount_bits=1", 64 << 20, 65536, false, false),
            new Kind("refcount-64", "refcount_bits=64", 64 << 20, 65536, false, false),
            new Kind("cluster-512-refcount-1", "cluster_size=512,refcount_bits=1", 8 << 20, 512, false, false),
            new Kind("extended-l2", "extended_l2=on", 64 << 20, 65536, false, false),
            new Kind("lazy-refcounts", "lazy_refcounts=on", 64 << 20, 65536, false, false),
            new Kind("compat-0.10", "compat=0.10", 64 << 20, 65536, false, false),
            new Kind("backing", "compat=1.1", 8 << 20, 65536, true, false),
            new Kind("backing-compat-0.10", "compat=0.10", 8 << 20, 65536, true, false),
            new Kind("backing-extended-l2", "extended_l2=on", 8 << 20, 65536, true, false),
            new Kind("zlib-compressed", "compression_type=zlib", 8 << 20, 65536, false, true),
            new Kind("zstd-compressed", "compression_type=zstd", 8 << 20, 65536, false, true),
            new Kind("data-file", "data_file=img.data", 8 << 20, 65536, false, false),
            new Kind("data-file-raw", "data_file=img.data,data_file_raw=on", 8 << 20, 65536, false, false),
            new Kind("data-file-raw-extended-l2", "data_file=img.data,data_file_raw=on,extended_l2=on", 8 << 20, 65536,
                    false, false),
            new Kind("data-file-backing", "data_file=img.data", 8 << 20, 65536, true, false),
            new Kind("data-file-raw-512", "data_file=img.data,data_file_raw=on,cluster_size=512", 4 << 20, 512, false,
                    false));

    /** Fixed scripts; {@code S} is the disk size, {@code C} the cluster size, {@code L} what one L2 table covers. */
    static final List<List<String>> SCRIPTS = List.of(
            // the example that started it: a zero flag on an unallocated cluster, a freed cluster reused for an L2 table
            List.of("write -P 1 0 64k", "write -P 2 1M 4k", "write -z 2M 64k", "discard 0 64k", "write -P 3 S/2 2C"),
            // unaligned and multi-cluster writes, across L2 tables, partly over what is there
            List.of("write -P 0x11 1000 3000", "write -P 0x22 C-100 3C", "write -P 0x33 L-C 3C", "write -P 0x44 2L-700 C+900",
                    "write -P 0x55 1500 5C", "write 3L 1", "flush", "write -P 0x66 C/2 C"),
            // zero writes: aligned, unaligned, -u, over data, over nothing, over a missing L2 table
            List.of("write -P 0x55 0 4C", "write -z C/4 C/2", "write -z 100 200", "write -z C 2C", "write -z -u 3C C",
                    "write -z 4L+C 3C", "write -z -u 2L 2C", "write -P 0x56 5C 3C", "write -z -u 5C+512 3C", "write -z S-C C"),
            // discards: whole clusters go (and their space is punched), partial ones stay; freed clusters reused
            List.of("write -P 0x77 0 8C", "discard C 2C", "discard 1000 5000", "discard 5C+100 2C", "discard L 2L",
                    "write -P 0x78 L+C 3C", "flush", "discard 0 S", "write -P 0x79 C 2C"),
            // truncate: grow (the L1 table moves), shrink (tables and refcount blocks go, the file is cut), grow again
            List.of("write -P 0x88 0 4C", "write -P 0x89 S-2C 2C", "truncate 2S", "write -P 0x8a 2S-C C", "truncate S/2+512",
                    "truncate 3S", "write -P 0x8b 3S-4C 2C", "truncate C", "truncate 1M", "write -P 0x8c 0 C"));

    @TestFactory
    Stream<DynamicTest> fixedScriptsLeaveQemusFile() {
        return KINDS.stream().flatMap(k -> IntStream.range(0, SCRIPTS.size()).mapToObj(i -> DynamicTest.dynamicTest(
                k.name() + " script " + i, () -> {
                    List<String> script = SCRIPTS.get(i).stream().map(c -> resolve(c, k)).toList();
                    AssertionFailedError f = attempt(k, script);
                    if (f != null) {
                        throw f;
                    }
                })));
    }

    @TestFactory
    Stream<DynamicTest> randomScriptsLeaveQemusFile() {
        return KINDS.stream().flatMap(k -> IntStream.range(0, RUNS).mapToObj(run -> {
            long seed = SEED * 31 + k.name().hashCode() * 1009L + run;
            return DynamicTest.dynamicTest(k.name() + " #" + run, () -> {
                List<String> script = randomScript(new Random(seed), k);
                AssertionFailedError f = attempt(k, script);
                if (f != null) {
                    throw Shrinker.shrink(script, f, "seed " + seed + ", " + k.name(), fewer -> attempt(k, fewer));
                }
            });
        }));
    }

    /** The comparison must see a difference: one byte of a metadata structure, and one of data. */
    @Test
    void aDifferenceIsFoundAndPlaced() throws IOException {
        Kind k = KINDS.get(0);
        Path work = Files.createDirectories(dir.resolve("self"));
        Path a = create(work, k, "a.qcow2");
        Qemu.io(work, a.toString(), "write -P 1 1M 64k");
        Path b = work.resolve("b.qcow2");
        Files.copy(a, b);
        assertEquals(null, difference(a, b));
        byte[] bytes = Files.readAllBytes(b);
        bytes[4 * 65536 + 16 * 8 + 7] ^= 1; // L2 table at cluster 4, entry for guest 1M
        Files.write(b, bytes);
        assertEquals("first difference at 262279 (file lengths 393216 and 393216): L2 table of L1 entry 0 in both",
                difference(a, b));
        bytes[4 * 65536 + 16 * 8 + 7] ^= 1;
        bytes[5 * 65536 + 3] ^= 1;
        Files.write(b, bytes);
        assertEquals("first difference at 327683 (file lengths 393216 and 393216): data of guest offset 1048576 in both",
                difference(a, b));
    }

    // ---------------------------------------------------------------- running a script

    /** Runs {@code script} through qemu-io and through qcow4j io on twin images; the difference found, or null. */
    private AssertionFailedError attempt(Kind k, List<String> script) throws IOException {
        Path work = Files.createTempDirectory(dir, "run");
        try {
            // Each image and its data file in a directory of their own; both headers name the data file alike (a
            // relative name would be taken from the working directory, which qcow4j's here is not) through a link
            // to the directory whose image is run: first qemu-io's, then ours.
            Path theirsDir = k.dataFile() ? Files.createDirectories(work.resolve("qemu")) : work;
            Path oursDir = k.dataFile() ? Files.createDirectories(work.resolve("ours")) : work;
            Path link = work.resolve("data");
            if (k.dataFile()) {
                Files.createSymbolicLink(link, theirsDir);
            }
            Path theirs = create(theirsDir, k, k.dataFile() ? "img.qcow2" : "theirs.qcow2", link);
            Path ours = oursDir.resolve(k.dataFile() ? "img.qcow2" : "ours.qcow2");
            Files.copy(theirs, ours);
            if (k.dataFile()) {
                Files.copy(theirsDir.resolve("img.data"), oursDir.resolve("img.data"));
            }
            List<String> qemu = Qemu.list("qemu-io");
            List<String> io = Qemu.list("io");
            for (String c : script) {
                qemu.addAll(List.of("-c", c));
                io.addAll(List.of("-c", c));
            }
            qemu.add(theirs.toString());
            io.add(ours.toString());
            Qemu.Result want = Qemu.run(theirsDir, qemu.toArray(String[]::new));
            if (k.dataFile()) {
                Files.delete(link);
                Files.createSymbolicLink(link, oursDir);
            }
            Qemu.Result got = Qemu.qcow4j(io.toArray(String[]::new));
            if (want.exit() != got.exit()) {
                return new AssertionFailedError(k.name() + " " + script + ": exit " + got.exit() + ", qemu-io's " + want.exit()
                        + "\nqemu-io: " + want.out() + want.err() + "\nqcow4j: " + got.out() + got.err());
            }
            String d = difference(theirs, ours);
            if (d == null && k.dataFile()) {
                Path td = theirsDir.resolve("img.data");
                Path od = oursDir.resolve("img.data");
                long at = Files.mismatch(td, od);
                d = at < 0 ? null : "data files differ first at " + at + " (lengths " + Files.size(td) + " and "
                        + Files.size(od) + ")";
            }
            return d == null ? null : new AssertionFailedError(k.name() + " " + script + ": " + d);
        } finally {
            try (Stream<Path> files = Files.walk(work)) {
                for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
                    Files.delete(p);
                }
            }
        }
    }

    /** Makes the image of kind {@code k} (and its base) in {@code work} with QEMU's tools; a data file in work. */
    static Path create(Path work, Kind k, String name) throws IOException {
        return create(work, k, name, work);
    }

    /** {@link #create(Path, Kind, String)}, a data file named as {@code img.data} in {@code dataDir} (absolute). */
    static Path create(Path work, Kind k, String name, Path dataDir) throws IOException {
        Path img = work.resolve(name);
        String options = k.options().replace("data_file=img.data", "data_file=" + dataDir.resolve("img.data"));
        if (k.compressed()) {
            byte[] raw = new byte[(int) k.size()];
            for (int i = 0; i < raw.length * 3 / 4; i += 512) {
                java.util.Arrays.fill(raw, i, i + 512, (byte) (0x40 + (i >>> 9)));
            }
            Files.write(work.resolve("src.raw"), raw);
            Qemu.img(work, "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", options, "src.raw", img.toString());
            return img;
        }
        List<String> args = Qemu.list("create", "-q", "-f", "qcow2", "-o", options);
        if (k.backing()) {
            Path base = work.resolve("base.qcow2");
            if (!Files.exists(base)) {
                // the base keeps its data in itself: two images on one data file would lock each other out
                String baseOptions = k.dataFile() ? "compat=1.1" : k.options();
                Qemu.img(work, "create", "-q", "-f", "qcow2", "-o", baseOptions, base.toString(), Long.toString(k.size() * 3 / 4));
                Qemu.io(work, base.toString(), "write -P 0xba 0 " + k.size() * 3 / 4, "write -z 1M 64k");
            }
            args.addAll(List.of("-b", base.toString(), "-F", "qcow2"));
        }
        args.addAll(List.of(img.toString(), Long.toString(k.size())));
        Qemu.img(work, args.toArray(String[]::new));
        return img;
    }

    /** {@code S}, {@code C} and {@code L} in a script line, with +, -, * and / (left to right, no precedence). */
    static String resolve(String command, Kind k) {
        long l2 = (long) k.clusterSize() * (k.clusterSize() / (k.options().contains("extended_l2=on") ? 16 : 8));
        StringBuilder out = new StringBuilder();
        for (String word : command.split(" ")) {
            if (!word.matches(".*[SCL].*") || word.startsWith("-")) {
                out.append(word).append(' ');
                continue;
            }
            long value = 0;
            char op = '+';
            for (String tok : word.split("(?=[-+*/])|(?<=[-+*/])")) {
                if (tok.length() == 1 && "+-*/".contains(tok)) {
                    op = tok.charAt(0);
                    continue;
                }
                java.util.regex.Matcher m = java.util.regex.Pattern.compile("(\\d*)([SCLM]?)").matcher(tok);
                if (!m.matches()) {
                    throw new IllegalArgumentException(tok);
                }
                long unit = switch (m.group(2)) {
                    case "S" -> k.size();
                    case "C" -> k.clusterSize();
                    case "L" -> l2;
                    case "M" -> 1 << 20;
                    default -> 1;
                };
                long v = (m.group(1).isEmpty() ? 1 : Long.parseLong(m.group(1))) * unit;
                value = switch (op) {
                    case '+' -> value + v;
                    case '-' -> value - v;
                    case '*' -> value * v;
                    default -> value / v;
                };
            }
            out.append(value).append(' ');
        }
        return out.toString().trim();
    }

    // ---------------------------------------------------------------- random scripts

    /**
     * A random script: mostly writes (any length up to a few clusters or L2 tables, a third cluster aligned, some at L2
     * boundaries), zero writes with and without -u, discards, a few flushes and truncations, all inside the disk.
     */
    static List<String> randomScript(Random r, Kind k) {
        List<String> script = new ArrayList<>();
        long size = k.size();
        long c = k.clusterSize();
        long l2 = c * (c / (k.options().contains("extended_l2=on") ? 16 : 8));
        for (int n = 1 + r.nextInt(20); n > 0; n--) {
            int kind = r.nextInt(20);
            if (kind >= 18) {
                script.add("flush");
                continue;
            }
            if (kind == 17) {
                long max = size * 2 / 512;
                long newSize = Math.max(1, r.nextInt((int) Math.min(Integer.MAX_VALUE, max))) * 512;
                if (r.nextBoolean()) {
                    newSize = Math.max(c, newSize / c * c);
                }
                script.add("truncate " + newSize);
                size = newSize;
                continue;
            }
            long off = (long) (r.nextDouble() * size);
            long span = r.nextInt(4) == 0 ? Math.min(Math.min(3 * l2, 64 * c), 8 << 20) : 4 * c;
            long len = 1 + (long) (r.nextDouble() * Math.min(size - off, span));
            if (r.nextInt(4) == 0) { // near an L2 boundary
                long boundary = (off / l2 + 1) * l2;
                if (boundary < size) {
                    off = Math.max(0, boundary - 1 - (long) (r.nextDouble() * 2 * c));
                    len = Math.min(size - off, 1 + (long) (r.nextDouble() * 4 * c));
                }
            }
            if (r.nextInt(3) == 0) { // cluster aligned
                off = off / c * c;
                len = Math.min(size - off, Math.max(c, len / c * c));
            }
            if (len <= 0) {
                continue;
            }
            script.add(switch (kind % 6) {
                case 0, 1, 2 -> "write -P " + (1 + r.nextInt(255)) + " " + off + " " + len;
                case 3 -> "write -z " + off + " " + len;
                case 4 -> "write -z -u " + off + " " + len;
                default -> "discard " + off + " " + len;
            });
        }
        return script;
    }

    // ---------------------------------------------------------------- where two files differ

    /** Null if the files are the same; otherwise the first differing offset and what lies there in each file. */
    static String difference(Path theirs, Path ours) throws IOException {
        long at = Files.mismatch(theirs, ours);
        if (at < 0) {
            return null;
        }
        String t = structureAt(theirs, at);
        String o = structureAt(ours, at);
        return "first difference at " + at + " (file lengths " + Files.size(theirs) + " and " + Files.size(ours) + "): "
                + (t.equals(o) ? t + " in both" : t + " in qemu-io's, " + o + " in ours");
    }

    /** What the cluster holding {@code offset} is in the image: header, tables, refcount blocks, data, or nothing. */
    static String structureAt(Path img, long offset) throws IOException {
        long length = Files.size(img);
        if (offset >= length) {
            return "past the end of the file";
        }
        int clusterBits = ImageBytes.getInt(img, 20);
        long cs = 1L << clusterBits;
        long cluster = offset >>> clusterBits;
        if (cluster == 0) {
            return "header cluster";
        }
        int version = ImageBytes.getInt(img, 4);
        boolean ext = version >= 3 && (ImageBytes.getLong(img, 72) & 16) != 0;
        long l1Offset = ImageBytes.getLong(img, 40);
        int l1Size = ImageBytes.getInt(img, 36);
        long rtOffset = ImageBytes.getLong(img, 48);
        int rtClusters = ImageBytes.getInt(img, 56);
        if (in(cluster, rtOffset, (long) rtClusters * cs, clusterBits)) {
            return "refcount table";
        }
        if (in(cluster, l1Offset, l1Size * 8L, clusterBits)) {
            return "L1 table";
        }
        ByteBuffer rt = ImageBytes.get(img, rtOffset, (int) Math.min((long) rtClusters * cs, length - rtOffset));
        for (int i = 0; i < rt.limit() / 8; i++) {
            long e = rt.getLong(i * 8) & ~511L;
            if (e != 0 && e >>> clusterBits == cluster) {
                return "refcount block " + i;
            }
        }
        ByteBuffer l1 = ImageBytes.get(img, l1Offset, (int) Math.min(l1Size * 8L, length - l1Offset));
        int entrySize = ext ? 16 : 8;
        long coverage = cs * (cs / entrySize);
        for (int i = 0; i < l1.limit() / 8; i++) {
            long l2 = l1.getLong(i * 8) & 0x00ff_ffff_ffff_fe00L;
            if (l2 == 0 || l2 >= length) {
                continue;
            }
            if (l2 >>> clusterBits == cluster) {
                return "L2 table of L1 entry " + i;
            }
            ByteBuffer t = ImageBytes.get(img, l2, (int) Math.min(cs, length - l2));
            for (int j = 0; j < t.limit() / entrySize; j++) {
                long e = t.getLong(j * entrySize);
                boolean compressed = (e & (1L << 62)) != 0;
                long host = compressed ? e & ((1L << (62 - (clusterBits - 8))) - 1) : e & 0x00ff_ffff_ffff_fe00L;
                if (host != 0 && host >>> clusterBits == cluster) {
                    return (compressed ? "compressed data of guest offset " : "data of guest offset ") + (i * coverage + j * cs);
                }
            }
        }
        return "cluster " + cluster + ", used by nothing the tables reach";
    }

    private static boolean in(long cluster, long offset, long bytes, int clusterBits) {
        return bytes > 0 && cluster >= offset >>> clusterBits && cluster <= (offset + bytes - 1) >>> clusterBits;
    }
}
