/**
 * The NBD protocol engine, not exported: {@code Server} (listening, client limits, shutdown), {@code Connection}
 * (one client: requests read in order, run on its workers, answered as they complete), {@code Handshake} (options),
 * {@code Replies} (simple and structured replies, never interleaved), {@code ServedExport} (flags and the image
 * operations behind the commands), {@code Transport} (the socket) and {@code Protocol} (the numbers).
 */
package org.qcow4j.nbd.server;
