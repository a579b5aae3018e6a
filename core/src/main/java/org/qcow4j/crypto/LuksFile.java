package org.qcow4j.crypto;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.SecureRandom;
import java.util.Arrays;

/**
 * QEMU's {@code luks} image format (block/crypto.c): a LUKS1 header with its key material, then the encrypted payload
 * of the disk's size, sectors numbered from the payload's start. Only made here ({@code qemu-img create -f luks}).
 */
public final class LuksFile {
    private LuksFile() {
    }

    /** Makes {@code path} a LUKS file of a {@code size}-byte disk (sparse: a payload never written reads as noise). */
    public static void create(Path path, long size, CipherSpec spec, byte[] passphrase, long iterTimeMs) throws IOException {
        Luks.Created c = Luks.create(spec, passphrase, iterTimeMs, 0, new SecureRandom());
        try (FileChannel f = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer b = ByteBuffer.wrap(c.region());
            while (b.hasRemaining()) {
                f.write(b, b.position());
            }
            long end = c.header().payloadOffset() + size;
            if (f.size() < end) {
                f.write(ByteBuffer.allocate(1), end - 1);
            }
        } finally {
            Arrays.fill(c.region(), (byte) 0);
            c.cipher().close();
        }
    }
}
