package org.qcow4j;

/**
 * An operation on whole images ({@link Images#rebase}, {@link Images#commit}, {@link Images#amend}) refused or failed
 * in a way qemu-img reports in words of its own: {@link #qemuMessage()} is the line qemu-img prints (without its
 * "qemu-img: " prefix), the message names file, field and value in qcow4j's words.
 */
public class ImageOperationException extends QcowException {
    private static final long serialVersionUID = 1L;
    private final String qemuMessage;

    public ImageOperationException(String file, String message, String qemuMessage) {
        this(file, message, qemuMessage, null);
    }

    public ImageOperationException(String file, String message, String qemuMessage, Throwable cause) {
        super(file, message, cause);
        this.qemuMessage = qemuMessage;
    }

    /** The line qemu-img 7.2 prints for the same failure, after its "qemu-img: ". */
    public String qemuMessage() {
        return qemuMessage;
    }
}
