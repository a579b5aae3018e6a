package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link QemuNumbers}, the one parser of qemu-io's and qemu-img bench's numbers, where IoCommandTest and
 * BenchCommandTest do not look: against qemu-io and qemu-img bench 7.2 for what strtod's range errors, Unicode
 * digits and a warning before an error do; directly for the values.
 */
class QemuNumbersTest {
    /** 5 and a fraction strtod reads as 0 with ERANGE (underflow): 5 + 1e-400. */
    private static final String TINY = "5." + "0".repeat(399) + "1";

    @TempDir
    Path dir;

    /**
     * Where strtod fails with ERANGE (a fraction too small, or an exponent too large), qemu skips one character after
     * what strtod read and keeps the integral part: TINY + "k" is 5, not 5 KiB, TINY + "kk" 5 KiB. A suffix after
     * hex gets its warning even when the rest is then refused.
     */
    private static final List<String> SIZES = List.of(TINY + "k", TINY + "z", TINY + "kk", TINY + "kz", TINY,
            "7.99999E522e", "7.5e+400km", "1.5e-400k", "1.0e-400k", "1.5e400", "0x10kz", "0x10k.", "0x8000000000000000k", "0x١", "١");

    @Test
    void readsSizesAsQemuIo() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", dir.resolve("a.qcow2").toString(), "1M");
        List<String> theirs = new ArrayList<>(List.of("qemu-io"));
        List<String> ours = new ArrayList<>(List.of("io"));
        for (String n : SIZES) {
            for (List<String> argv : List.of(theirs, ours)) {
                argv.addAll(List.of("-c", "read -q -- " + n + " 0"));
            }
        }
        for (String p : List.of("١", "0x١", "٣")) {
            for (List<String> argv : List.of(theirs, ours)) {
                argv.addAll(List.of("-c", "write -q -P " + p + " 0 1"));
            }
        }
        theirs.add(dir.resolve("a.qcow2").toString());
        ours.add(dir.resolve("a.qcow2").toString());
        Qemu.Result want = Qemu.run(dir, theirs.toArray(String[]::new));
        Qemu.Result got = Qemu.qcow4j(ours.toArray(String[]::new));
        assertEquals(want.out(), got.out());
        assertEquals(want.err().replace("qemu-io: ", "qcow4j: "), got.err());
        assertEquals(want.exit(), got.exit());
    }

    @Test
    void readsSizesAsQemuImgBench() throws IOException {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", dir.resolve("a.qcow2").toString(), "1M");
        for (String n : SIZES) {
            String[] args = {"bench", "-c", "0", "-o", n, dir.resolve("a.qcow2").toString()};
            Qemu.Result want = Qemu.run(dir, Qemu.concat("qemu-img", args));
            Qemu.Result got = Qemu.qcow4j(args);
            assertEquals(want.out().replaceAll("[0-9.]+ seconds", "T seconds"),
                    got.out().replaceAll("[0-9.]+ seconds", "T seconds"), n);
            assertEquals(want.err().replace("qemu-img: ", "qcow4j: "), got.err(), n);
            assertEquals(want.exit(), got.exit(), n);
        }
    }

    @Test
    void strtosz() {
        List<String> warnings = new ArrayList<>();
        assertEquals(1536, QemuNumbers.strtosz("1.5k", warnings::add));
        assertEquals(1024, QemuNumbers.strtosz("1.k", warnings::add));
        assertEquals(1, QemuNumbers.strtosz("1b", warnings::add));
        assertEquals(QemuNumbers.EINVAL, QemuNumbers.strtosz("1.5", warnings::add), "a fraction needs a scale");
        assertEquals(QemuNumbers.EINVAL, QemuNumbers.strtosz("1.5e3k", warnings::add), "no exponents");
        assertEquals(QemuNumbers.EINVAL, QemuNumbers.strtosz("-0", warnings::add));
        assertEquals(QemuNumbers.EINVAL, QemuNumbers.strtosz("", warnings::add));
        assertEquals(5, QemuNumbers.strtosz(TINY + "k", warnings::add), "underflow skips the k");
        assertEquals(5 << 10, QemuNumbers.strtosz(TINY + "kk", warnings::add));
        assertEquals(QemuNumbers.EINVAL, QemuNumbers.strtosz(TINY, warnings::add), "it would skip the end");
        assertEquals(Long.MAX_VALUE, QemuNumbers.strtosz("9223372036854775807", warnings::add));
        assertEquals(QemuNumbers.ERANGE, QemuNumbers.strtosz("9223372036854775808", warnings::add));
        assertEquals(QemuNumbers.ERANGE, QemuNumbers.strtosz("16E", warnings::add));
        assertEquals(QemuNumbers.ERANGE, QemuNumbers.strtosz("18446744073709551616", warnings::add));
        assertEquals(QemuNumbers.EINVAL, QemuNumbers.strtosz("18446744073709551616 ", warnings::add));
        assertEquals(List.of(), warnings);
        assertEquals(16 << 10, QemuNumbers.strtosz("0x10k", warnings::add));
        assertEquals(QemuNumbers.EINVAL, QemuNumbers.strtosz("0x10kz", warnings::add));
        assertEquals(List.of("warning: Using a multiplier suffix on hex numbers is deprecated: 0x10k",
                "warning: Using a multiplier suffix on hex numbers is deprecated: 0x10kz"), warnings);
    }

    @Test
    void strtoul() {
        assertEquals(256, QemuNumbers.strtoul("0x100"));
        assertEquals(8, QemuNumbers.strtoul(" +010"));
        assertEquals(0, QemuNumbers.strtoul("-0"));
        assertEquals(QemuNumbers.ERANGE, QemuNumbers.strtoul("-1"), "wraps around above INT64_MAX");
        assertEquals(QemuNumbers.ERANGE, QemuNumbers.strtoul("18446744073709551616"));
        assertEquals(QemuNumbers.EINVAL, QemuNumbers.strtoul("08"));
        assertEquals(QemuNumbers.EINVAL, QemuNumbers.strtoul("0x"));
        assertEquals(QemuNumbers.EINVAL, QemuNumbers.strtoul(""));
        assertEquals(QemuNumbers.EINVAL, QemuNumbers.strtoul("١"), "ASCII digits only");
    }

    @Test
    void suffixes() {
        assertEquals(1, QemuNumbers.suffixMul('b'));
        assertEquals(1L << 10, QemuNumbers.suffixMul('k'));
        assertEquals(1L << 60, QemuNumbers.suffixMul('E'));
        assertEquals(-1, QemuNumbers.suffixMul('x'));
    }
}
