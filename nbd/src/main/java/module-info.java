/**
 * An NBD server (the fixed-newstyle protocol as qemu-nbd 7.2 speaks it) over qcow4j's images: any
 * {@link org.qcow4j.DiskImage} served read-only, any {@link org.qcow4j.WritableImage} read-write, over a Unix socket or
 * TCP. Start at {@link org.qcow4j.nbd.NbdServer}. And a client: {@link org.qcow4j.nbd.NbdClient} opens an NBD export as a
 * raw image. The protocol engines ({@code org.qcow4j.nbd.server}, {@code org.qcow4j.nbd.client}) are not exported.
 */
module org.qcow4j.nbd {
    requires transitive org.qcow4j.core;

    exports org.qcow4j.nbd;
}
