/**
 * The qcow2 on-disk structures as pure functions over byte buffers, each quoting its layout from QEMU's
 * {@code docs/interop/qcow2.txt}: {@link org.qcow4j.format.Header} (with its extensions), {@link
 * org.qcow4j.format.L1Entry}, {@link org.qcow4j.format.L2Entry} (the only place that knows L2 bits), {@link
 * org.qcow4j.format.RefcountBlock}, {@link org.qcow4j.format.ClusterGeometry} (address arithmetic), {@link
 * org.qcow4j.format.Snapshot}, {@link org.qcow4j.format.Bitmap} and {@link org.qcow4j.format.BitmapTable}, {@link
 * org.qcow4j.format.Feature}; and {@link org.qcow4j.format.CFormat}, the C number formats QEMU's messages use. No
 * I/O; depends on nothing in qcow4j but the API's exceptions. Exported for tools that inspect images field by field.
 */
package org.qcow4j.format;
