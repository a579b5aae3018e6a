package org.qcow4j;

import java.nio.file.Path;
import java.util.List;
import org.qcow4j.testing.FuzzTemplates;

/**
 * The small qcow2 images the coverage-guided read and write targets damage: 512-byte clusters (16 KiB ones for
 * extended L2) so that all metadata sits in the first KiB, which the fuzzer's bytes overwrite.
 */
final class FuzzedImages {
    /** Name, then the script that makes it (run in the fuzz directory; the overlay's base is made there too). */
    static final List<List<String>> KINDS = List.of(
            List.of("plain.qcow2", "qemu-img create -q -f qcow2 -o cluster_size=512 plain.qcow2 256k; qemu-io "
                    + "-c 'write -P 1 0 6k' -c 'write -z 16k 4k' -c 'write -P 2 100k 2k' -c 'discard 2k 1k' plain.qcow2"),
            List.of("zlib.qcow2", "seq 1 3000 > text.raw; qemu-img convert -q -c -O qcow2 -o cluster_size=512 "
                    + "text.raw zlib.qcow2"),
            List.of("zstd.qcow2", "seq 1 3000 > text.raw; qemu-img convert -q -c -O qcow2 -o "
                    + "cluster_size=512,compression_type=zstd text.raw zstd.qcow2"),
            List.of("snap.qcow2", "qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=8 snap.qcow2 128k; "
                    + "qemu-io -c 'write -P 3 0 3k' snap.qcow2; qemu-img snapshot -c s1 snap.qcow2; "
                    + "qemu-io -c 'write -P 4 1k 1k' snap.qcow2; qemu-img bitmap --add snap.qcow2 b1"),
            List.of("v2.qcow2", "qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=512 v2.qcow2 128k; "
                    + "qemu-io -c 'write -P 5 0 2k' -c 'write -z 8k 1k' v2.qcow2"),
            List.of("overlay.qcow2", "qemu-img create -q -f qcow2 -o cluster_size=512 base.qcow2 64k; "
                    + "qemu-io -c 'write -P 6 0 4k' base.qcow2; qemu-img create -q -f qcow2 -o cluster_size=512 "
                    + "-b base.qcow2 -F qcow2 overlay.qcow2 128k; qemu-io -c 'write -P 7 1k 2k' overlay.qcow2"),
            List.of("extl2.qcow2", "qemu-img create -q -f qcow2 -o cluster_size=16k,extended_l2=on,refcount_bits=1 "
                    + "extl2.qcow2 256k; qemu-io -c 'write -P 8 0 3k' -c 'write -z 8k 2k' -c 'write -P 9 40k 1k' "
                    + "extl2.qcow2"));

    private FuzzedImages() {
    }

    /**
     * The template {@code kind} (taken modulo the number of kinds) with its first bytes replaced by {@code prefix},
     * written to {@code name} in the fuzz directory.
     */
    static Path image(int kind, byte[] prefix, String name) {
        List<String> k = KINDS.get(Math.floorMod(kind, KINDS.size()));
        return FuzzTemplates.overwrite(name, FuzzTemplates.template(k.get(0), "exec >/dev/null; " + k.get(1)), prefix);
    }
}
