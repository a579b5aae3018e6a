package org.qcow4j.format;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;
import org.qcow4j.FormatException;
import org.qcow4j.UnsupportedFeatureException;

/** Header parsing on hand-made buffers: the pure layer, without files. */
class HeaderTest {
    private static final int CLUSTER = 65536;
    private static final long FILE_LENGTH = 4 * CLUSTER;

    /** A valid v3 header: reftable at cluster 1, L1 (1 entry) at cluster 3, 1 GiB virtual size is too big: 256 MiB. */
    private static ByteBuffer v3() {
        ByteBuffer b = ByteBuffer.allocate(CLUSTER);
        b.putInt(0, Header.MAGIC).putInt(4, 3).putInt(20, 16).putLong(24, 256L << 20);
        b.putInt(36, 1).putLong(40, 3L * CLUSTER).putLong(48, CLUSTER).putInt(56, 1);
        b.putInt(96, 4).putInt(100, 112);
        return b;
    }

    private static Header parse(ByteBuffer b) throws Exception {
        return Header.parse(b, "t.qcow2", FILE_LENGTH);
    }

    @Test
    void parsesAValidHeaderWithExtensions() throws Exception {
        ByteBuffer b = v3();
        int at = 112;
        b.putInt(at, Header.EXT_BACKING_FORMAT).putInt(at + 4, 5).put(at + 8, "qcow2".getBytes(StandardCharsets.US_ASCII), 0, 5);
        at += 16;
        b.putInt(at, 0x12345678).putInt(at + 4, 3); // unknown: kept
        at += 16;
        b.putInt(at, Header.EXT_END);
        b.putLong(8, 1024).putInt(16, 8).put(1024, "base.img".getBytes(StandardCharsets.US_ASCII));
        Header h = parse(b);
        assertEquals(3, h.version());
        assertEquals(256L << 20, h.virtualSize());
        assertEquals("qcow2", h.backingFormat());
        assertEquals("base.img", h.backingFile());
        assertEquals(1, h.unknownExtensions().size());
        assertEquals(16, h.refcountBits());
        assertEquals("zlib", h.compressionTypeName());
    }

    /**
     * A bitmaps extension is written whenever the header carries one (QEMU's nb_bitmaps > 0), version 2 included (an
     * amend's downgrade of an image with bitmaps); one whose autoclear bit is clear is stale, and QEMU's read-write open
     * forgets it (withoutStaleBitmaps).
     */
    @Test
    void aBitmapsExtensionIsKeptWhileLiveInVersion2TooAndDroppedWhenStale() throws Exception {
        ByteBuffer b = v3();
        b.putInt(112, Header.EXT_BITMAPS).putInt(116, BitmapsExtension.SIZE).putInt(120, 1).putInt(124, 0)
                .putLong(128, 40).putLong(136, 2L * CLUSTER).putInt(144, Header.EXT_END);
        Header stale = parse(b);
        assertTrue(stale.bitmaps() != null && !stale.has(Feature.BITMAPS));
        assertEquals(null, stale.withoutStaleBitmaps().bitmaps());
        b.putLong(88, Feature.BITMAPS.mask());
        Header live = parse(b);
        assertEquals(live.bitmaps(), live.withoutStaleBitmaps().bitmaps());
        ByteBuffer v2 = ByteBuffer.wrap(live.withFeatures(2, 0, 0, 0).qemuCluster0());
        assertEquals(Header.EXT_BITMAPS, v2.getInt(Header.V2_HEADER_LENGTH));
        assertEquals(2L * CLUSTER, v2.getLong(Header.V2_HEADER_LENGTH + 24));
        ByteBuffer forgotten = ByteBuffer.wrap(stale.withoutStaleBitmaps().withFeatures(2, 0, 0, 0).qemuCluster0());
        assertEquals(Header.EXT_END, forgotten.getInt(Header.V2_HEADER_LENGTH));
    }

    /** QEMU's report_unsupported_feature: the table's names (a short entry zero-padded), then the unnamed mask. */
    @Test
    void unknownIncompatibleFeaturesAreWordedAsQemuWordsThem() throws Exception {
        ByteBuffer b = v3();
        b.putLong(72, 0xe000000000000000L);
        assertEquals("Unsupported qcow2 feature(s): Unknown incompatible feature: e000000000000000",
                assertThrows(UnsupportedFeatureException.class, () -> parse(b)).qemuWords());
        byte[] name = "Test feature".getBytes(StandardCharsets.US_ASCII);
        b.putInt(112, Header.EXT_FEATURE_TABLE).putInt(116, 2 + name.length).put(120, (byte) 0).put(121, (byte) 63)
                .put(122, name).putInt(136, Header.EXT_END); // one 14-byte entry, as iotest 036 writes it
        UnsupportedFeatureException e = assertThrows(UnsupportedFeatureException.class, () -> parse(b));
        assertEquals("Unsupported qcow2 feature(s): Test feature, Unknown incompatible feature: 6000000000000000",
                e.qemuWords());
        assertTrue(e.getMessage().contains("incompatible feature bit 63 (Test feature)"), e.getMessage());
    }

    @Test
    void namesTheFieldAndValueOfEachBadField() {
        assertRefused(b -> b.putInt(0, 0x12345678), "magic = 0x12345678");
        assertRefused(b -> b.putInt(4, 4), "version = 4");
        assertRefused(b -> b.putInt(20, 22), "cluster_bits = 22");
        assertRefused(b -> b.putInt(100, 100), "header_length = 100");
        assertRefused(b -> b.putInt(96, 7), "refcount_order = 7");
        assertRefused(b -> b.putInt(36, 0x7fffffff), "l1_size = 2147483647");
        assertRefused(b -> b.putLong(24, 1L << 40), "l1_size = 1: L1 table too small");
        assertRefused(b -> b.putLong(24, 1L << 55), "size = 36028797018963968: virtual size too large");
        assertRefused(b -> b.putLong(24, -1L), "size = 18446744073709551615");
        assertRefused(b -> b.putLong(40, 3L * CLUSTER + 512), "l1_table_offset = 0x30200");
        assertRefused(b -> b.putLong(48, 16L * CLUSTER), "refcount_table_offset = 0x100000");
        assertRefused(b -> b.put(104, (byte) 1), "compression_type = 1");
        assertRefused(b -> b.put(104, (byte) 2).putLong(72, 1L << 3), "compression_type = 2: unknown");
        assertRefused(b -> b.putInt(20, 13).putLong(72, 1L << 4), "cluster_bits = 13: extended L2");
        assertRefused(b -> b.putLong(8, 65530).putInt(16, 20), "backing_file_size = 20");
        // ImageReadFuzzTest's crash-backing-name-nul: Path.of threw InvalidPathException on such a name
        assertRefused(b -> b.putLong(8, 1024).putInt(16, 6).put(1024, new byte[] {'b', 0, 'a', 's', 'e', 0}),
                "backing_file = 'b\\0ase\\0': file name contains a NUL byte");
    }

    @Test
    void refusesFilesTooShortForTheHeaderAtEveryLength() {
        for (int len : new int[] {0, 3, 4, 7, 8, 71, 103}) {
            ByteBuffer b = v3().limit(len).slice();
            FormatException e = assertThrows(FormatException.class, () -> Header.parse(b, "t.qcow2", len), "length " + len);
            assertTrue(e.getMessage().contains("header = " + len + " bytes"), e.getMessage());
        }
    }

    @Test
    void refusesUnknownIncompatibleBitsByName() {
        ByteBuffer b = v3();
        b.putLong(72, 1L << 20);
        UnsupportedFeatureException e = assertThrows(UnsupportedFeatureException.class, () -> parse(b));
        assertTrue(e.getMessage().contains("incompatible feature bit 20"), e.getMessage());
    }

    @Test
    void readsTheEncryptionHeaderPointerAndChecksIt() throws Exception {
        ByteBuffer luks = v3();
        luks.putInt(32, 2);
        FormatException missing = assertThrows(FormatException.class, () -> parse(luks));
        assertEquals("Missing CRYPTO header for crypt method 2", missing.qemuWords());
        luks.putInt(112, Header.EXT_CRYPTO).putInt(116, 16).putLong(120, 2L * CLUSTER).putLong(128, 4096);
        Header h = parse(luks);
        assertEquals(new CryptoExtension(2L * CLUSTER, 4096), h.crypto());
        byte[] written = h.toBytes();
        assertArrayEquals(java.util.Arrays.copyOf(luks.array(), written.length), written);
        luks.putLong(120, 2L * CLUSTER + 512);
        assertEquals("Encryption header offset '131584' is not a multiple of cluster size '65536'",
                assertThrows(FormatException.class, () -> parse(luks)).qemuWords());
        luks.putLong(120, 3L * CLUSTER).putLong(128, 2L * CLUSTER);
        assertRefusedAs(luks, "lies outside the file");
        luks.putLong(120, 2L * CLUSTER).putLong(128, 4096).putInt(32, 1);
        assertEquals("CRYPTO header extension only expected with LUKS encryption method",
                assertThrows(FormatException.class, () -> parse(luks)).qemuWords());
        luks.putInt(32, 7).putInt(112, Header.EXT_END);
        assertRefusedAs(luks, "unknown encryption method");
    }

    private static void assertRefusedAs(ByteBuffer b, String expected) {
        FormatException e = assertThrows(FormatException.class, () -> parse(b));
        assertTrue(e.getMessage().contains(expected), () -> "expected '" + expected + "' in: " + e.getMessage());
    }

    private interface Patch {
        void apply(ByteBuffer b);
    }

    private static void assertRefused(Patch patch, String expected) {
        ByteBuffer b = v3();
        patch.apply(b);
        FormatException e = assertThrows(FormatException.class, () -> parse(b));
        assertTrue(e.getMessage().startsWith("t.qcow2: "), e.getMessage());
        assertTrue(e.getMessage().contains(expected), () -> "expected '" + expected + "' in: " + e.getMessage());
    }
}
