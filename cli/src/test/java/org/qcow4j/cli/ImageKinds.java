package org.qcow4j.cli;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The image kinds the tests of compare, resize, dd and measure run over, made with qemu-img and qemu-io in a test's
 * directory: a plain image with data, zeros and discards; a chain of three over a raw base shorter than the top; a
 * compressed copy; extended L2 entries with partial subclusters; version 2; 512-byte and 2 MiB clusters; a 4 TiB
 * sparse image; a metadata-preallocated image; an image with an internal snapshot taken before later writes. Each
 * is made once per call.
 */
final class ImageKinds {
    private ImageKinds() {
    }

    /** Makes every kind in {@code dir}; returns name to top image file (absolute). */
    static Map<String, Path> make(Path dir) {
        Map<String, Path> kinds = new LinkedHashMap<>();
        kinds.put("plain", qcow2(dir, "plain", "", "64M", "write -P 1 0 1M", "write -P 2 3M 300k", "write -z 2M 128k",
                "write -P 3 60M 4M", "discard 60M 64k"));
        Path base = dir.resolve("base.raw");
        Qemu.img(dir, "create", "-q", "-f", "raw", base.toString(), "32M");
        Qemu.io(dir, base.toString(), "write -P 7 0 8M", "write -P 8 30M 2M");
        Path mid = dir.resolve("mid.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", base.toString(), "-F", "raw", mid.toString(), "48M");
        Qemu.io(dir, mid.toString(), "write -P 9 1M 1M", "write -z 4M 64k", "write -P 10 40M 1M");
        Path top = dir.resolve("chain.qcow2");
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", mid.toString(), "-F", "qcow2", top.toString(), "64M");
        Qemu.io(dir, top.toString(), "write -P 11 1536k 64k", "write -z 7M 1M", "write -P 12 50M 512k");
        kinds.put("chain", top);
        Path compressed = dir.resolve("compressed.qcow2");
        Qemu.img(dir, "convert", "-c", "-O", "qcow2", kinds.get("plain").toString(), compressed.toString());
        kinds.put("compressed", compressed);
        kinds.put("extl2", qcow2(dir, "extl2", "extended_l2=on", "64M", "write -P 4 0 5k", "write -P 5 100k 3k",
                "write -z 1M 64k", "write -P 6 33M 1M"));
        kinds.put("v2", qcow2(dir, "v2", "compat=0.10", "64M", "write -P 1 0 1M", "write -z 2M 128k",
                "write -P 2 40M 100k"));
        kinds.put("c512", qcow2(dir, "c512", "cluster_size=512", "8M", "write -P 1 0 100k", "write -P 2 5M 1k",
                "write -z 6M 4k"));
        kinds.put("c2m", qcow2(dir, "c2m", "cluster_size=2M", "64M", "write -P 1 1M 3M", "write -P 2 40M 64k"));
        kinds.put("sparse4t", qcow2(dir, "sparse4t", "", "4T", "write -P 1 0 64k", "write -P 2 2T 1M",
                "write -P 3 4095G 64k"));
        // data clusters that are holes in the file: QEMU's block status reports them as zeros
        kinds.put("prealloc", qcow2(dir, "prealloc", "preallocation=metadata", "16M", "write -P 1 1M 64k",
                "write -z 2M 64k", "write -P 2 9M 4k"));
        Path snap = qcow2(dir, "snap", "", "64M", "write -P 1 0 2M", "write -P 2 10M 1M");
        Qemu.img(dir, "snapshot", "-c", "s1", snap.toString());
        Qemu.io(dir, snap.toString(), "write -P 3 512k 1M", "discard 10M 1M");
        kinds.put("snap", snap);
        return kinds;
    }

    private static Path qcow2(Path dir, String name, String options, String size, String... writes) {
        Path p = dir.resolve(name + ".qcow2");
        if (options.isEmpty()) {
            Qemu.img(dir, "create", "-q", "-f", "qcow2", p.toString(), size);
        } else {
            Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", options, p.toString(), size);
        }
        Qemu.io(dir, p.toString(), writes);
        return p;
    }
}
