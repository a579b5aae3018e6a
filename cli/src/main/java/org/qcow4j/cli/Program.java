package org.qcow4j.cli;

import java.util.Locale;

/**
 * The program qcow4j runs as: itself, or a drop-in for the QEMU tool whose name it was invoked by (a link named
 * {@code qemu-img}, {@code qemu-io} or {@code qemu-nbd} to the launcher, which passes the name it was called by). A drop-in takes
 * that tool's command line, prints its usage, help and version, and prefixes its messages with its name.
 */
enum Program {
    QCOW4J("qcow4j"),
    QEMU_IMG("qemu-img"),
    QEMU_IO("qemu-io"),
    QEMU_NBD("qemu-nbd");

    /** The QEMU release whose tools the drop-ins stand in for (their {@code --version} says so). */
    static final String QEMU_VERSION = "7.2.0";

    private final String name;

    Program(String name) {
        this.name = name;
    }

    /** The program a launcher was invoked as, by the last element of its path ("/usr/local/bin/qemu-img"). */
    static Program invokedAs(String argv0) {
        if (argv0 == null) {
            return QCOW4J;
        }
        String base = argv0.substring(argv0.lastIndexOf('/') + 1).toLowerCase(Locale.ROOT);
        for (Program p : values()) {
            if (p.name.equals(base)) {
                return p;
            }
        }
        return QCOW4J;
    }

    /** The name messages start with ("qemu-img: ..."). */
    String displayName() {
        return name;
    }

    /**
     * The line after a command-line mistake: QEMU's tools point at their whole help, qcow4j at the command's.
     * Null for qemu-io, which prints its usage instead.
     */
    String helpHint(String command) {
        return switch (this) {
            case QCOW4J -> "Try 'qcow4j " + command + " --help' for more information.";
            case QEMU_IMG -> "Try 'qemu-img --help' for more information";
            case QEMU_IO -> null;
            case QEMU_NBD -> "qemu-nbd: Try `qemu-nbd --help' for more information.";
        };
    }

    /** {@code --version}: qcow4j's own, or the QEMU tool's first lines with qcow4j's version in brackets. */
    String version(String qcow4jVersion) {
        if (this == QCOW4J) {
            return qcow4jVersion;
        }
        if (this == QEMU_NBD) {
            return name + " " + QEMU_VERSION + " (" + qcow4jVersion + ")\nWritten by Anthony Liguori.\n\n"
                    + "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers";
        }
        return name + " version " + QEMU_VERSION + " (" + qcow4jVersion + ")\n"
                + "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers";
    }
}
