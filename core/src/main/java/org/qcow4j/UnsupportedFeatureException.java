package org.qcow4j;

/**
 * The image uses a feature this version of qcow4j cannot handle (encryption, an unknown incompatible
 * feature bit, a backing protocol other than a local file). Refused by name, never read as garbage.
 */
public class UnsupportedFeatureException extends QcowException {
    private static final long serialVersionUID = 1L;
    private final String feature;

    public UnsupportedFeatureException(String file, String feature) {
        super(file, "unsupported feature: " + feature);
        this.feature = feature;
    }

    /** The feature's name, e.g. {@code "LUKS encryption"}. */
    public String feature() {
        return feature;
    }
}
