package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every qcow2 variant QEMU 7.2 writes, made at test time with qemu-img/qemu-io, read by qcow4j and compared
 * with QEMU: {@code convert -O raw} byte for byte, {@code info} (JSON and text) and {@code map} (JSON and text)
 * field for field.
 */
class CompatibilityTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * Shell helpers for the variant scripts. {@code rnd FILE OFFSET LEN} writes random bytes, {@code txt FILE
     * OFFSET LEN} compressible text; offsets and lengths in KiB.
     */
    private static final String PRELUDE = """
            set -e
            rnd() { head -c $(($3*1024)) /dev/urandom | dd of="$1" bs=1024 seek=$2 conv=notrunc status=none; }
            txt() { yes "qcow4j $2 compressible line" | head -c $(($3*1024)) | dd of="$1" bs=1024 seek=$2 conv=notrunc status=none; }
            mixed() { truncate -s "$2" "$1"; rnd "$1" 0 100; txt "$1" 200 300; rnd "$1" 1024 64; txt "$1" 2000 40; rnd "$1" 3000 1; }
            """;

    @TempDir
    static Path root;

    /**
     * A variant: a name and the script (run with bash in an empty directory) that makes {@code image}. Data files are
     * named absolutely ({@code $PWD/...}): a relative name is taken from the working directory, which qcow4j's here is
     * not.
     */
    record Variant(String name, String image, String script) {
        /** Makes the variant in a new directory under {@code parent}; returns the image's absolute name. */
        String build(Path parent) throws IOException {
            Path dir = Files.createDirectories(parent.resolve(name));
            Qemu.run(dir, "bash", "-c", PRELUDE + script).ok();
            return dir.resolve(image).toString();
        }
    }

    private static Variant v(String name, String script) {
        return new Variant(name, "img.qcow2", script);
    }

    static List<Variant> variants() {
        return List.of(
                v("v3-64k-mixed", "mixed s.raw 4M; qemu-img convert -O qcow2 s.raw img.qcow2"),
                v("v2-64k-mixed", "mixed s.raw 4M; qemu-img convert -O qcow2 -o compat=0.10 s.raw img.qcow2"),
                v("v3-512b-clusters", "mixed s.raw 4M; qemu-img convert -O qcow2 -o cluster_size=512 s.raw img.qcow2"),
                v("v3-4k-clusters", "mixed s.raw 4M; qemu-img convert -O qcow2 -o cluster_size=4k s.raw img.qcow2"),
                v("v3-2m-clusters", "mixed s.raw 6M; qemu-img convert -O qcow2 -o cluster_size=2M s.raw img.qcow2"),
                v("v2-512b-clusters", "mixed s.raw 3M; qemu-img convert -O qcow2 -o compat=0.10,cluster_size=512 s.raw img.qcow2"),
                v("refcount-bits-1", "mixed s.raw 4M; qemu-img convert -O qcow2 -o refcount_bits=1 s.raw img.qcow2"),
                v("refcount-bits-8", "mixed s.raw 4M; qemu-img convert -O qcow2 -o refcount_bits=8 s.raw img.qcow2"),
                v("refcount-bits-64", "mixed s.raw 4M; qemu-img convert -O qcow2 -o refcount_bits=64,cluster_size=4k s.raw img.qcow2"),
                v("size-not-cluster-multiple", """
                        qemu-img create -q -f qcow2 img.qcow2 3146240
                        qemu-io -c 'write -P 0x5a 3145728 512' -c 'write -P 7 0 1000' img.qcow2 >/dev/null"""),
                v("size-not-sector-multiple", """
                        qemu-img create -q -f qcow2 img.qcow2 1M
                        qemu-io -c 'write -P 0x33 0 64k' img.qcow2 >/dev/null
                        python3 -c "import struct;f=open('img.qcow2','r+b');f.seek(24);f.write(struct.pack('>Q',1000001))"
                        """),
                v("zero-clusters-and-discard", """
                        mixed s.raw 4M; qemu-img convert -O qcow2 s.raw img.qcow2
                        qemu-io -c 'write -z 0 64k' -c 'write -z -u 128k 128k' -c 'discard 1024k 64k' \
                                -c 'write -z 2000k 8k' -c 'write -P 9 3500k 4k' -c 'discard 3500k 4k' img.qcow2 >/dev/null"""),
                v("zero-alloc-preallocated", """
                        qemu-img create -q -f qcow2 -o preallocation=full img.qcow2 2M
                        qemu-io -c 'write -P 1 0 128k' -c 'write -z 64k 64k' img.qcow2 >/dev/null"""),
                v("preallocation-falloc", """
                        qemu-img create -q -f qcow2 -o preallocation=falloc img.qcow2 2M
                        qemu-io -c 'write -P 1 64k 4k' img.qcow2 >/dev/null"""),
                v("zlib-64k", "mixed s.raw 4M; qemu-img convert -c -O qcow2 s.raw img.qcow2"),
                v("zlib-4k", "mixed s.raw 4M; qemu-img convert -c -O qcow2 -o cluster_size=4k s.raw img.qcow2"),
                v("zlib-2m", "mixed s.raw 6M; qemu-img convert -c -O qcow2 -o cluster_size=2M s.raw img.qcow2"),
                v("zlib-512b", "mixed s.raw 3M; qemu-img convert -c -O qcow2 -o cluster_size=512 s.raw img.qcow2"),
                v("zlib-v2", "mixed s.raw 4M; qemu-img convert -c -O qcow2 -o compat=0.10 s.raw img.qcow2"),
                v("zstd-64k", "mixed s.raw 4M; qemu-img convert -c -O qcow2 -o compression_type=zstd s.raw img.qcow2"),
                v("zstd-4k", "mixed s.raw 4M; qemu-img convert -c -O qcow2 -o compression_type=zstd,cluster_size=4k s.raw img.qcow2"),
                v("zstd-2m", "mixed s.raw 6M; qemu-img convert -c -O qcow2 -o compression_type=zstd,cluster_size=2M s.raw img.qcow2"),
                v("zlib-then-overwritten", """
                        mixed s.raw 4M; qemu-img convert -c -O qcow2 s.raw img.qcow2
                        qemu-io -c 'write -P 0xee 200k 4k' -c 'write -P 0xdd 256k 64k' -c 'write -z 320k 64k' img.qcow2 >/dev/null"""),
                v("zstd-then-overwritten", """
                        mixed s.raw 4M; qemu-img convert -c -O qcow2 -o compression_type=zstd s.raw img.qcow2
                        qemu-io -c 'write -P 0xee 200k 4k' -c 'discard 256k 64k' img.qcow2 >/dev/null"""),
                v("chain-3-deep-zero-hides-backing", """
                        qemu-img create -q -f qcow2 base.qcow2 4M
                        qemu-io -c 'write -P 1 0 1M' -c 'write -P 2 2M 1M' base.qcow2 >/dev/null
                        qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 4M
                        qemu-io -c 'write -P 3 512k 64k' -c 'write -z 2M 64k' mid.qcow2 >/dev/null
                        qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 img.qcow2 4M
                        qemu-io -c 'write -P 4 0 4k' -c 'write -z 576k 64k' -c 'write -P 5 3M 64k' img.qcow2 >/dev/null"""),
                v("chain-compressed-base", """
                        mixed s.raw 4M; qemu-img convert -c -O qcow2 s.raw base.qcow2
                        qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 img.qcow2 4M
                        qemu-io -c 'write -P 4 100k 4k' img.qcow2 >/dev/null"""),
                v("chain-raw-base", """
                        head -c 2097152 /dev/urandom > base.raw
                        qemu-img create -q -f qcow2 -b base.raw -F raw img.qcow2 2M
                        qemu-io -c 'write -P 4 64k 64k' -c 'write -z 1M 64k' img.qcow2 >/dev/null"""),
                v("chain-short-base", """
                        qemu-img create -q -f qcow2 base.qcow2 1M
                        qemu-io -c 'write -P 1 0 1M' base.qcow2 >/dev/null
                        qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 img.qcow2 4M
                        qemu-io -c 'write -P 2 3M 4k' img.qcow2 >/dev/null"""),
                v("chain-short-raw-base-unaligned", """
                        head -c 100000 /dev/urandom > base.raw
                        qemu-img create -q -f qcow2 -b base.raw -F raw img.qcow2 1M"""),
                v("chain-v2-overlay-no-backing-format", """
                        qemu-img create -q -f qcow2 -o compat=0.10 base.qcow2 1M
                        qemu-io -c 'write -P 1 0 64k' base.qcow2 >/dev/null
                        qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 img.qcow2 1M
                        qemu-io -c 'write -P 2 64k 4k' img.qcow2 >/dev/null"""),
                v("chain-subdir-relative-backing", """
                        mkdir -p sub/deeper
                        qemu-img create -q -f qcow2 sub/deeper/base.qcow2 1M
                        qemu-io -c 'write -P 1 0 64k' sub/deeper/base.qcow2 >/dev/null
                        qemu-img create -q -f qcow2 -b deeper/base.qcow2 -F qcow2 sub/mid.qcow2 1M
                        qemu-img create -q -f qcow2 -b sub/mid.qcow2 -F qcow2 img.qcow2 1M"""),
                v("extended-l2", """
                        qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k img.qcow2 4M
                        qemu-io -c 'write -P 1 4k 4k' -c 'write -z 64k 8k' -c 'write -P 2 1M 128k' -c 'write -z 2M 128k' \
                                -c 'write -P 3 3M 20k' -c 'discard 3M 4k' img.qcow2 >/dev/null"""),
                v("extended-l2-with-backing", """
                        qemu-img create -q -f qcow2 base.qcow2 4M
                        qemu-io -c 'write -P 1 0 4M' base.qcow2 >/dev/null
                        qemu-img create -q -f qcow2 -o extended_l2=on -b base.qcow2 -F qcow2 img.qcow2 4M
                        qemu-io -c 'write -P 2 4k 4k' -c 'write -z 72k 8k' -c 'write -P 3 1M 3k' -c 'discard 2M 64k' img.qcow2 >/dev/null"""),
                v("extended-l2-zstd", "mixed s.raw 4M; qemu-img convert -c -O qcow2 -o extended_l2=on,compression_type=zstd s.raw img.qcow2"),
                v("external-data-file", """
                        qemu-img create -q -f qcow2 -o data_file=$PWD/img.data img.qcow2 2M
                        qemu-io -c 'write -P 1 64k 64k' -c 'write -z 512k 64k' -c 'write -P 2 1M 4k' img.qcow2 >/dev/null"""),
                v("external-data-file-raw", """
                        qemu-img create -q -f qcow2 -o data_file=$PWD/img.data,data_file_raw=on img.qcow2 2M
                        qemu-io -c 'write -P 1 64k 64k' -c 'write -P 2 1M 4k' img.qcow2 >/dev/null"""),
                v("internal-snapshots", """
                        qemu-img create -q -f qcow2 img.qcow2 4M
                        qemu-io -c 'write -P 1 0 1M' img.qcow2 >/dev/null
                        qemu-img snapshot -c first img.qcow2
                        qemu-io -c 'write -P 2 512k 1M' img.qcow2 >/dev/null
                        qemu-img snapshot -c second img.qcow2
                        qemu-io -c 'discard 0 256k' img.qcow2 >/dev/null"""),
                v("persistent-bitmap", """
                        qemu-img create -q -f qcow2 img.qcow2 4M
                        qemu-io -c 'write -P 1 0 64k' img.qcow2 >/dev/null
                        qemu-img bitmap --add img.qcow2 bm0
                        qemu-img bitmap --add -g 128k img.qcow2 other"""),
                v("lazy-refcounts-dirty", """
                        qemu-img create -q -f qcow2 -o lazy_refcounts=on img.qcow2 4M
                        qemu-io -c 'write -P 1 0 64k' -c 'write -P 2 1M 4k' -c 'sigraise 9' img.qcow2 >/dev/null 2>&1 || true
                        qemu-img info img.qcow2 | grep -q 'cleanly shut down: no'"""),
                // clusters allocated but holes in the file: QEMU reports them as reading zeros (map "zero": true)
                v("preallocation-metadata", """
                        qemu-img create -q -f qcow2 -o preallocation=metadata,cluster_size=4k img.qcow2 4M
                        qemu-io -c 'write -P 1 1M 64k' -c 'write -z 2M 64k' -c 'write -P 2 3M 512' img.qcow2 >/dev/null"""),
                v("preallocation-metadata-data-file", """
                        qemu-img create -q -f qcow2 -o preallocation=metadata,data_file=$PWD/data.raw img.qcow2 4M
                        qemu-io -c 'write -P 1 1M 64k' img.qcow2 >/dev/null"""),
                v("tiny-image", "qemu-img create -q -f qcow2 img.qcow2 512"),
                v("empty-image", "qemu-img create -q -f qcow2 img.qcow2 0"),
                v("e2image-Q", """
                        truncate -s 32M fs.img
                        mke2fs -q -F -t ext4 -b 1024 fs.img
                        debugfs -w -R 'mkdir somedir' fs.img >/dev/null 2>&1
                        e2image -Q fs.img img.qcow2"""),
                v("chain-sparse-raw-base", """
                        mixed base.raw 4M
                        qemu-img create -q -f qcow2 -b base.raw -F raw img.qcow2 4M
                        qemu-io -c 'write -P 4 64k 64k' img.qcow2 >/dev/null"""),
                new Variant("raw-input", "img.raw", "mixed img.raw 3M; rnd img.raw 3071 1"),
                new Variant("raw-input-unaligned-tail", "img.raw", "head -c 100000 /dev/urandom > img.raw"));
    }

    @TestFactory
    Stream<DynamicTest> readsLikeQemu() {
        return variants().stream().map(variant -> DynamicTest.dynamicTest(variant.name(), () -> check(variant)));
    }

    private static void check(Variant variant) throws IOException {
        String image = variant.build(root);
        Path dir = Path.of(image).getParent();

        // Data: byte for byte against qemu-img convert -O raw.
        String expected = dir.resolve("expected.raw").toString();
        String actual = dir.resolve("actual.raw").toString();
        Qemu.img(dir, "convert", "-O", "raw", image, expected);
        Qemu.qcow4j("convert", "-O", "raw", image, actual).ok();
        assertEquals(Files.size(Path.of(expected)), Files.size(Path.of(actual)), "raw size");
        assertEquals(-1L, Files.mismatch(Path.of(expected), Path.of(actual)), "first differing byte of convert -O raw");

        // info: every field, JSON and text, with and without the backing chain.
        for (String chain : new String[] {"--backing-chain", "-U"}) {
            String want = Qemu.img(dir, "info", "--output=json", chain, image).out();
            String got = Qemu.qcow4j("info", "--output=json", chain, image).ok().out();
            assertEquals(JSON.readTree(want).toPrettyString(), JSON.readTree(got).toPrettyString(), "info --output=json " + chain);
            assertEquals(want, got, "info --output=json " + chain + " (layout)");
        }
        assertEquals(Qemu.img(dir, "info", "--backing-chain", image).out(),
                Qemu.qcow4j("info", "--backing-chain", image).ok().out(), "info (human)");
        assertEquals(Qemu.img(dir, "info", image).out(), Qemu.qcow4j("info", image).ok().out(), "info (human)");

        // map: the same extents.
        {
            String wantMap = Qemu.img(dir, "map", "--output=json", image).out();
            String gotMap = Qemu.qcow4j("map", "--output=json", image).ok().out();
            assertEquals(JSON.readTree(wantMap).toPrettyString(), JSON.readTree(gotMap).toPrettyString(), "map --output=json");
            assertEquals(wantMap, gotMap, "map --output=json (layout)");
            Qemu.Result humanMap = Qemu.run(dir, "qemu-img", "map", image);
            Qemu.Result ours = Qemu.qcow4j("map", image);
            assertEquals(humanMap.exit() == 0 ? 0 : 1, ours.exit(), "map (human) exit: " + humanMap.err() + ours.err());
            if (humanMap.exit() == 0) {
                assertEquals(humanMap.out(), ours.out(), "map (human)");
            }
        }
        assertTrue(Files.deleteIfExists(Path.of(actual)));
    }
}
