package org.qcow4j.cli;

import java.io.PrintWriter;
import java.util.Map;
import org.qcow4j.AmendOptions;
import org.qcow4j.ImageOperationException;
import org.qcow4j.InvalidTableException;
import org.qcow4j.Images;

/** {@code amend}: change a qcow2 image's options in place, as qemu-img amend (qemu-img.c's img_amend). */
final class AmendCommand extends Command {
    private static final CommandLine.Option OPTIONS = CommandLine.Option.value("OPTIONS",
            "What to change: compat, lazy_refcounts, refcount_bits, data_file, data_file_raw, size (-o help lists them).",
            "-o");
    private static final CommandLine.Option PROGRESS = CommandLine.Option.flag("Show progress.", "-p");
    private static final CommandLine.Option QUIET = CommandLine.Option.flag("Quiet: print nothing but errors.", "-q");
    private static final CommandLine.Option CACHE = CommandLine.Option.value("CACHE", "Cache mode (checked).", "-t");
    private static final CommandLine.Option FORCE = CommandLine.Option.flag(
            "Allow LUKS key slot changes that may lose data (overwrite an active slot, erase the last one).", "--force");

    /** qcow2's amend options (qcow2_amend_opts), and their types. */
    static final Map<String, ImageOptions.Type> QCOW2_AMEND = Map.ofEntries(Map.entry("compat", ImageOptions.Type.STRING),
            Map.entry("backing_file", ImageOptions.Type.STRING), Map.entry("backing_fmt", ImageOptions.Type.STRING),
            Map.entry("data_file", ImageOptions.Type.STRING), Map.entry("data_file_raw", ImageOptions.Type.BOOL),
            Map.entry("lazy_refcounts", ImageOptions.Type.BOOL), Map.entry("refcount_bits", ImageOptions.Type.NUMBER),
            Map.entry("size", ImageOptions.Type.SIZE), Map.entry("encrypt.state", ImageOptions.Type.STRING),
            Map.entry("encrypt.keyslot", ImageOptions.Type.NUMBER), Map.entry("encrypt.old-secret", ImageOptions.Type.STRING),
            Map.entry("encrypt.new-secret", ImageOptions.Type.STRING),
            Map.entry("encrypt.iter-time", ImageOptions.Type.NUMBER));

    private static final String HELP = """
            Amend options for 'qcow2':
              backing_file=<str>     - File name of a base image
              backing_fmt=<str>      - Image format of the base image
              compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])
              data_file=<str>        - File name of an external data file
              data_file_raw=<bool (on/off)> - The external data file must stay valid as a raw image
              encrypt.iter-time=<num> - Time to spend in PBKDF in milliseconds
              encrypt.keyslot=<num>  - Select a single keyslot to modify explicitly
              encrypt.new-secret=<str> - New secret to set in the matching keyslots. Empty string to erase
              encrypt.old-secret=<str> - Select all keyslots that match this password
              encrypt.state=<str>    - Select new state of affected keyslots (active/inactive)
              lazy_refcounts=<bool (on/off)> - Postpone refcount updates
              refcount_bits=<num>    - Width of a reference count entry in bits
              size=<size>            - Virtual disk size
            """;

    AmendCommand() {
        super("amend", "amend -o OPTIONS [-f FMT] [-p] [-q] [-t CACHE] [--force] IMAGE",
                "Change a qcow2 image's version, lazy refcounts, data file flags, size or LUKS key slots in place, as qemu-img amend.",
                OPTIONS, FORMAT, PROGRESS, QUIET, CACHE, FORCE, OBJECT, IMAGE_OPTS);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        String spec = ImageOptions.optionList(args.all("-o"));
        if (spec == null) {
            throw new CommandLine.UsageException("Must specify options (-o)");
        }
        String format = args.get("-f", null);
        Map<String, String> given = ImageOptions.parse(spec);
        boolean help = given.containsKey("help") || given.containsKey("?");
        QemuProgress progress = new QemuProgress(out, args.has("-p") && !args.has("-q"), 1.0f);
        try {
            if (format != null && help) {
                return printHelp(format, out, err);
            }
            if (args.positionals().size() != 1) {
                err.error("Expecting one image file name");
                return ExitCodes.FAILURE;
            }
            String image = args.positionals().get(0);
            String cache = args.get("-t", "writeback");
            if (ImageArgs.CacheMode.of(cache) == null) {
                err.error("Invalid cache option: " + cache);
                return ExitCodes.FAILURE;
            }
            ImageArgs.Operand o = ImageArgs.operand(args, image);
            String detected = ImageArgs.opening(image, () -> {
                try (org.qcow4j.DiskImage d = Images.open(o.path(), o.options().withoutBacking())) {
                    return d.format();
                }
            });
            if (help) {
                if (detected.equals("qcow2")) {
                    openAndClose(image, o, err);
                }
                return printHelp(detected, out, err);
            }
            if (!detected.equals("qcow2")) {
                err.error("Format driver '" + detected + "' does not support option amendment");
                return ExitCodes.FAILURE;
            }
            Map<String, String> checked;
            try {
                checked = ImageOptions.check(given, QCOW2_AMEND, "");
            } catch (CommandLine.UsageException e) {
                openAndClose(image, o, err);
                err.error(e.getMessage());
                if (e.getMessage().startsWith("Invalid parameter '")) {
                    try {
                        ImageOptions.check(given, ImageOptions.QCOW2, "");
                        err.println("This option is only supported for image creation");
                    } catch (CommandLine.UsageException notCreate) {
                        // not a creation option either
                    }
                }
                return ExitCodes.FAILURE;
            }
            AmendOptions options = AmendOptions.none().withOpen(o.options()).withProgress(progress::print)
                    .withRepairReport(err::println) // QEMU's repair on open prints its lines bare
                    .withCompat(checked.get("compat"))
                    .withLazyRefcounts(bool(checked.get("lazy_refcounts")))
                    .withRefcountBits(checked.containsKey("refcount_bits")
                            ? (int) Long.parseLong(checked.get("refcount_bits")) : null)
                    .withDataFile(checked.get("data_file"))
                    .withDataFileRaw(bool(checked.get("data_file_raw")))
                    .withBacking(checked.get("backing_file"), checked.get("backing_fmt"))
                    .withSize(checked.containsKey("size") ? Long.parseLong(checked.get("size")) : null)
                    .withKeySlots(keySlots(checked, args))
                    .withForce(args.has("--force"));
            try {
                ImageArgs.opening(image, () -> {
                    Images.amend(o.path(), options);
                    return null;
                });
            } catch (ImageOperationException e) {
                if (err.program() != Program.QCOW4J && e.getCause() instanceof InvalidTableException t) {
                    err.error(t.qemuWords()); // QEMU reports a snapshot's bad table where it meets it, then fails
                }
                String[] lines = (err.program() == Program.QCOW4J ? e.getMessage() : e.qemuMessage()).split("\n");
                err.error(lines[0]);
                for (int i = 1; i < lines.length; i++) {
                    err.println(lines[i]);
                }
                return ExitCodes.FAILURE;
            }
            return ExitCodes.OK;
        } finally {
            progress.end();
        }
    }

    /**
     * qemu-img amend opens the image for writing before it reads the options, so what it prints or refuses then (the
     * options' help, an option it cannot parse) comes after that open and the close: a dirty image repaired (its lines
     * printed), persistent bitmaps flagged in use and stored anew. The image is opened and closed here alike.
     */
    private static void openAndClose(String image, ImageArgs.Operand o, Stderr err) throws java.io.IOException {
        ImageArgs.opening(image, () -> {
            try (org.qcow4j.WritableImage opened = Images.openWritable(o.path(), o.options())) {
                opened.repairDiagnostics().forEach(err::println);
            }
            return null;
        });
    }

    /** The encrypt.* options (null if none): secrets looked up by id, null where none has it (the core says so). */
    private static AmendOptions.KeySlotChange keySlots(Map<String, String> checked, CommandLine args) {
        if (checked.keySet().stream().noneMatch(k -> k.startsWith("encrypt."))) {
            return null;
        }
        String oldId = checked.get("encrypt.old-secret");
        String newId = checked.get("encrypt.new-secret");
        return new AmendOptions.KeySlotChange(checked.get("encrypt.state"), number(checked.get("encrypt.keyslot")),
                oldId, secret(args, oldId), newId, secret(args, newId), number(checked.get("encrypt.iter-time")));
    }

    private static Long number(String v) {
        return v == null ? null : Long.parseLong(v);
    }

    private static org.qcow4j.Passphrase secret(CommandLine args, String id) {
        if (id == null) {
            return null;
        }
        try {
            return args.objects().passphrase(id);
        } catch (QemuObjects.Invalid e) {
            return null;
        }
    }

    private static Boolean bool(String v) {
        return v == null ? null : ImageOptions.qapiBool(v);
    }

    private static int printHelp(String format, PrintWriter out, Stderr err) {
        if (format.equals("qcow2")) {
            out.print(HELP);
            return ExitCodes.OK;
        }
        if (ImageArgs.QEMU_FORMATS.contains(format)) {
            err.error("Format driver '" + format + "' does not support option amendment");
        } else {
            err.error("Unknown file format '" + format + "'");
        }
        return ExitCodes.FAILURE;
    }
}
