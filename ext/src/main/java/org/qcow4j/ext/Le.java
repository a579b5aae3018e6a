package org.qcow4j.ext;

/**
 * Little-endian fields of on-disk structures held in a {@code byte[]}. Plain array loads and shifts: the inode scan
 * decodes a few fields of every inode in use, mostly before the JIT has compiled anything, and an interpreted
 * {@code ByteBuffer.getInt} is a chain of calls where this is a dozen bytecodes.
 */
final class Le {
    private Le() {
    }

    static int u16(byte[] b, int offset) {
        return (b[offset] & 0xFF) | (b[offset + 1] & 0xFF) << 8;
    }

    static int i32(byte[] b, int offset) {
        return (b[offset] & 0xFF) | (b[offset + 1] & 0xFF) << 8 | (b[offset + 2] & 0xFF) << 16 | b[offset + 3] << 24;
    }

    static long u32(byte[] b, int offset) {
        return i32(b, offset) & 0xFFFF_FFFFL;
    }
}
