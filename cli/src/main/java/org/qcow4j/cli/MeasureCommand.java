package org.qcow4j.cli;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.MeasureResult;

/** {@code measure}: the size a new image would need, as qemu-img measure. */
final class MeasureCommand extends Command {
    private static final CommandLine.Option OUT_FORMAT = CommandLine.Option.value("FMT",
            "Format of the image to measure: raw (default) or qcow2.", "-O");
    private static final CommandLine.Option OPTIONS = CommandLine.Option.value("OPTIONS",
            "Its creation options (cluster_size, compat, refcount_bits, extended_l2, preallocation, backing_file...).",
            "-o");
    private static final CommandLine.Option SIZE = CommandLine.Option.value("SIZE",
            "Measure an empty image of this size instead of a copy of IMAGE.", "--size");
    private static final CommandLine.Option SNAPSHOT = CommandLine.Option.value("SNAPSHOT",
            "Measure IMAGE as of its internal snapshot: snapshot.id=ID,snapshot.name=NAME, or ID_OR_NAME.", "-l");
    /** The raw target's creation options: raw's (size) and the file protocol's. */
    private static final Map<String, ImageOptions.Type> RAW = Map.of("size", ImageOptions.Type.SIZE,
            "preallocation", ImageOptions.Type.STRING, "nocow", ImageOptions.Type.BOOL,
            ImageOptions.EXTENT_SIZE_HINT, ImageOptions.Type.SIZE);

    MeasureCommand() {
        super("measure", "measure [--output=human|json] [-O FMT] [-o OPTIONS] [--size N | [-f FMT] [-l SNAPSHOT] IMAGE]",
                "Compute the size a new image needs (empty, or a copy of IMAGE), as qemu-img measure.",
                OUTPUT, OUT_FORMAT, OPTIONS, SIZE, SNAPSHOT, FORMAT, FORCE_SHARE, OBJECT, IMAGE_OPTS);
    }

    @Override
    boolean helpOnBadOption() {
        return true;
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        // qemu-img checks these as getopt meets them
        List<String> optionValues = new ArrayList<>();
        boolean json = false;
        long size = -1;
        for (var e : args.inOrder()) {
            switch (e.getKey()) {
                case "-o" -> {
                    optionValues.add(e.getValue());
                    ImageOptions.optionList(optionValues);
                }
                case "--output" -> json = ImageArgs.json(args);
                case "--size" -> size = QemuNumbers.cvtnum("image size", e.getValue(), Long.MAX_VALUE, w -> err.error(w));
                default -> {
                }
            }
        }
        List<String> p = args.positionals();
        String snapshot = args.get("-l", null);
        if (p.size() > 1) {
            throw CommandLine.UsageException.withoutHint("At most one filename argument is allowed.");
        }
        String filename = p.isEmpty() ? null : p.get(0);
        if (filename == null && (args.has("--image-opts") || args.has("-f") || snapshot != null)) {
            throw CommandLine.UsageException.withoutHint("--image-opts, -f, and -l require a filename argument.");
        }
        if (filename != null && size >= 0) {
            throw CommandLine.UsageException.withoutHint("--size N cannot be used together with a filename.");
        }
        if (filename == null && size < 0) {
            throw CommandLine.UsageException.withoutHint("Either --size N or one filename must be specified.");
        }
        String[] snapshotParam = ConvertCommand.snapshotParam(snapshot);
        DiskImage source = filename == null ? null
                : snapshotParam != null ? ConvertCommand.openSnapshot(args, filename, snapshotParam)
                : ImageArgs.open(args, filename);
        try (source) {
            String format = args.get("-O", "raw");
            if (!format.equals("qcow2") && !format.equals("raw")) {
                err.error(ImageArgs.QEMU_FORMATS.contains(format)
                        ? "Block driver '" + format + "' does not support size measurement"
                        : "Unknown file format '" + format + "'");
                return ExitCodes.FAILURE;
            }
            boolean qcow2 = format.equals("qcow2");
            Map<String, String> o;
            try {
                o = ImageOptions.check(ImageOptions.parse(ImageOptions.optionList(optionValues)),
                        qcow2 ? ImageOptions.QCOW2 : RAW, "");
            } catch (CommandLine.UsageException e) {
                err.error(e.getMessage());
                err.error("Invalid options for file format '" + format + "'");
                return ExitCodes.FAILURE;
            }
            long optionSize = size >= 0 ? size : Long.parseLong(o.getOrDefault("size", "0"));
            MeasureResult r;
            try {
                r = Images.measure(source, optionSize, qcow2 ? target(o, ImageArgs.secrets(args)) : null);
            } catch (IllegalArgumentException e) {
                err.error(e.getMessage());
                return ExitCodes.FAILURE;
            }
            if (json) {
                Map<String, Object> m = new LinkedHashMap<>();
                if (r.hasBitmaps()) {
                    m.put("bitmaps", r.bitmaps());
                }
                m.put("required", r.required());
                m.put("fully-allocated", r.fullyAllocated());
                out.println(QemuJson.render(m));
            } else {
                out.println("required size: " + r.required());
                out.println("fully allocated size: " + r.fullyAllocated());
                if (r.hasBitmaps()) {
                    out.println("bitmaps size: " + r.bitmaps());
                }
            }
        }
        return ExitCodes.OK;
    }

    /**
     * The target's options as qcow2_measure reads them, in its order and words: extended_l2, cluster_size, compat,
     * refcount_bits, preallocation, backing_file, encrypt.format (the rest of the creation options do not matter).
     */
    private static CreateOptions target(Map<String, String> o,
                                        java.util.function.Function<String, org.qcow4j.Passphrase> secrets) {
        boolean extendedL2 = Boolean.TRUE.equals(ImageOptions.qapiBool(o.getOrDefault("extended_l2", "off")));
        long clusterSize = Long.parseLong(o.getOrDefault("cluster_size", "65536"));
        if (Long.bitCount(clusterSize) != 1 || clusterSize < 512 || clusterSize > 2 << 20) {
            throw new IllegalArgumentException("Cluster size must be a power of two between 512 and 2048k");
        }
        if (extendedL2 && clusterSize < 16384) {
            throw new IllegalArgumentException("Extended L2 entries are only supported with cluster sizes of at least "
                    + "16384 bytes");
        }
        String compat = o.getOrDefault("compat", "1.1");
        int version = switch (compat) {
            case "0.10", "v2" -> 2;
            case "1.1", "v3" -> 3;
            default -> throw new IllegalArgumentException("Invalid compatibility level: '" + compat + "'");
        };
        long refcountBits = Long.parseLong(o.getOrDefault("refcount_bits", "16"));
        if (refcountBits <= 0 || refcountBits > 64 || Long.bitCount(refcountBits) != 1) {
            throw new IllegalArgumentException("Refcount width must be a power of two and may not exceed 64 bits");
        }
        if (version < 3 && refcountBits != 16) {
            throw new IllegalArgumentException("Different refcount widths than 16 bits require compatibility level 1.1 "
                    + "or above (use compat=1.1 or greater)");
        }
        String mode = o.getOrDefault("preallocation", "off");
        CreateOptions.Preallocation preallocation = switch (mode) {
            case "off" -> CreateOptions.Preallocation.OFF;
            case "metadata" -> CreateOptions.Preallocation.METADATA;
            case "falloc" -> CreateOptions.Preallocation.FALLOC;
            case "full" -> CreateOptions.Preallocation.FULL;
            default -> throw new IllegalArgumentException("invalid parameter value: " + mode);
        };
        CreateOptions c = new CreateOptions(0, version, Long.numberOfTrailingZeros(clusterSize),
                Long.numberOfTrailingZeros(refcountBits), 0, extendedL2, false, null, false, preallocation,
                o.get("backing_file"), null);
        if ("luks".equals(o.get("encrypt.format"))) {
            // qcrypto_block_calculate_payload_offset: a LUKS create thrown away, which needs its secret
            String id = o.get("encrypt.key-secret");
            if (id == null) {
                throw new IllegalArgumentException("Parameter 'encrypt.key-secret' is required for cipher");
            }
            org.qcow4j.EncryptionOptions d = org.qcow4j.EncryptionOptions.luks(secrets.apply(id));
            c = c.withEncryption(new org.qcow4j.EncryptionOptions(d.passphrase(),
                    o.getOrDefault("encrypt.cipher-alg", d.cipherAlg()), o.getOrDefault("encrypt.cipher-mode", d.cipherMode()),
                    o.getOrDefault("encrypt.ivgen-alg", d.ivgenAlg()), o.get("encrypt.ivgen-hash-alg"),
                    o.getOrDefault("encrypt.hash-alg", d.hashAlg()), d.iterTimeMs()));
        }
        return c;
    }
}
