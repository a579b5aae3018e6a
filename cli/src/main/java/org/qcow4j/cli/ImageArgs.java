package org.qcow4j.cli;

import java.io.IOException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.InvalidTableException;
import org.qcow4j.MissingFileException;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.WritableImage;

/** Argument handling shared by the commands. */
final class ImageArgs {
    /** The block drivers QEMU 7.2's qemu-img knows ("Supported formats"): others are unknown to it too. */
    static final Set<String> QEMU_FORMATS = Set.of("blkdebug", "blklogwrites", "blkverify", "bochs", "cloop", "compress",
            "copy-before-write", "copy-on-read", "dmg", "file", "ftp", "ftps", "gluster", "host_cdrom", "host_device",
            "http", "https", "iscsi", "iser", "luks", "nbd", "nfs", "null-aio", "null-co", "nvme", "parallels",
            "preallocate", "qcow", "qcow2", "qed", "quorum", "raw", "rbd", "replication", "snapshot-access", "ssh",
            "throttle", "vdi", "vhdx", "vmdk", "vpc", "vvfat");

    private ImageArgs() {
    }

    /**
     * The file an image name on the command line names: QEMU's {@code file:} protocol prefix (how a name holding a
     * colon is written, {@code file:disk:1.qcow2}) is dropped; any other name is a path as given.
     */
    static Path path(String name) {
        return Path.of(withoutFilePrefix(name));
    }

    /** {@code name} without QEMU's {@code file:} protocol prefix, if it has one. */
    static String withoutFilePrefix(String name) {
        return name.startsWith("file:") ? name.substring("file:".length()) : name;
    }

    /**
     * The name QEMU shows for a local file (its {@code bs->filename}): a relative name that would read as a protocol
     * name ({@code a:3.qcow2}, a colon before any slash) gets {@code ./} before it.
     */
    static String qemuFilename(String file) {
        if (org.qcow4j.nbd.NbdClient.isNbdName(file)) {
            return file; // an NBD export's name, as QEMU's nbd driver makes it
        }
        int colon = file.indexOf(':');
        int slash = file.indexOf('/');
        return colon > 0 && (slash < 0 || colon < slash) ? "./" + file : file;
    }

    /**
     * Opens {@code filename} read-only with its backing chain, in the format given by {@code -f} (or probed), locked
     * as QEMU's readers lock unless {@code -U}.
     */
    static DiskImage open(CommandLine args, String filename) throws IOException {
        return open(args, filename, args.get("-f", null), Scope.CHAIN);
    }

    /** How much of an image a command opens, as the flags qemu-img opens it with say. */
    enum Scope {
        /** The image with its backing chain. */
        CHAIN,
        /** The image alone, its backing file named but not opened (QEMU's BDRV_O_NO_BACKING). */
        IMAGE,
        /**
         * The image alone and for its metadata only (BDRV_O_NO_BACKING | BDRV_O_NO_IO: qemu-img info): no secret
         * looked up, no external data file opened.
         */
        METADATA;

        OpenOptions apply(OpenOptions o) {
            return switch (this) {
                case CHAIN -> o;
                case IMAGE -> o.withoutBacking();
                case METADATA -> o.withoutBacking().withNoIo();
            };
        }
    }

    /** {@link #open(CommandLine, String)} in {@code format}, as much of it as {@code scope} says. */
    static DiskImage open(CommandLine args, String filename, String format, Scope scope) throws IOException {
        if (args.has("--image-opts") || filename.startsWith("json:")) {
            return openImageOpts(args, filename, scope);
        }
        return openByName(args, filename, format, scope);
    }

    /** {@code filename} as a file name even under {@code --image-opts} (the backing files info --backing-chain opens). */
    static DiskImage openByName(CommandLine args, String filename, String format, Scope scope) throws IOException {
        if (format != null && !format.equals("qcow2") && !format.equals("raw")) {
            if (!QEMU_FORMATS.contains(format)) {
                throw new IOException("Could not open '" + filename + "': Unknown driver '" + format + "'");
            }
            throw new UnsupportedFeatureException(filename, "image format '" + format + "' (qcow4j reads qcow2 and raw)");
        }
        if (org.qcow4j.nbd.NbdClient.isNbdName(filename)) {
            return openNbd(filename, format);
        }
        OpenOptions options = OpenOptions.defaults().withFormat(format).withForceShare(args.has("-U"));
        BlkdebugFilter blkdebug;
        try {
            blkdebug = BlkdebugFilter.below(filename); // blkdebug:CONFIG:FILE, its rules above the image FILE
        } catch (ImageSpec.Refused e) {
            throw new IOException("Could not open '" + filename + "': " + e.getMessage());
        }
        if (blkdebug != null) {
            String file = blkdebug.imageName();
            return blkdebug.wrap(openNamed(file, scope.apply(options)));
        }
        return openNamed(filename, scope.apply(options));
    }

    /**
     * The format of the image on an NBD export, probed as QEMU probes it among the formats qcow4j knows: "qcow2"
     * when it starts with qcow2's magic, else "raw".
     */
    private static String probeNbd(DiskImage image) throws IOException {
        if (image.size() < 4) {
            return "raw";
        }
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4);
        image.read(b, 0);
        return b.getInt(0) == 0x514649fb ? "qcow2" : "raw";
    }

    /**
     * The format of the image on a connected NBD export: {@code given}, else probed. qcow4j reads and writes raw
     * there ("nbd", the protocol driver named as the format, is raw too); anything else is refused by name, so a
     * qcow2 image on an export is never served as its raw bytes by mistake. The caller closes the image on a refusal.
     */
    static String rawOverNbd(DiskImage image, String given, String name) throws IOException {
        String format = given != null ? given : probeNbd(image);
        if (!format.equals("raw") && !format.equals("nbd")) {
            throw new UnsupportedFeatureException(name, "the format '" + format + "' over NBD (qcow4j reads and writes raw there)");
        }
        return format;
    }

    /** Opens the NBD export {@code filename} names for writing (convert -n's target), raw over it. */
    static WritableImage openNbdWritable(String filename, String format) throws IOException {
        WritableImage image = connectNbd(filename, false);
        try {
            rawOverNbd(image, format, filename);
            if (image.readOnly()) {
                throw new IOException("Could not open '" + filename + "': Block node is read-only");
            }
            return image;
        } catch (IOException | RuntimeException e) {
            image.close();
            throw e;
        }
    }

    /** Opens the NBD export {@code filename} names (read-only), raw over it; a qcow2 image on it is refused by name. */
    static DiskImage openNbd(String filename, String format) throws IOException {
        DiskImage image = connectNbd(filename, true);
        try {
            rawOverNbd(image, format, filename);
            return image;
        } catch (IOException | RuntimeException e) {
            image.close();
            throw e;
        }
    }

    /** The NBD export the name {@code filename} gives, connected; a bad name or a failed connection worded as qemu-img's. */
    private static WritableImage connectNbd(String filename, boolean readOnly) throws IOException {
        org.qcow4j.nbd.NbdClient.Target t;
        try {
            t = org.qcow4j.nbd.NbdClient.parse(filename);
        } catch (IllegalArgumentException e) {
            throw new IOException("Could not open '" + filename + "': " + e.getMessage());
        }
        try {
            return org.qcow4j.nbd.NbdClient.open(t, readOnly, false);
        } catch (IOException e) {
            throw new IOException("Could not open '" + filename + "': " + e.getMessage(), e);
        }
    }

    /** The NBD export an {@code --image-opts} or {@code json:} operand names, opened read-only; null if it names none. */
    private static DiskImage openNbdOpts(CommandLine args, String optstr) throws IOException {
        boolean json = optstr.startsWith("json:");
        String format = args.get("-f", null);
        ImageSpec spec;
        try {
            spec = json ? ImageSpec.of(optstr, format == null ? Map.of() : Map.of("driver", format))
                    : ImageSpec.of(null, QemuOpts.parse(optstr, "file", QemuOpts.Kind.WITH_ID, line -> { }));
        } catch (QemuOpts.Invalid | ImageSpec.Refused e) {
            return null; // worded by the ordinary path
        }
        if (spec.nbd() == null) {
            return null;
        }
        String prefix = "Could not open '" + optstr + "': ";
        DiskImage image;
        try {
            image = org.qcow4j.nbd.NbdClient.open(spec.nbd(), true, false, "nbd".equals(spec.format()) ? "nbd" : "raw");
        } catch (IOException e) {
            throw new IOException(prefix + e.getMessage(), e);
        }
        try {
            spec.checkFormatKeys(rawOverNbd(image, spec.format(), optstr));
            return image;
        } catch (ImageSpec.Refused e) {
            image.close();
            throw new IOException(prefix + e.getMessage());
        } catch (IOException | RuntimeException e) {
            image.close();
            throw e;
        }
    }

    /**
     * What a cache mode says (bdrv_parse_cache_mode): whether every write is flushed before it completes
     * ({@code writethrough}: the BlockBackend has no write cache), whether the host cache is bypassed
     * ({@code direct}: cache.direct) and whether flushes are skipped ({@code noFlush}: cache.no-flush).
     */
    record CacheMode(boolean writethrough, boolean direct, boolean noFlush) {
        /** bdrv_parse_cache_mode's words, or null for one it does not know. */
        static CacheMode of(String mode) {
            return switch (mode) {
                case "off", "none" -> new CacheMode(false, true, false);
                case "directsync" -> new CacheMode(true, true, false);
                case "writeback" -> new CacheMode(false, false, false);
                case "unsafe" -> new CacheMode(false, false, true);
                case "writethrough" -> new CacheMode(true, false, false);
                default -> null;
            };
        }
    }

    /**
     * An image operand resolved for commands that hand the library a file: the file, the format named for it (by
     * {@code -f} or the option string's driver; null: probe) and the options the operand gives.
     */
    record Operand(Path path, String format, OpenOptions options) {
    }

    /**
     * Resolves an image operand: a file name, or with qemu-img's {@code --image-opts} a block option string
     * ({@code driver=qcow2,file.filename=X}, or the file name first as its implied {@code file} key) read by
     * {@link ImageSpec} as qemu-io reads its own, refused in qemu-img's words ("Could not open 'OPTSTR': ...").
     */
    static Operand operand(CommandLine args, String operand) throws IOException {
        return operand(args, operand, false);
    }

    /**
     * The name qemu-img shows for an {@code --image-opts} operand whose options a file name cannot say: for a qcow2
     * image with {@code encrypt.key-secret}, its {@code json:} name as QEMU prints it; else null.
     */
    static String jsonName(CommandLine args, String operand, DiskImage image) {
        if (!args.has("--image-opts") || operand.startsWith("json:")) {
            return null;
        }
        try {
            ImageSpec spec = ImageSpec.of(null, QemuOpts.parse(operand, "file", QemuOpts.Kind.WITH_ID, line -> { }));
            if (spec.keySecret() == null || spec.backingKeySecret() != null || !"qcow2".equals(image.format())) {
                return null;
            }
            return "json:{\"encrypt.key-secret\": \"" + spec.keySecret() + "\", \"driver\": \"qcow2\", \"file\": "
                    + "{\"driver\": \"file\", \"filename\": \"" + spec.filename() + "\"}}";
        } catch (QemuOpts.Invalid | ImageSpec.Refused e) {
            return null;
        }
    }

    /**
     * {@link #operand(CommandLine, String)}; with {@code noIo} (QEMU's BDRV_O_NO_IO: info) a secret the options name
     * that no {@code --object} defined is not looked up, as QEMU does not look it up then.
     */
    static Operand operand(CommandLine args, String operand, boolean noIo) throws IOException {
        if (org.qcow4j.nbd.NbdClient.isNbdName(operand)) {
            // the commands that take an operand as a file (check, snapshot, bitmap, resize, amend...) have no NBD here
            throw new UnsupportedFeatureException(operand, "this command over NBD (qcow4j opens NBD exports in qemu-io, "
                    + "info, map, compare and convert)");
        }
        String format = args.get("-f", null);
        boolean forceShare = args.has("-U");
        boolean json = operand.startsWith("json:");
        if (!args.has("--image-opts") && !json) {
            return new Operand(path(operand), format, OpenOptions.defaults().withFormat(format).withForceShare(forceShare));
        }
        if (format != null && !json) {
            throw new IOException("--image-opts and --format are mutually exclusive");
        }
        String prefix = "Could not open '" + operand + "': ";
        ImageSpec spec;
        try {
            spec = json ? ImageSpec.of(operand, format == null ? Map.of() : Map.of("driver", format), noIo)
                    : ImageSpec.of(null, QemuOpts.parse(operand, "file", QemuOpts.Kind.WITH_ID, line -> { }), noIo);
        } catch (QemuOpts.Invalid e) {
            throw new IOException(e.getMessage());
        } catch (ImageSpec.Refused e) {
            throw new IOException(prefix + e.getMessage());
        }
        return resolve(operand, spec, args, noIo);
    }

    /** The operand that {@code spec} describes ({@code operand} names it in messages); {@code noIo} as above. */
    private static Operand resolve(String operand, ImageSpec spec, CommandLine args, boolean noIo) throws IOException {
        boolean forceShare = args.has("-U");
        String prefix = "Could not open '" + operand + "': ";
        if (forceShare && spec.forceShare() != null && !spec.forceShare().equals("on")) {
            throw new IOException("--force-share/-U conflicts with image options");
        }
        Path path = path(spec.filename());
        String driver = spec.format() != null ? spec.format() : opening(operand, () -> Images.probeFormat(path));
        try {
            spec.checkFormatKeys(driver);
        } catch (ImageSpec.Refused e) {
            throw new IOException(prefix + e.getMessage());
        }
        OpenOptions options = spec.openOptions(OpenOptions.defaults().withForceShare(forceShare));
        try {
            options = spec.withSecrets(options, args.objects());
        } catch (QemuObjects.Invalid e) {
            if (!noIo) {
                throw new IOException(prefix + e.getMessage());
            }
        }
        return new Operand(path, spec.format(), options);
    }

    /** The passphrases of the command's {@code --object} secrets by id; an unknown id is QEMU's "No secret with id". */
    static java.util.function.Function<String, org.qcow4j.Passphrase> secrets(CommandLine args) {
        return id -> {
            try {
                return args.objects().passphrase(id);
            } catch (QemuObjects.Invalid e) {
                throw new IllegalArgumentException(e.getMessage());
            }
        };
    }

    /** {@link #open(CommandLine, String, String, boolean)} of an {@code --image-opts} or {@code json:} operand. */
    private static DiskImage openImageOpts(CommandLine args, String optstr, Scope scope) throws IOException {
        BlkdebugFilter blkdebug = null;
        Operand o;
        if (optstr.startsWith("json:")) {
            // blkdebug above the image (its error injection): the image below opened, then the filter put on it
            try {
                blkdebug = BlkdebugFilter.above(QemuOpts.json(optstr, true));
                o = blkdebug == null ? null
                        : resolve(optstr, ImageSpec.of(null, blkdebug.imageOptions(), scope == Scope.METADATA), args,
                        scope == Scope.METADATA);
            } catch (QemuOpts.Invalid e) {
                throw new IOException(e.getMessage());
            } catch (ImageSpec.Refused e) {
                throw new IOException("Could not open '" + optstr + "': " + e.getMessage());
            }
        } else {
            o = null;
        }
        if (o == null) {
            DiskImage nbd = openNbdOpts(args, optstr);
            if (nbd != null) {
                return nbd;
            }
        }
        Operand operand = o != null ? o : operand(args, optstr, scope == Scope.METADATA);
        DiskImage image = opening(optstr, () -> Images.open(operand.path(),
                scope.apply(operand.options())));
        return blkdebug == null ? image : blkdebug.wrap(image);
    }

    /**
     * A cache mode (bdrv_parse_cache_mode's words); returns whether it asks writes to be durable before the command
     * ends ({@code unsafe} does not). {@code what} names the option in qemu-img's message ("cache", "source cache").
     * qcow4j reads through the page cache whatever the mode: the JDK 17 API has no O_DIRECT for FileChannel.
     */
    static boolean cacheMode(String mode, String what) throws CommandLine.UsageException {
        CacheMode m = CacheMode.of(mode);
        if (m == null) {
            throw CommandLine.UsageException.withoutHint("Invalid " + what + " option: " + mode);
        }
        return !m.noFlush();
    }

    /**
     * A refusal QEMU's tools word as {@link #getMessage()}: qemu-img and qemu-io print that, qcow4j under its own name
     * the cause's message, which names the field and value at fault.
     */
    static final class QemuWorded extends IOException {
        private static final long serialVersionUID = 1L;

        QemuWorded(String message, QcowException cause) {
            super(message, cause);
        }
    }

    /** Something that opens an image. */
    interface Opening<T> {
        T open() throws IOException;
    }

    /** Runs {@code open}, a missing file (the image or one it names) worded as qemu-img words it. */
    static <T> T opening(String filename, Opening<T> open) throws IOException {
        try {
            return open.open();
        } catch (IOException e) {
            throw openFailure(filename, e);
        }
    }

    /**
     * {@link Images#open} of the file {@code filename} names, worded as {@link #opening} words it. Without a lambda:
     * the first one a JVM links sets up java.lang.invoke, 5-10 ms of a short command's start-up, and info, map and
     * check run without one.
     */
    static DiskImage openNamed(String filename, OpenOptions options) throws IOException {
        try {
            return Images.open(path(filename), options);
        } catch (IOException e) {
            throw openFailure(filename, e);
        }
    }

    /** What opening {@code filename} failing with {@code e} throws: a missing file worded as qemu-img words it. */
    static IOException openFailure(String filename, IOException e) {
        if (e instanceof MissingFileException m) {
            return new IOException("Could not open '" + filename + "': " + ExitCodes.openReason(filename, m), e);
        } else if (e instanceof NoSuchFileException) {
            return new IOException("Could not open '" + filename + "': " + ExitCodes.noSuchFile(filename), e);
        } else if (e instanceof InvalidTableException) {
            return e; // a snapshot's table, checked once the image is open: the operation's failure, worded by its command
        } else if (e instanceof QcowException q && q.qemuWords() != null) {
            return new QemuWorded("Could not open '" + filename + "': " + q.qemuWords(), q);
        }
        return e;
    }

    /** {@code --output}: true for json, false for human. */
    static boolean json(CommandLine args) throws CommandLine.UsageException {
        String output = args.get("--output", "human");
        return switch (output) {
            case "json" -> true;
            case "human" -> false;
            default -> throw CommandLine.UsageException.withoutHint("--output must be used with human or json as argument.");
        };
    }

    /** The single IMAGE argument. */
    static String oneImage(CommandLine args) throws CommandLine.UsageException {
        List<String> p = args.positionals();
        if (p.size() != 1) {
            throw new CommandLine.UsageException("Expecting one image file name");
        }
        return p.get(0);
    }
}
