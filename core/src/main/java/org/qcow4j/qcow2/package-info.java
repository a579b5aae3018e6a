/**
 * Engine: the qcow2 driver. Opening an image and its backing chain ({@code ChainOpener}, {@code Qcow2Image}), the
 * guest-to-host mapping ({@code ClusterMap}) through a bounded cache ({@code TableCache}), compressed clusters
 * ({@code ClusterDecompressor}, {@code ClusterCompressor}), the allocator ({@code RefcountTable}), writes in place
 * ({@code Qcow2Updater}), new images written in one pass ({@code Qcow2Writer}), and check and repair
 * ({@code Qcow2Check} and its helpers). Reads on-disk structures only through {@link org.qcow4j.format}. Not exported.
 */
package org.qcow4j.qcow2;
