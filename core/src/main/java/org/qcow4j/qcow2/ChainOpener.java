package org.qcow4j.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.DiskImage;
import org.qcow4j.MissingFileException;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.io.Access;
import org.qcow4j.io.FileStorage;
import org.qcow4j.raw.RawImage;

/**
 * Opens an image and, recursively, its backing chain: probes formats, resolves relative backing file names against
 * the overlay's directory like QEMU's {@code path_combine} (external data file names are taken as they are: see
 * {@link #openDataFile}), and refuses loops and chains deeper than the limit (qemu-img would hang on a loop).
 */
public final class ChainOpener {
    private final OpenOptions options;
    private final List<Path> chain = new ArrayList<>();
    private final List<String> names = new ArrayList<>();
    /** Set by {@link #openForWriting}: the top image's data file is opened for writing too. */
    private boolean writingTop;
    /** The real path of the data file opened for writing, once it is. */
    private Path writableDataFile;

    public ChainOpener(OpenOptions options) {
        this.options = options;
    }

    OpenOptions options() {
        return options;
    }

    /**
     * Opens {@code filename} as layer {@code depth} of the chain.
     *
     * @param format  "qcow2", "raw" or null to probe
     * @param overlay the image naming this one as its backing file, or null for the top image
     */
    public DiskImage open(String filename, String format, int depth, String overlay) throws IOException {
        if (depth > options.maxChainDepth()) {
            throw new QcowException(overlay, "backing chain deeper than " + options.maxChainDepth() + " images");
        }
        Path path = Path.of(filename);
        Path real = realPath(path, filename, overlay == null ? null : "backing file of " + overlay,
                overlay == null ? MissingFileException.Role.IMAGE : MissingFileException.Role.BACKING_FILE, overlay, depth);
        if (real.equals(writableDataFile)) {
            throw sharedDataFile(overlay == null ? filename : overlay, filename);
        }
        int seen = chain.indexOf(real);
        if (seen >= 0) {
            throw new QcowException(overlay, "backing file loop: " + String.join(" -> ", names.subList(seen, names.size()))
                    + " -> " + filename);
        }
        chain.add(real);
        names.add(filename);
        FileStorage storage = openFile(path, real, filename, overlay == null ? null : "backing file of " + overlay, readAccess());
        try {
            String fmt = format != null && !format.isEmpty() ? format : probe(storage);
            return switch (fmt) {
                case "qcow2" -> Qcow2Image.open(storage, filename, this, depth);
                case "raw" -> new RawImage(filename, storage);
                default -> throw new UnsupportedFeatureException(filename, "image format '" + fmt + "'",
                        "Could not open backing file: ".repeat(depth) + "Unknown driver '" + fmt + "'");
            };
        } catch (IOException | RuntimeException e) {
            storage.close();
            throw e;
        }
    }

    /** Opens the top image {@code filename} read-write (it must be qcow2); its backing chain is opened read-only. */
    Qcow2Image openForWriting(String filename) throws IOException {
        Path path = Path.of(filename);
        Path real = realPath(path, filename, null, MissingFileException.Role.IMAGE, null, 0);
        if (Files.isDirectory(real)) {
            throw new QcowException(filename, "is a directory", null, "Could not open '" + filename + "': Is a directory");
        }
        chain.add(real);
        names.add(filename);
        writingTop = true;
        FileStorage storage = FileStorage.open(path, Access.WRITE);
        try {
            String fmt = options.format() != null && !options.format().isEmpty() ? options.format() : probe(storage);
            if (!fmt.equals("qcow2")) {
                throw new UnsupportedFeatureException(filename, "writing to " + fmt + " images");
            }
            return Qcow2Image.open(storage, filename, this, 0);
        } catch (IOException | RuntimeException e) {
            storage.close();
            throw e;
        }
    }

    /**
     * The storage of the guest data of the qcow2 image {@code image} (layer {@code depth}, in {@code storage}, with
     * header {@code h}), as QEMU's qcow2_do_open finds it: {@code storage} itself without an external data file
     * (incompatible bit 2); with one, that file, opened for writing when it belongs to the image
     * {@link #openForWriting} opens, else for reading, with the lock bytes QEMU's data child takes; or null when the
     * image is opened for metadata only ({@link OpenOptions#noIo}: QEMU then leaves the data file closed, and drops
     * the data-file options unlooked at).
     *
     * <p>The data file is the top image's {@link OpenOptions#dataFile} option, else the name the header gives. Either
     * is a local file name taken as it is: from the working directory, not the image's directory as a backing file
     * name is, and with no protocol prefix or {@code json:} read in it (QEMU's {@code bdrv_open_child} of
     * {@code image_data_file}, which parses no file name since the fix of CVE-2024-4467, in Debian's 7.2).
     */
    FileStorage openDataFile(Header h, FileStorage storage, String image, int depth) throws IOException {
        if (options.noIo()) {
            return h.has(Feature.EXTERNAL_DATA_FILE) ? null : storage;
        }
        String option = depth == 0 ? options.dataFile() : null;
        if (!h.has(Feature.EXTERNAL_DATA_FILE)) {
            if (option != null) {
                // QEMU opens the file the option names first, then finds the image has no use for it
                realPath(Path.of(option), option, null, MissingFileException.Role.DATA_FILE, image, depth);
                throw new QcowException(image, "the data-file option is given but the image has no external data file",
                        null, "'data-file' can only be set for images with an external data file");
            }
            return storage;
        }
        String filename = dataFileName(h, option, image);
        String role = "external data file of " + image;
        Path real = realPath(Path.of(filename), filename, role, MissingFileException.Role.DATA_FILE, image, depth);
        boolean writable = writingTop && depth == 0;
        if (writable) {
            // Guest data written at guest offsets into an image of the chain would destroy it; QEMU's locks refuse
            // such an open ("Failed to get shared "resize" lock"), and so does this.
            if (chain.contains(real)) {
                throw sharedDataFile(image, filename);
            }
            writableDataFile = real;
        }
        Access access = writable ? Access.DATA_FILE_WRITE : options.forceShare() ? Access.SHARED_READ : Access.DATA_FILE_READ;
        return openFile(Path.of(filename), real, filename, role, access);
    }

    /**
     * The name of the external data file of {@code image} (whose header {@code h} has the external data file bit):
     * {@code option} (the data-file.filename option), else the header's name, to be opened as it is (see
     * {@link #openDataFile}); an image whose header names none needs the option, as in QEMU.
     */
    static String dataFileName(Header h, String option, String image) throws QcowException {
        String filename = option != null ? option : h.dataFile();
        if (filename == null) {
            throw new QcowException(image, "the header has the external data file bit but names no data file"
                    + " (the data-file.filename option can name it)", null, "'data-file' is required for this image");
        }
        return filename;
    }

    private static QcowException sharedDataFile(String image, String file) {
        return new QcowException(image, "external data file " + file + " is also an image of the chain"
                + " (QEMU: Failed to get shared \"resize\" lock)");
    }

    /** How the images read here are locked: as QEMU's readers, or not at all with force-share. */
    private Access readAccess() {
        return options.forceShare() ? Access.SHARED_READ : Access.READ;
    }

    /** Opens a file of the chain; a directory or an I/O error is reported with the file's name and role. */
    private static FileStorage openFile(Path path, Path real, String filename, String role, Access access)
            throws IOException {
        String why = role == null ? "" : " (" + role + ")";
        if (Files.isDirectory(real)) {
            // QEMU's file driver opens a directory read-only, then refuses it (its words for the image itself)
            throw new QcowException(filename, "is a directory" + why, null,
                    role == null ? "'file' driver requires '" + filename + "' to be a regular file" : null);
        }
        try {
            return FileStorage.open(path, access);
        } catch (QcowException e) {
            throw e;
        } catch (IOException e) {
            throw new QcowException(filename, "cannot open: " + e.getMessage() + why, e);
        }
    }

    private static Path realPath(Path path, String filename, String role, MissingFileException.Role missing,
                                 String referrer, int depth) throws IOException {
        try {
            return path.toRealPath();
        } catch (NoSuchFileException e) {
            throw new MissingFileException(filename, missing, referrer, depth);
        } catch (AccessDeniedException e) {
            throw new QcowException(filename, "permission denied" + (role == null ? "" : " (" + role + ")"));
        }
    }

    /** qemu-img's probe of the file {@code path}: see {@link #probe(FileStorage)}. */
    public static String probe(Path path) throws IOException {
        try (FileStorage storage = FileStorage.open(path, Access.PROBE)) {
            return probe(storage);
        }
    }

    /** qemu-img's probe, reduced to the formats qcow4j reads: the qcow2 magic, else raw. */
    static String probe(FileStorage storage) throws IOException {
        if (storage.length() < 4) {
            return "raw";
        }
        ByteBuffer magic = storage.read(0, 4).order(ByteOrder.BIG_ENDIAN);
        return magic.getInt(0) == Header.MAGIC ? "qcow2" : "raw";
    }

    /** The protocols QEMU 7.2's block layer knows (qcow4j reads local files only, through {@code file:} too). */
    private static final java.util.Set<String> QEMU_PROTOCOLS = java.util.Set.of("file", "host_device", "host_cdrom",
            "nbd", "nbd+tcp", "nbd+unix", "gluster", "gluster+tcp", "gluster+unix", "gluster+rdma", "iscsi", "iser",
            "nfs", "ssh", "http", "https", "ftp", "ftps", "rbd", "nvme", "null-co", "null-aio", "blkdebug",
            "blkverify", "json", "fat", "vvfat");

    /**
     * Resolves a backing file name written in an image against that image's name, as QEMU's
     * {@code bdrv_get_full_backing_filename_from_filename}: absolute names stay, relative ones are taken from the
     * image's directory, and a name with QEMU's {@code file:} protocol prefix is the file after it, as it is (from
     * the working directory, as in QEMU). Other protocol names are refused as {@link #localFileName} refuses them.
     */
    public static String resolveRelative(String imageName, String name) throws UnsupportedFeatureException {
        String file = localFileName(imageName, name);
        if (name.startsWith("file:") || name.startsWith("/")) {
            return file;
        }
        int dirEnd = imageName.lastIndexOf('/');
        return dirEnd < 0 ? name : imageName.substring(0, dirEnd + 1) + name;
    }

    /**
     * The local file a name QEMU parses for a protocol prefix names ({@code imageName} is the image it is about, for
     * messages): a name with the {@code file:} prefix is the file after it; other protocol names ({@code nbd:...},
     * {@code json:{...}}) are refused, in QEMU's words where QEMU does not know the protocol either; any other name is
     * the file as it is.
     */
    public static String localFileName(String imageName, String name) throws UnsupportedFeatureException {
        int colon = name.indexOf(':');
        int slash = name.indexOf('/');
        if (colon > 0 && (slash < 0 || colon < slash)) {
            String protocol = name.substring(0, colon);
            if (protocol.equals("file")) {
                return name.substring(colon + 1);
            }
            throw new UnsupportedFeatureException(imageName, "file name protocol '" + protocol
                    + "' (only local files are supported)",
                    QEMU_PROTOCOLS.contains(protocol) ? null : "Unknown protocol '" + protocol + "'");
        }
        return name;
    }
}
