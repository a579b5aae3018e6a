package org.qcow4j;

/**
 * A file an image needs does not exist: the image itself, or the backing file or external data file another image
 * names (then {@link #referrer()} is that image), so that a tool can word it as QEMU does ({@code Could not open
 * backing file: Could not open 'base.qcow2': No such file or directory}).
 */
public class MissingFileException extends QcowException {
    private static final long serialVersionUID = 1L;

    /** What the missing file is to the image being opened. */
    public enum Role {
        IMAGE("image"), BACKING_FILE("backing file"), DATA_FILE("external data file");

        private final String words;

        Role(String words) {
            this.words = words;
        }
    }

    private final Role role;
    private final String referrer;
    private final int depth;

    /**
     * @param referrer the image naming the missing file as its backing or data file; null for {@link Role#IMAGE}
     * @param depth    how far down the backing chain the missing file is: 0 for the image opened (or its data file),
     *                 1 for its backing file (or that one's data file)...
     */
    public MissingFileException(String file, Role role, String referrer, int depth) {
        super(file, "no such file" + (referrer == null ? "" : " (" + role.words + " of " + referrer + ")"));
        this.role = role;
        this.referrer = referrer;
        this.depth = depth;
    }

    public Role role() {
        return role;
    }

    /** The image naming the missing file, or null when the missing file is the image opened. */
    public String referrer() {
        return referrer;
    }

    /** How many backing files down the chain the missing file is (0: the image opened, or its data file). */
    public int depth() {
        return depth;
    }
}
