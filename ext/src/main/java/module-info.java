/**
 * ext2/3/4 metadata imaging as e2fsprogs' {@code e2image} does it: a filesystem's metadata blocks as a disk image
 * that qcow4j's converters write as a packed qcow2 ({@code -Q}) or a sparse raw image ({@code -r}). Start at
 * {@link org.qcow4j.ext.ExtMetadata}.
 */
module org.qcow4j.ext {
    requires transitive org.qcow4j.core;

    exports org.qcow4j.ext;
}
