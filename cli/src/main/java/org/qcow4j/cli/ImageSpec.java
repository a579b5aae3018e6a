package org.qcow4j.cli;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.qcow4j.OpenOptions;
import org.qcow4j.nbd.NbdClient;

/**
 * What QEMU's block options say to open (QEMU 7.2's bdrv_open over the options of {@code --image-opts},
 * {@code open -o}, {@code -f} and a file name): which local file, in which format, with which of the options qcow4j
 * honours, each checked with QEMU's message. Built from a map of dotted keys ({@link QemuOpts#parse}); shared by
 * qemu-io and qemu-img's {@code --image-opts}.
 *
 * <p>Honoured: {@code driver} (qcow2, raw, or file: the file itself as raw), {@code file.driver=file},
 * {@code file.filename} (or {@code filename} with driver=file), {@code read-only}, {@code force-share},
 * {@code cache.direct} (accepted, no O_DIRECT: the JDK's FileChannel has no portable way to it), {@code cache.no-flush},
 * {@code discard}, {@code detect-zeroes}, {@code file.aio}, qcow2's cache sizes and {@code lazy-refcounts}
 * ({@link Qcow2RuntimeOptions}), qcow2's {@code data-file.filename} (with {@code data-file.driver=file}), or
 * {@code data-file.driver=raw} with {@code data-file.file.filename} (raw over the file: the file itself). Accepted as they change nothing
 * observable here: {@code node-name}, {@code auto-read-only}, qcow2's {@code overlap-check*},
 * {@code pass-discard-*}, {@code cache-clean-interval}, {@code l2-cache-entry-size}, the file's {@code locking=on|auto},
 * {@code aio-max-batch}, {@code drop-cache}; blkdebug without rules as the file node (a pass-through here). Refused
 * by name: what QEMU has and qcow4j does not (other drivers and
 * protocols, {@code backing}, the data file's other options and drivers, {@code encrypt.*}, raw's {@code offset} and
 * {@code size}, {@code locking=off}...). Unknown keys get QEMU's "does not support the option".
 */
final class ImageSpec {
    /** Options QEMU refuses, or qcow4j refuses by name: the reason after "can't open: ", maybe with a hint line. */
    static final class Refused extends Exception {
        private static final long serialVersionUID = 1L;
        private final String hint;

        Refused(String message) {
            this(message, null);
        }

        Refused(String message, String hint) {
            super(message);
            this.hint = hint;
        }

        String hint() {
            return hint;
        }
    }

    /** QEMU 7.2's protocol prefixes of file names ("nbd:...", "json:..."), refused by name; "file:" is honoured. */
    private static final Set<String> QEMU_PROTOCOLS = Set.of("blkdebug", "blkverify", "fat", "ftp", "ftps", "gluster",
            "gluster+rdma", "gluster+tcp", "gluster+unix", "host_cdrom", "host_device", "http", "https", "iscsi", "iser",
            "json", "nbd", "nbd+tcp", "nbd+unix", "nfs", "null-aio", "null-co", "nvme", "rbd", "ssh");
    private static final String SIZE_HINT = "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
            + "and exabytes, respectively.";

    private final String filename;
    private final String format;
    private final boolean fileDriver;
    private final Boolean readOnly;
    private final String forceShare;
    private final Boolean cacheDirect;
    private final Boolean cacheNoFlush;
    private final Boolean discard;
    private final OpenOptions.DetectZeroes detectZeroes;
    private final String aio;
    private final Qcow2RuntimeOptions qcow2;
    private final String backingDriver;
    private final boolean blkdebug;
    private final Boolean fileReadOnly;
    private final boolean fileForceShare;
    private final Boolean fileCacheDirect;
    /** The format-level keys no driver of ours took, for the probed format's "does not support" message. */
    private final List<String> unknownFormatKeys;
    /** qcow2's {@code encrypt.key-secret}: the id of the secret that unlocks the image, or null. */
    private final String keySecret;
    /** {@code backing.encrypt.key-secret}: the id of the secret that unlocks the backing file, or null. */
    private final String backingKeySecret;
    /** {@code backing.file.filename}: must name the backing file the header names (checked once open), or null. */
    private final String backingFilename;
    /** The NBD export the image is on (an {@code nbd:} name, driver=nbd), or null for a local file. */
    private final NbdClient.Target nbd;
    /** qcow2's {@code data-file.filename}: the external data file, over the one the header names; or null. */
    private final String dataFile;

    private ImageSpec(Builder b) {
        this.filename = b.filename;
        this.format = b.format;
        this.fileDriver = b.fileDriver;
        this.readOnly = b.readOnly;
        this.forceShare = b.forceShare;
        this.cacheDirect = b.cacheDirect;
        this.cacheNoFlush = b.cacheNoFlush;
        this.discard = b.discard;
        this.detectZeroes = b.detectZeroes;
        this.aio = b.aio;
        this.qcow2 = b.qcow2;
        this.backingDriver = b.backingDriver;
        this.blkdebug = b.blkdebug;
        this.fileReadOnly = b.fileReadOnly;
        this.fileForceShare = b.fileForceShare;
        this.fileCacheDirect = b.fileCacheDirect;
        this.unknownFormatKeys = List.copyOf(b.unknown);
        this.keySecret = b.keySecret;
        this.backingKeySecret = b.backingKeySecret;
        this.backingFilename = b.backingFilename;
        this.nbd = b.nbd;
        this.dataFile = b.dataFile;
    }

    private static final class Builder {
        String filename;
        String format;
        boolean fileDriver;
        Boolean readOnly;
        String forceShare;
        Boolean cacheDirect;
        Boolean cacheNoFlush;
        Boolean discard;
        OpenOptions.DetectZeroes detectZeroes;
        String aio;
        final Qcow2RuntimeOptions qcow2 = new Qcow2RuntimeOptions();
        String backingDriver;
        boolean blkdebug;
        boolean lockingOff;
        Boolean fileReadOnly;
        boolean fileForceShare;
        Boolean fileCacheDirect;
        final List<String> unknown = new ArrayList<>();
        String keySecret;
        String backingKeySecret;
        String backingFilename;
        NbdClient.Target nbd;
        String dataFile;
        /** Which key named the data file: data-file.filename (the file driver) or data-file.file.filename (raw). */
        String dataFileKey;
        /** data-file.driver: "file", "raw" (raw over a file: the file itself here), or null (file). */
        String dataFileDriver;
    }

    /**
     * The image that {@code filename} (may be null: all from the options, as {@code --image-opts}) and
     * {@code options} (dotted keys, not changed) describe.
     */
    static ImageSpec of(String filename, Map<String, String> options) throws Refused {
        return of(filename, options, false);
    }

    /**
     * {@link #of(String, Map)}; with {@code noIo} (an open for metadata only, qemu-img info) the data-file options are
     * dropped unlooked at, as QEMU's qcow2_do_open drops them then.
     */
    static ImageSpec of(String filename, Map<String, String> options, boolean noIo) throws Refused {
        Map<String, String> top = new LinkedHashMap<>(options);
        if (filename != null && filename.startsWith("json:")) {
            // QEMU's json: pseudo-protocol: the name is all options (given ones win, as bdrv_open merges them)
            Map<String, String> json;
            try {
                json = QemuOpts.json(filename);
            } catch (QemuOpts.Invalid e) {
                throw new Refused(e.getMessage());
            }
            json.putAll(top);
            top = json;
            filename = null;
        }
        if (noIo) {
            top.keySet().removeIf(k -> k.equals("data-file") || k.startsWith("data-file."));
        }
        Map<String, String> file = new LinkedHashMap<>();
        for (String k : List.copyOf(top.keySet())) {
            if (k.startsWith("file.")) {
                file.put(k.substring(5), top.remove(k));
            }
        }
        String reference = top.remove("file");
        String driver = top.remove("driver");
        Builder b = new Builder();
        if ("nbd".equals(driver)) {
            // the NBD protocol itself is the image (raw over the export): its options are at the top
            if (reference != null || !file.isEmpty()) {
                throw new Refused("Block protocol 'nbd' doesn't support the option 'file'");
            }
            b.format = "nbd"; // QEMU's protocol driver as the image: its format is called "nbd"
            nbd(b, filename, top, true);
            return new ImageSpec(b);
        }
        if (driver != null) {
            checkDriver(driver);
        }
        if (driver == null && filename == null && file.isEmpty() && reference == null) {
            throw new Refused("Must specify either driver or file");
        }
        if ("file".equals(driver)) {
            // The protocol itself is the image: its options are the file's, at the top.
            if (reference != null) {
                throw new Refused("Block protocol 'file' doesn't support the option 'file'");
            }
            file.putAll(top);
            top.clear();
            b.fileDriver = true;
            b.format = "raw";
            b.filename = fileName(filename, file);
            fileOptions(b, file, true);
            fileNode(b, true);
            return new ImageSpec(b);
        }
        b.format = driver;
        if (reference != null) {
            if (!file.isEmpty() || filename != null) {
                throw new Refused("Cannot reference an existing block device with additional options or a new filename");
            }
            throw new Refused("Cannot find device='" + reference + "' nor node-name='" + reference + "'");
        }
        if (filename == null && file.isEmpty()) {
            throw new Refused("A block device must be specified for \"file\"");
        }
        String fileDriver = file.remove("driver");
        if (fileDriver == null && filename != null && filename.startsWith("blkdebug:")) {
            fileDriver = "blkdebug";
        }
        if ("blkdebug".equals(fileDriver)) {
            blkdebug(b, filename, file);
        } else if ("nbd".equals(fileDriver) || (fileDriver == null && filename != null && NbdClient.isNbdName(filename))) {
            nbd(b, filename, file, false);
        } else {
            if (fileDriver != null && !fileDriver.equals("file")) {
                checkDriver(fileDriver);
                throw refusedDriver(fileDriver);
            }
            b.filename = fileName(filename, file);
            fileOptions(b, file, false);
            fileNode(b, fileDriver != null);
        }
        formatOptions(b, top);
        return new ImageSpec(b);
    }

    /**
     * QEMU's blkdebug as the file node ({@code blkdebug:[CONFIG]:FILE}, or {@code file.driver=blkdebug} with
     * {@code file.image.*}): without rules it passes every request through to its image file, as here; its
     * alignment and size limits are checked as QEMU checks them and change nothing else (requests are split and
     * aligned below the format, the data is the same). Rules (a config file with sections, {@code inject-error},
     * {@code set-state}) are refused by name, and so are its breakpoints (see {@link #blkdebug()}).
     */
    private static void blkdebug(Builder b, String filename, Map<String, String> options) throws Refused {
        Map<String, String> o = new LinkedHashMap<>(options);
        Map<String, String> image = new LinkedHashMap<>();
        for (String k : List.copyOf(o.keySet())) {
            if (k.startsWith("image.")) {
                image.put(k.substring(6), o.remove(k));
            }
        }
        String imageName = o.remove("x-image");
        if (filename != null) {
            String rest = filename.substring("blkdebug:".length());
            int c = rest.indexOf(':');
            if (c < 0) {
                throw new Refused("blkdebug requires both config file and image path");
            }
            if (c > 0) {
                o.put("config", rest.substring(0, c));
            }
            imageName = rest.substring(c + 1);
        }
        String config = o.remove("config");
        if (config != null) {
            blkdebugConfig(config);
        }
        long align = 1;
        for (String k : List.of("align", "max-transfer", "opt-write-zero", "max-write-zero", "opt-discard", "max-discard")) {
            String v = o.remove(k);
            if (v == null) {
                continue;
            }
            long n = size(k, v);
            boolean ok = n == 0 || (n < Integer.MAX_VALUE && (k.equals("align") ? Long.bitCount(n) == 1 : n % align == 0));
            if (!ok) {
                throw new Refused("Cannot meet constraints with " + k + " " + n);
            }
            if (k.equals("align") && n > 0) {
                align = n;
            }
        }
        if (o.containsKey("image")) {
            throw new Refused("the option 'image' naming another block node is not supported by qcow4j");
        }
        for (String k : o.keySet()) {
            if (k.startsWith("inject-error.") || k.startsWith("set-state.") || k.startsWith("take-child-perms")
                    || k.startsWith("unshare-child-perms")) {
                throw new Refused("blkdebug's " + k.substring(0, k.indexOf('.') < 0 ? k.length() : k.indexOf('.'))
                        + " is not supported by qcow4j (blkdebug passes requests through here)");
            }
            if (!k.equals("node-name")) {
                throw new Refused("Block protocol 'blkdebug' doesn't support the option '" + k + "'");
            }
        }
        String imageDriver = image.remove("driver");
        if (imageDriver != null && !imageDriver.equals("file")) {
            checkDriver(imageDriver);
            throw refusedDriver(imageDriver);
        }
        if (imageName == null && image.isEmpty()) {
            throw new Refused("A block device must be specified for \"image\"");
        }
        if (imageName != null && image.containsKey("filename")) {
            throw new Refused("Can't specify 'file' and 'filename' options at the same time");
        }
        b.filename = imageName != null ? imageName : fileName(null, image);
        image.remove("filename");
        fileOptions(b, image, false);
        fileNode(b, imageDriver != null);
        b.blkdebug = true;
    }

    /**
     * QEMU's nbd protocol node: the export an {@code nbd:} name or {@code nbd+unix://} URI names, or the options
     * {@code server.type} (unix or inet), {@code server.path}, {@code server.host}, {@code server.port} and
     * {@code export}; the other options are the generic ones ({@code top}: the image's own, driver=nbd).
     */
    private static void nbd(Builder b, String filename, Map<String, String> options, boolean top) throws Refused {
        Map<String, String> o = new LinkedHashMap<>(options);
        String type = o.remove("server.type");
        String path = o.remove("server.path");
        String host = o.remove("server.host");
        String port = o.remove("server.port");
        String export = o.remove("export");
        String legacyName = o.remove("filename");
        String dirtyBitmap = o.remove("x-dirty-bitmap");
        if (filename == null) {
            filename = legacyName;
        }
        NbdClient.Target t;
        if (filename != null) {
            if (type != null || path != null || host != null || port != null || export != null) {
                throw new Refused("Cannot use path/host/port/export and a file name at the same time");
            }
            try {
                t = NbdClient.parse(filename);
            } catch (IllegalArgumentException e) {
                throw new Refused(e.getMessage());
            }
        } else if (type == null) {
            throw new Refused("Parameter 'server.type' is missing");
        } else if (type.equals("unix")) {
            if (path == null) {
                throw new Refused("Parameter 'server.path' is missing");
            }
            t = new NbdClient.Target(path, null, 0, export == null ? "" : export);
        } else if (type.equals("inet")) {
            if (host == null) {
                throw new Refused("Parameter 'server.host' is missing");
            }
            if (port == null) {
                throw new Refused("Parameter 'server.port' is missing");
            }
            int p;
            try {
                p = Integer.parseInt(port);
            } catch (NumberFormatException e) {
                p = -1;
            }
            if (p < 0 || p > 65535) {
                throw new Refused("error parsing port '" + port + "'");
            }
            t = new NbdClient.Target(null, host, p, export == null ? "" : export);
        } else {
            throw new Refused("the NBD server type '" + type + "' is not supported by qcow4j (unix and inet)");
        }
        for (String k : List.copyOf(o.keySet())) {
            if (k.startsWith("tls-creds") || k.equals("tls-hostname") || k.equals("reconnect-delay") || k.equals("open-timeout")) {
                throw new Refused("the nbd option '" + k + "' is not supported by qcow4j");
            }
        }
        b.nbd = dirtyBitmap == null ? t : t.withDirtyBitmap(dirtyBitmap);
        b.filename = filename != null ? filename : t.qemuName();
        protocolOptions(b, "nbd", o, top);
    }

    /**
     * What file-posix checks once its options are taken and the file is open: with the 'file' driver named
     * ({@code explicit}; a plain name may be a device, which QEMU then opens through host_device) the file must be a
     * regular one (directories are refused when opened, in QEMU's two ways); {@code locking=off} is refused last.
     */
    private static void fileNode(Builder b, boolean explicit) throws Refused {
        if (!explicit && !b.lockingOff) {
            return; // nothing to check: no file system call for a plain open
        }
        Path p;
        try {
            p = Path.of(b.filename);
        } catch (java.nio.file.InvalidPathException e) {
            p = null;
        }
        if (p != null && Files.isDirectory(p)) {
            return; // refused as QEMU refuses it when it is opened
        }
        if (explicit && p != null && Files.exists(p) && !Files.isRegularFile(p)) {
            throw new Refused("'file' driver requires '" + b.filename + "' to be a regular file");
        }
        if (b.lockingOff) {
            throw new Refused("locking=off is not supported by qcow4j (it always takes QEMU's image locks)");
        }
    }

    /** blkdebug's config file: one with no rules (only blank and comment lines) is taken, rules are refused. */
    private static void blkdebugConfig(String config) throws Refused {
        List<String> lines;
        try {
            lines = Files.readAllLines(Path.of(config), StandardCharsets.ISO_8859_1);
        } catch (IOException | RuntimeException e) {
            throw new Refused("Could not read blkdebug config file: " + IoErrno.strerror(IoErrno.of(e)));
        }
        for (String line : lines) {
            String t = line.strip();
            if (!t.isEmpty() && !t.startsWith("#")) {
                throw new Refused("blkdebug rules (config file " + config + ") are not supported by qcow4j");
            }
        }
    }

    /** An unknown driver is QEMU's error; one QEMU has but qcow4j not is refused by name. */
    private static void checkDriver(String driver) throws Refused {
        if (!ImageArgs.QEMU_FORMATS.contains(driver)) {
            throw new Refused("Unknown driver '" + driver + "'");
        }
        if (!driver.equals("qcow2") && !driver.equals("raw") && !driver.equals("file")) {
            throw refusedDriver(driver);
        }
    }

    private static Refused refusedDriver(String driver) {
        return new Refused("the '" + driver + "' driver is not supported by qcow4j (qcow2 and raw images in local files)");
    }

    /**
     * The local file: {@code filename} or {@code file.filename} (one of them), with QEMU's protocol prefixes: "file:"
     * stripped, another known one refused by name, an unknown one QEMU's error.
     */
    private static String fileName(String filename, Map<String, String> file) throws Refused {
        String option = file.remove("filename");
        if (filename != null && option != null) {
            throw new Refused("Can't specify 'file' and 'filename' options at the same time");
        }
        String name = filename != null ? filename : option;
        if (name == null) {
            throw new Refused("The 'file' block driver requires a file name");
        }
        if (filename == null) {
            return name; // an option names the file as it is: no protocol prefix
        }
        int colon = name.indexOf(':');
        int slash = name.indexOf('/');
        if (colon > 0 && (slash < 0 || colon < slash)) {
            String protocol = name.substring(0, colon);
            if (protocol.equals("file")) {
                return ImageArgs.withoutFilePrefix(name);
            }
            if (QEMU_PROTOCOLS.contains(protocol)) {
                throw new Refused("the '" + protocol + ":' protocol is not supported by qcow4j (local files only)");
            }
            throw new Refused("Unknown protocol '" + protocol + "'");
        }
        return name;
    }

    /**
     * The options of the file node (file-posix's and the generic ones); {@code top}: they are the image's own
     * (driver=file), whose unknown keys QEMU words the same way.
     */
    private static void fileOptions(Builder b, Map<String, String> file, boolean top) throws Refused {
        protocolOptions(b, "file", file, top);
    }

    /**
     * The options left to a protocol node ({@code protocol} "file" or "nbd"): file-posix's own for "file", the
     * generic ones for both; any other key refused as QEMU refuses it, naming the protocol.
     */
    private static void protocolOptions(Builder b, String protocol, Map<String, String> options, boolean top)
            throws Refused {
        for (Map.Entry<String, String> e : options.entrySet()) {
            String k = e.getKey();
            String v = e.getValue();
            if (!protocol.equals("file") && !k.equals("node-name")) {
                if (top ? generic(b, k, v) : fileGeneric(b, k, v)) {
                    continue;
                }
                throw new Refused("Block protocol '" + protocol + "' doesn't support the option '" + k + "'");
            }
            switch (k) {
                case "aio" -> b.aio = oneOf(v, List.of("threads", "native", "io_uring"));
                case "locking" -> b.lockingOff = oneOf(v, List.of("on", "off", "auto")).equals("off");
                case "aio-max-batch" -> number(k, v);
                case "drop-cache", "x-check-cache-dropped", "auto-read-only" -> bool(k, v);
                case "node-name" -> {
                    // a name for the node: nothing refers to it here
                }
                case "pr-manager" -> throw new Refused("pr-manager is not supported by qcow4j");
                default -> {
                    if (top ? generic(b, k, v) : fileGeneric(b, k, v)) {
                        continue;
                    }
                    throw new Refused("Block protocol 'file' doesn't support the option '" + k + "'");
                }
            }
        }
    }

    /** The options QEMU's block layer takes for every node (at the image's level); false if {@code k} is not one. */
    private static boolean generic(Builder b, String k, String v) throws Refused {
        switch (k) {
            case "read-only" -> b.readOnly = bool(k, v);
            case "force-share" -> {
                bool(k, v);
                b.forceShare = v;
            }
            case "cache.direct" -> b.cacheDirect = bool(k, v);
            case "cache.no-flush" -> b.cacheNoFlush = bool(k, v);
            case "discard" -> {
                b.discard = switch (v) {
                    case "off", "ignore" -> false;
                    case "on", "unmap" -> true;
                    default -> throw new Refused("Invalid discard option");
                };
            }
            case "detect-zeroes" -> b.detectZeroes = switch (oneOf(v, List.of("off", "on", "unmap"))) {
                case "on" -> OpenOptions.DetectZeroes.ON;
                case "unmap" -> OpenOptions.DetectZeroes.UNMAP;
                default -> OpenOptions.DetectZeroes.OFF;
            };
            case "auto-read-only" -> bool(k, v);
            case "node-name" -> {
                // a name for the node: nothing refers to it here
            }
            default -> {
                return false;
            }
        }
        return true;
    }

    /**
     * The generic options of the file node below the format: read-only, force-share and cache.direct count with the
     * image's (a read-write image over a read-only file cannot be, native aio needs the file's cache.direct); the rest
     * concern the host file only and are checked, not used.
     */
    private static boolean fileGeneric(Builder b, String k, String v) throws Refused {
        switch (k) {
            case "read-only" -> b.fileReadOnly = bool(k, v);
            case "force-share" -> b.fileForceShare = bool(k, v);
            case "cache.direct" -> b.fileCacheDirect = bool(k, v);
            case "cache.no-flush", "auto-read-only" -> bool(k, v);
            case "discard" -> {
                if (!List.of("off", "ignore", "on", "unmap").contains(v)) {
                    throw new Refused("Invalid discard option");
                }
            }
            case "detect-zeroes" -> oneOf(v, List.of("off", "on", "unmap"));
            default -> {
                return false;
            }
        }
        return true;
    }

    /** The format node's options: the generic ones, qcow2's runtime options; the rest left for the format's check. */
    private static void formatOptions(Builder b, Map<String, String> top) throws Refused {
        for (Map.Entry<String, String> e : top.entrySet()) {
            String k = e.getKey();
            String v = e.getValue();
            if (generic(b, k, v)) {
                continue;
            }
            boolean qcow2 = b.format == null || b.format.equals("qcow2");
            boolean raw = b.format == null || b.format.equals("raw");
            if (qcow2 && b.qcow2.take(k, v)) {
                continue;
            }
            if (qcow2 && k.equals("encrypt.key-secret")) {
                b.keySecret = v;
            } else if (qcow2 && k.equals("encrypt.format") && (v.equals("luks") || v.equals("aes"))) {
                // checked against the header by QEMU; the header decides here
            } else if (qcow2 && (k.equals("data-file.filename") || k.equals("data-file.file.filename"))) {
                b.dataFile = v; // the data file, opened instead of the one the header names (checked below)
                b.dataFileKey = k;
            } else if (qcow2 && (k.equals("data-file.driver") && (v.equals("file") || v.equals("raw"))
                    || k.equals("data-file.file.driver") && v.equals("file"))) {
                b.dataFileDriver = k.equals("data-file.driver") ? v : b.dataFileDriver;
            } else if (qcow2 && k.equals("data-file.driver")) {
                checkDriver(v); // another driver for the data file (null-co, nbd...): refused by name
                throw refusedDriver(v);
            } else if (qcow2 && k.equals("data-file")) {
                // a reference to another block node: qemu-img and qemu-io have none
                throw new Refused("Cannot find device='" + v + "' nor node-name='" + v + "'");
            } else if (qcow2 && (k.startsWith("encrypt.") || k.startsWith("data-file."))) {
                throw new Refused("the qcow2 option '" + k + "' is not supported by qcow4j");
            } else if (k.equals("backing.node-name")) {
                // a name for the backing node: nothing refers to it here
            } else if (k.equals("backing.encrypt.key-secret")) {
                b.backingKeySecret = v;
            } else if (k.equals("backing.file.filename") || k.equals("backing.file.driver") && v.equals("file")) {
                if (k.equals("backing.file.filename")) {
                    b.backingFilename = v; // checked against the backing file the header names once it is open
                }
            } else if (k.equals("backing.driver")) {
                b.backingDriver = v; // the backing file's format, over the header's
            } else if (k.equals("backing") || k.startsWith("backing.")) {
                throw new Refused("the option '" + k + "' is not supported by qcow4j (the image header names the backing file)");
            } else if (raw && (k.equals("offset") || k.equals("size"))) {
                size(k, v);
                throw new Refused("the raw option '" + k + "' is not supported by qcow4j");
            } else {
                b.unknown.add(k);
            }
        }
        if (b.dataFile != null && !b.dataFileKey.equals("raw".equals(b.dataFileDriver) ? "data-file.file.filename"
                : "data-file.filename")) {
            // the file given at the level the data file's driver does not have it: raw over a file, or the file itself
            throw new Refused("the qcow2 option '" + b.dataFileKey + "' is not supported by qcow4j with data-file.driver="
                    + (b.dataFileDriver == null ? "file" : b.dataFileDriver));
        }
        if (b.detectZeroes == OpenOptions.DetectZeroes.UNMAP && Boolean.FALSE.equals(b.discard)) {
            throw new Refused("setting detect-zeroes to unmap is not allowed without setting discard operation to unmap");
        }
    }

    /** QEMU's boolean option values (qapi_bool_parse). */
    static boolean bool(String k, String v) throws Refused {
        Boolean b = ImageOptions.qapiBool(v);
        if (b == null) {
            throw new Refused("Parameter '" + k + "' expects 'on' or 'off'");
        }
        return b;
    }

    /** An enum option: its value if it is one of {@code allowed}, else QEMU's error. */
    private static String oneOf(String v, List<String> allowed) throws Refused {
        if (!allowed.contains(v)) {
            throw new Refused("invalid parameter value: " + v);
        }
        return v;
    }

    /** A size option (parse_option_size: qemu_strtosz). */
    static long size(String k, String v) throws Refused {
        long n = QemuNumbers.strtosz(v, null);
        if (n == QemuNumbers.ERANGE) {
            throw new Refused("Value '" + v + "' is too large for parameter '" + k + "'");
        }
        if (n < 0) {
            throw new Refused("Parameter '" + k + "' expects a non-negative number below 2^64", SIZE_HINT);
        }
        return n;
    }

    /** A number option (parse_option_number: qemu_strtou64, a negative number wrapping around). */
    static java.math.BigInteger number(String k, String v) throws Refused {
        QemuNumbers.Strtoull n = QemuNumbers.strtoull(v, 0);
        if (v.isEmpty() || n.end() != v.length() || n.overflow()) {
            throw new Refused("Parameter '" + k + "' expects a number");
        }
        return n.value();
    }

    // ------------------------------------------------------------------------------------------------ results

    /** The local file (for an NBD export, its name). */
    String filename() {
        return filename;
    }

    /** The NBD export the image is on, or null for a local file. */
    NbdClient.Target nbd() {
        return nbd;
    }

    /** "qcow2" or "raw" ("nbd": driver=nbd, raw over the export), or null: probe the file. */
    String format() {
        return format;
    }

    /** driver=file: the file itself, as raw (qemu-io's info calls its format "file"). */
    boolean fileDriver() {
        return fileDriver;
    }

    /** Whether the file node is a blkdebug (without rules: it passes requests through). */
    boolean blkdebug() {
        return blkdebug;
    }

    /** The read-only option, or null when not given. */
    Boolean readOnly() {
        return readOnly;
    }

    /** The file node's read-only option (a read-write image cannot be over a read-only file), or null. */
    Boolean fileReadOnly() {
        return fileReadOnly;
    }

    /** The file node's cache.direct (what native aio looks at), else the image's, or null. */
    Boolean fileCacheDirect() {
        return fileCacheDirect != null ? fileCacheDirect : cacheDirect;
    }

    /** The force-share option as given (QEMU compares it with "on" against -U), or null. */
    String forceShare() {
        return forceShare;
    }

    Boolean cacheDirect() {
        return cacheDirect;
    }

    Boolean cacheNoFlush() {
        return cacheNoFlush;
    }

    /** discard: true for unmap, false for ignore, null when not given. */
    Boolean discard() {
        return discard;
    }

    OpenOptions.DetectZeroes detectZeroes() {
        return detectZeroes;
    }

    /** The file's aio mode, or null. */
    String aio() {
        return aio;
    }

    /**
     * QEMU's check that every option was taken, once the format is known ({@code format}, probed when the options
     * named none): "Block format 'qcow2' does not support the option 'foo'".
     */
    void checkFormatKeys(String probedFormat) throws Refused {
        if (!unknownFormatKeys.isEmpty()) {
            throw new Refused("Block format '" + probedFormat + "' does not support the option '" + unknownFormatKeys.get(0) + "'");
        }
    }

    /**
     * The options checked against the opened image: {@code backing.driver} needs a backing file, and
     * qcow2's open options pass QEMU's checks ({@link Qcow2RuntimeOptions#check}).
     */
    void checkAgainst(org.qcow4j.DiskImage image) throws Refused {
        if (backingFilename != null && !sameFile(backingFilename, image.backing())) {
            throw new Refused("the option 'backing.file.filename' is not supported by qcow4j where it names another file"
                    + " than the image's backing file");
        }
        boolean namesBacking = image.qcow2().map(q -> q.header().backingFile() != null).orElse(false);
        if (backingDriver != null && !namesBacking) {
            // QEMU opens the backing node from the option alone, and it has no file
            throw new Refused("Could not open backing file: A block device must be specified for \"file\"");
        }

        var meta = image.qcow2();
        if (meta.isPresent()) {
            var h = meta.get().header();
            var geo = h.geometry();
            qcow2.check((int) geo.clusterSize(), image.size(), geo.l2EntrySize(), h.version());
        }
    }

    private static boolean sameFile(String name, org.qcow4j.DiskImage backing) {
        if (backing == null) {
            return false;
        }
        try {
            return java.nio.file.Files.isSameFile(java.nio.file.Path.of(name), java.nio.file.Path.of(backing.filename()));
        } catch (java.io.IOException | RuntimeException e) {
            return false;
        }
    }

    /** {@code options} with the passphrases {@code encrypt.key-secret} and {@code backing.encrypt.key-secret} name. */
    OpenOptions withSecrets(OpenOptions options, QemuObjects objects) throws QemuObjects.Invalid {
        if (keySecret != null) {
            options = options.withPassphrase(objects.passphrase(keySecret));
        }
        if (backingKeySecret != null) {
            options = options.withBackingPassphrase(objects.passphrase(backingKeySecret));
        }
        return options;
    }

    /** The id of the secret {@code backing.encrypt.key-secret} names, or null. */
    String backingKeySecret() {
        return backingKeySecret;
    }

    /** The id of the secret {@code encrypt.key-secret} names, or null. */
    String keySecret() {
        return keySecret;
    }

    /** {@code base} with the options this spec gives (format, caches, lazy refcounts, force-share, discard, detect-zeroes). */
    OpenOptions openOptions(OpenOptions base) {
        OpenOptions o = qcow2.apply(base.withFormat(format)).withBackingFormat(backingDriver);
        if (forceShare != null) {
            o = o.withForceShare(forceShare.equals("on") || forceShare.equals("yes") || forceShare.equals("true")
                    || forceShare.equals("y"));
        }
        if (fileForceShare) {
            o = o.withForceShare(true); // (for a read-write image, the library refuses it as QEMU does)
        }
        if (discard != null) {
            o = o.withDiscard(discard);
        }
        if (detectZeroes != null) {
            o = o.withDetectZeroes(detectZeroes);
        }
        if (dataFile != null) {
            o = o.withDataFile(dataFile);
        }
        return o;
    }
}
