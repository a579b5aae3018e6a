package org.qcow4j;

/**
 * The image uses a feature this version of qcow4j cannot handle (encryption, an unknown incompatible
 * feature bit, a backing protocol other than a local file). Refused by name, never read as garbage.
 */
public class UnsupportedFeatureException extends QcowException {
    private static final long serialVersionUID = 1L;
    private final String feature;
    private final String qemuWords;

    public UnsupportedFeatureException(String file, String feature) {
        this(file, feature, null);
    }

    /** @param qemuWords the sentence QEMU 7.2 refuses the same image with, if it refuses it too */
    public UnsupportedFeatureException(String file, String feature, String qemuWords) {
        super(file, "unsupported feature: " + feature);
        this.feature = feature;
        this.qemuWords = qemuWords;
    }

    /**
     * How QEMU 7.2 words its refusal of the same image (what follows "Could not open 'FILE': "), e.g.
     * {@code "Unsupported qcow2 feature(s): Unknown incompatible feature: 8000000000000000"}; null where QEMU reads
     * what qcow4j refuses.
     */
    public String qemuWords() {
        return qemuWords;
    }

    /** The feature's name, e.g. {@code "LUKS encryption"}. */
    public String feature() {
        return feature;
    }
}
