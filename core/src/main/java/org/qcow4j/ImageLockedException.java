package org.qcow4j;

/**
 * Another process uses the image in a way this open cannot share, as QEMU's image locking says: a running VM or
 * {@code qemu-nbd} writing it, or a reader that does not let others write. The message is QEMU's ({@code Failed to
 * get "write" lock}, {@code Failed to get shared "write" lock}); opening read-only with {@link
 * OpenOptions#withForceShare} reads an image whatever others do.
 */
public class ImageLockedException extends QcowException {
    private static final long serialVersionUID = 1L;
    private final String permission;
    private final boolean shared;

    /**
     * @param permission QEMU's name of the permission that could not be had: "consistent read", "write",
     *                   "write unchanged" or "resize"
     * @param shared     true when another process holds the permission this open does not share; false when another
     *                   process does not share a permission this open needs
     */
    public ImageLockedException(String file, String permission, boolean shared) {
        super(file, "Failed to get " + (shared ? "shared " : "") + "\"" + permission + "\" lock");
        this.permission = permission;
        this.shared = shared;
    }

    /** The permission QEMU names in its message. */
    public String permission() {
        return permission;
    }

    /** Whether the lock was a shared one ("Failed to get shared ..."). */
    public boolean shared() {
        return shared;
    }
}
