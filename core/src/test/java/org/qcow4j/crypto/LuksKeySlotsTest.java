package org.qcow4j.crypto;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.qcow4j.QcowException;

/**
 * {@link LuksKeySlots}' order of writes, which makes key slot changes crash-safe as QEMU's: a new key's material before
 * the header that activates it, an erased key's header before its material is overwritten.
 */
class LuksKeySlotsTest {
    private static final byte[] PASS = "123456".getBytes(StandardCharsets.UTF_8);
    private static final byte[] NEW = "hunter1".getBytes(StandardCharsets.UTF_8);

    /** A header region in memory that records where each write went. */
    private static final class Memory implements LuksKeySlots.Region {
        final byte[] bytes;
        final List<Long> writes = new ArrayList<>();

        Memory(byte[] bytes) {
            this.bytes = bytes;
        }

        @Override
        public ByteBuffer read(long offset, int length) {
            return ByteBuffer.wrap(bytes, (int) offset, length).slice();
        }

        @Override
        public void write(long offset, byte[] data) {
            System.arraycopy(data, 0, bytes, (int) offset, data.length);
            writes.add(offset);
        }
    }

    private static LuksHeader header(Memory m) throws Exception {
        return LuksHeader.parse(ByteBuffer.wrap(m.bytes), m.bytes.length, "x.qcow2");
    }

    private static DiskCipher unlock(Memory m, byte[] pass) throws Exception {
        return Luks.unlock(header(m), m, pass, "x.qcow2");
    }

    @Test
    void addWritesTheMaterialBeforeTheHeaderAndEraseTheHeaderFirst() throws Exception {
        Luks.Created c = Luks.create(CipherSpec.DEFAULT, PASS, 0, 1000, new SecureRandom());
        Memory m = new Memory(c.region().clone());
        LuksKeySlots.Change add = new LuksKeySlots.Change("active", 5L, null, new LuksKeySlots.Secret("sec1", NEW), 10L);
        LuksHeader h = LuksKeySlots.amend(header(m), m, add, PASS, false, "x.qcow2");
        long material = h.slots().get(5).keyOffsetSectors() * 512;
        assertEquals(List.of(material, 0L), m.writes);
        assertTrue(header(m).slots().get(5).active());
        assertTrue(header(m).slots().get(5).iterations() >= 1000);
        byte[] data = new byte[4096];
        byte[] enc = data.clone();
        c.cipher().encrypt(0, enc, 0, enc.length);
        try (DiskCipher d = unlock(m, NEW)) {
            d.decrypt(0, enc, 0, enc.length);
        }
        assertArrayEquals(data, enc);

        m.writes.clear();
        LuksKeySlots.Change erase = new LuksKeySlots.Change("inactive", null, new LuksKeySlots.Secret("sec0", PASS), null,
                null);
        h = LuksKeySlots.amend(header(m), m, erase, PASS, false, "x.qcow2");
        assertEquals(1 + LuksKeySlots.ERASE_ITERATIONS, m.writes.size());
        assertEquals(0L, m.writes.get(0));
        long slot0 = h.slots().get(0).keyOffsetSectors() * 512;
        assertTrue(m.writes.subList(1, m.writes.size()).stream().allMatch(w -> w == slot0), m.writes.toString());
        LuksHeader.KeySlot s0 = header(m).slots().get(0);
        assertTrue(!s0.active() && s0.iterations() == 0 && java.util.Arrays.equals(s0.salt(), new byte[32]));
        assertThrows(QcowException.class, () -> unlock(m, PASS));
        unlock(m, NEW).close();
        c.cipher().close();
    }
}
