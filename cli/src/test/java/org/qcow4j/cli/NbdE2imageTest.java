package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.UnixDomainSocketAddress;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.ext.ExtMetadata;
import org.qcow4j.ext.MetadataImage;
import org.qcow4j.nbd.NbdExport;
import org.qcow4j.nbd.NbdServer;

/**
 * e2image's own workflow (its manual: serve a {@code -Q} image with qemu-nbd to inspect a filesystem) with our
 * pieces: {@code ./qcow4j e2image -Q} of an ext4 made with {@code mkfs.ext4 -d}, served read-only by our server (and
 * the same metadata served straight from the filesystem, no file written), copied out with nbdcopy: e2fsck -fn
 * accepts each copy and debugfs lists the same directories as in the original.
 */
class NbdE2imageTest {
    @TempDir
    Path dir;

    private String ok(String... cmd) {
        return Qemu.run(dir, cmd).ok().out();
    }

    private String listing(String image) {
        return ok("debugfs", "-R", "ls -l /", image) + ok("debugfs", "-R", "ls -l /d1", image)
                + ok("debugfs", "-R", "ls -l /d1/d2", image)
                + ok("debugfs", "-R", "ls -l /many", image);
    }

    @Test
    void anE2imageServedAndCopiedOutIsTheFilesystemToE2fsckAndDebugfs() throws Exception {
        ok("bash", "-c", """
                set -e
                mkdir -p src/d1/d2 src/many
                echo hello > src/f1
                head -c 300000 /dev/urandom > src/d1/rand
                echo deep > src/d1/d2/leaf
                ln -s f1 src/link
                for i in $(seq 300); do echo $i > src/many/file_$i; done
                mkfs.ext4 -q -F -b 4096 -d src fs.img 32M
                """);
        Path fs = dir.resolve("fs.img");
        Qemu.Result r = Qemu.qcow4j("e2image", "-Q", fs.toString(), dir.resolve("fs.qcow2").toString());
        assertEquals(0, r.exit(), r.err());
        Path socket = dir.resolve("e2.sock");
        try (DiskImage qcow2 = Images.open(dir.resolve("fs.qcow2"));
             MetadataImage direct = ExtMetadata.image(fs, ExtMetadata.Options.defaults());
             NbdServer server = NbdServer.builder().export(NbdExport.readOnly("", qcow2))
                     .export(NbdExport.readOnly("direct", direct)).unixSocket(socket).maxConnections(0).start()) {
            Path bound = ((UnixDomainSocketAddress) server.address()).getPath();
            ok("nbdcopy", "nbd+unix:///?socket=" + bound, "copy.raw");
            ok("nbdcopy", "nbd+unix:///direct?socket=" + bound, "direct.raw");
        }
        String original = listing("fs.img");
        assertTrue(original.contains("rand") && original.contains("leaf") && original.contains("file_300"), original);
        for (String copy : List.of("copy.raw", "direct.raw")) {
            Qemu.Result fsck = Qemu.run(dir, "e2fsck", "-fn", copy);
            assertEquals(0, fsck.exit(), copy + ":\n" + fsck.out() + fsck.err());
            assertEquals(original, listing(copy), copy);
        }
    }
}
