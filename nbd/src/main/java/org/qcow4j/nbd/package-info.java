/**
 * Serving images over NBD: {@link org.qcow4j.nbd.NbdServer} (built with its {@code Builder}) serves
 * {@link org.qcow4j.nbd.NbdExport}s, each an image with qemu-nbd's per-device options.
 */
package org.qcow4j.nbd;
