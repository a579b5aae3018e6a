/**
 * qcow4j's library: QEMU's qcow2 disk images (and raw files) opened, read, written in place, created, checked,
 * repaired and converted, with no QEMU at run time.
 *
 * <p>Start at {@link org.qcow4j.Images}. The API is {@code org.qcow4j} (images, options, results, exceptions) and
 * {@code org.qcow4j.format} (the on-disk structures, as pure functions over byte buffers, for tools that inspect
 * images field by field). The engine ({@code org.qcow4j.qcow2}, {@code org.qcow4j.raw}, {@code org.qcow4j.ops},
 * {@code org.qcow4j.io}) is not exported.
 */
module org.qcow4j.core {
    requires com.github.luben.zstd_jni;
    requires java.management; // thread CPU time, for the LUKS iteration benchmark as QEMU times it

    exports org.qcow4j;
    exports org.qcow4j.format;
}
