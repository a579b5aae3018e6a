package org.qcow4j;

/**
 * The image uses a feature this version of qcow4j cannot handle (encryption, an unknown incompatible
 * feature bit, a backing protocol other than a local file). Refused by name, never read as garbage.
 */
public class UnsupportedFeatureException extends QcowException {
    private static final long serialVersionUID = 1L;
    private final String feature;

    public UnsupportedFeatureException(String file, String feature) {
        this(file, feature, null);
    }

    /** @param qemuWords the sentence QEMU 7.2 refuses the same image with, if it refuses it too */
    public UnsupportedFeatureException(String file, String feature, String qemuWords) {
        super(file, "unsupported feature: " + feature, null, qemuWords);
        this.feature = feature;
    }

    /** The feature's name, e.g. {@code "LUKS encryption"}. */
    public String feature() {
        return feature;
    }
}
