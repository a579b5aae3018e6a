package org.qcow4j.io;

/**
 * How a file is opened, in QEMU's terms (block.c's permissions, block/file-posix.c's lock bytes): the permissions
 * this open uses and those it lets other processes have. A permission bit i used is a shared lock on byte 100 + i;
 * one not shared is a shared lock on byte 200 + i. Opening checks that no other process holds byte 200 + i for a
 * permission used, nor byte 100 + i for one not shared. The values below are what QEMU 7.2 takes, read off
 * {@code /proc/locks} while qemu-io and qemu-nbd held images.
 */
public enum Access {
    /** Reads a few bytes without taking part in locking: probing the format (QEMU probes before it locks). */
    PROBE(false, 0, Access.P_ALL),
    /** Reads whatever others do: {@code -U} / {@code force-share=on} (lock byte 100). */
    SHARED_READ(false, Access.P_READ, Access.P_ALL),
    /** Reads an image; nobody else may write or resize it meanwhile (bytes 100, 201, 203). */
    READ(false, Access.P_READ, Access.P_ALL & ~(Access.P_WRITE | Access.P_RESIZE)),
    /** Writes an image; nobody else may write or resize it, or read it without {@code -U} (100, 101, 103, 201, 203). */
    WRITE(true, Access.P_READ | Access.P_WRITE | Access.P_RESIZE, Access.P_ALL & ~(Access.P_WRITE | Access.P_RESIZE)),
    /**
     * An image's external data file read with it: QEMU's data child shares the write permission (its image's locks
     * keep other writers out), so only bytes 100 and 203.
     */
    DATA_FILE_READ(false, Access.P_READ, Access.P_ALL & ~Access.P_RESIZE),
    /** An image's external data file written with it: as {@link #DATA_FILE_READ}, writing (100, 101, 103, 203). */
    DATA_FILE_WRITE(true, Access.P_READ | Access.P_WRITE | Access.P_RESIZE, Access.P_ALL & ~Access.P_RESIZE),
    /** WRITE's locks on a file about to be replaced by a new one (create, convert over an existing output). */
    REPLACE(false, Access.P_READ | Access.P_WRITE | Access.P_RESIZE, Access.P_ALL & ~(Access.P_WRITE | Access.P_RESIZE));

    /** QEMU's BLK_PERM_* bits that take part in locking (consistent read, write, write unchanged, resize), and their
     * names in its messages. */
    static final int P_READ = 1;
    static final int P_WRITE = 2;
    static final int P_WRITE_UNCHANGED = 4;
    static final int P_RESIZE = 8;
    static final int P_ALL = 15;
    static final String[] NAMES = {"consistent read", "write", "write unchanged", "resize"};
    /** The lock byte of permission bit i used, and of permission bit i not shared. */
    static final int PERM_BASE = 100;
    static final int SHARED_BASE = 200;

    private final boolean writable;
    private final int perm;
    private final int shared;

    Access(boolean writable, int perm, int shared) {
        this.writable = writable;
        this.perm = perm;
        this.shared = shared;
    }

    /** Whether the channel must be writable. */
    public boolean writable() {
        return writable;
    }

    int perm() {
        return perm;
    }

    int shared() {
        return shared;
    }
}
