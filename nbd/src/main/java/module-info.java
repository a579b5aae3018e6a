/**
 * An NBD server (the fixed-newstyle protocol as qemu-nbd 7.2 speaks it) over qcow4j's images: any
 * {@link org.qcow4j.DiskImage} served read-only, any {@link org.qcow4j.WritableImage} read-write, over a Unix socket or
 * TCP. Start at {@link org.qcow4j.nbd.NbdServer}; the protocol engine ({@code org.qcow4j.nbd.server}) is not exported.
 */
module org.qcow4j.nbd {
    requires transitive org.qcow4j.core;

    exports org.qcow4j.nbd;
}
