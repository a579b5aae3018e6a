package org.qcow4j;

/**
 * A write the image refuses as a matter of policy, not damage: the image was opened read-only (its corrupt bit is
 * set), or the write would turn a raw image whose format was probed into something that probes as qcow2 (QEMU
 * restricts block 0 of probed raw images the same way).
 */
public class WriteRefusedException extends QcowException {
    private static final long serialVersionUID = 1L;

    public WriteRefusedException(String file, String message) {
        super(file, message);
    }
}
