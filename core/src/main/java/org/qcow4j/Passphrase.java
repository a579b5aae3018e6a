package org.qcow4j;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * The passphrase of an encrypted image (QEMU's {@code encrypt.key-secret}): the bytes of a LUKS key slot's password,
 * or of a legacy AES key. Kept as bytes, never printed ({@link #toString} hides it); {@link #destroy} zeroes it.
 */
public final class Passphrase {
    private final byte[] bytes;

    private Passphrase(byte[] bytes) {
        this.bytes = bytes;
    }

    /** The passphrase {@code bytes} (copied: zero your own array when done). */
    public static Passphrase of(byte[] bytes) {
        return new Passphrase(bytes.clone());
    }

    /** The UTF-8 bytes of {@code chars}, as QEMU takes a secret's text (copied: zero your own array when done). */
    public static Passphrase of(char[] chars) {
        ByteBuffer b = StandardCharsets.UTF_8.encode(CharBuffer.wrap(chars));
        byte[] out = new byte[b.remaining()];
        b.get(out);
        if (b.hasArray()) {
            Arrays.fill(b.array(), (byte) 0);
        }
        return new Passphrase(out);
    }

    /** A copy of the bytes; zero it when done. */
    public byte[] bytes() {
        return bytes.clone();
    }

    /** Zeroes the passphrase; images already unlocked with it stay open. */
    public void destroy() {
        Arrays.fill(bytes, (byte) 0);
    }

    @Override
    public String toString() {
        return "Passphrase[hidden]";
    }
}
