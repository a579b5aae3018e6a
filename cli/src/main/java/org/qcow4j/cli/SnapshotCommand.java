package org.qcow4j.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.Images;
import org.qcow4j.InvalidTableException;
import org.qcow4j.OpenOptions;
import org.qcow4j.SnapshotException;
import org.qcow4j.format.Snapshot;

/** {@code snapshot}: list, create, apply or delete internal snapshots, as qemu-img snapshot. */
final class SnapshotCommand extends Command {
    private static final CommandLine.Option LIST = CommandLine.Option.flag("List the snapshots (the default does nothing).", "-l");
    private static final CommandLine.Option CREATE = CommandLine.Option.value("NAME", "Take a snapshot named NAME.", "-c");
    private static final CommandLine.Option APPLY = CommandLine.Option.value("NAME",
            "Revert the disk to the snapshot with id, or else name, NAME.", "-a");
    private static final CommandLine.Option DELETE = CommandLine.Option.value("NAME", "Delete the snapshot named NAME.", "-d");
    private static final CommandLine.Option QUIET = CommandLine.Option.flag("Quiet: print nothing but errors.", "-q");

    SnapshotCommand() {
        super("snapshot", "snapshot [-l | -c NAME | -a NAME | -d NAME] [-q] [-f FMT] [-U] IMAGE",
                "List, create, apply or delete a qcow2 image's internal snapshots, as qemu-img snapshot.",
                LIST, CREATE, APPLY, DELETE, QUIET, FORMAT, FORCE_SHARE, OBJECT, IMAGE_OPTS);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        String action = null;
        String name = null;
        for (var e : args.inOrder()) {
            switch (e.getKey()) {
                case "-l", "-c", "-a", "-d" -> {
                    if (action != null) {
                        throw new CommandLine.UsageException("Cannot mix '-l', '-a', '-c', '-d'");
                    }
                    action = e.getKey();
                    name = e.getValue();
                }
                case "-f" -> {
                    if (err.program() == Program.QEMU_IMG) {
                        throw CommandLine.UsageException.unknownShort('f', "-f"); // qemu-img snapshot has no -f
                    }
                }
                default -> {
                }
            }
        }
        String image = ImageArgs.oneImage(args);
        if (action == null) {
            return ExitCodes.OK; // qemu-img opens the image and does nothing
        }
        if (action.equals("-l")) {
            List<Snapshot> list = ImageArgs.opening(image, () -> {
                ImageArgs.Operand o = ImageArgs.operand(args, image);
                return Images.snapshots(o.path(), o.options());
            });
            if (!list.isEmpty()) {
                List<Object> maps = new ArrayList<>();
                for (Snapshot s : list) {
                    maps.add(ImageInfo.snapshot(s));
                }
                InfoCommand.printSnapshots(out, maps);
            }
            return ExitCodes.OK;
        }
        if (args.has("-U")) {
            throw new java.io.IOException("Could not open '" + image + "': force-share=on can only be used with read-only images");
        }
        ImageArgs.Operand o = ImageArgs.operand(args, image);
        Path path = o.path();
        OpenOptions options = o.options();
        String what = switch (action) {
            case "-c" -> "create";
            case "-a" -> "apply";
            default -> "delete";
        };
        String snapshotName = name;
        try {
            switch (action) {
                case "-c" -> ImageArgs.opening(image, () -> Images.createSnapshot(path, options, snapshotName));
                case "-a" -> ImageArgs.opening(image, () -> Images.applySnapshot(path, options, snapshotName));
                default -> {
                    // qemu-img finds the snapshot by name (bdrv_snapshot_find), then deletes it by id and name
                    List<Snapshot> list = ImageArgs.opening(image, () -> Images.snapshots(path, options.withForceShare(false)));
                    Snapshot found = list.stream().filter(s -> s.name().equals(snapshotName)).findFirst().orElse(null);
                    if (found == null) {
                        err.error("Could not delete snapshot '" + snapshotName + "': snapshot not found");
                        return ExitCodes.FAILURE;
                    }
                    ImageArgs.opening(image, () -> Images.deleteSnapshot(path, options, found.id(), found.name()));
                }
            }
        } catch (SnapshotException e) {
            err.error("Could not " + what + " snapshot '" + snapshotName + "': " + qemuWords(action, e));
            return ExitCodes.FAILURE;
        } catch (InvalidTableException e) {
            if (err.program() == Program.QCOW4J) {
                throw e;
            }
            if (action.equals("-a")) {
                // qcow2_snapshot_goto reports the table's fault itself, then bdrv_snapshot_goto fails with its errno
                err.error(e.qemuWords());
                err.error("Could not apply snapshot '" + snapshotName + "': Failed to load snapshot: " + e.reason().strerror());
            } else {
                err.error("Could not " + what + " snapshot '" + snapshotName + "': " + e.qemuWords());
            }
            return ExitCodes.FAILURE;
        }
        return ExitCodes.OK;
    }

    /** What qemu-img says after "Could not ACTION snapshot 'NAME': " for a refused operation. */
    private static String qemuWords(String action, SnapshotException e) {
        return switch (action) {
            case "-c" -> switch (e.reason()) {
                case TOO_BIG -> "-27 (File too large)";
                case NOT_SUPPORTED, EXTERNAL_DATA_FILE -> "-95 (Operation not supported)";
                case NOT_FOUND -> "-2 (No such file or directory)";
                case REFCOUNT_OVERFLOW -> "-22 (Invalid argument)";
                case UNCOUNTED_CLUSTER -> "-11 (Resource temporarily unavailable)";
            };
            case "-a" -> switch (e.reason()) {
                case NOT_SUPPORTED -> "Block driver does not support snapshots";
                case EXTERNAL_DATA_FILE -> "Failed to load snapshot: Operation not supported";
                case NOT_FOUND -> "Failed to load snapshot: No such file or directory";
                case TOO_BIG -> "Failed to load snapshot: File too large";
                case REFCOUNT_OVERFLOW -> "Failed to load snapshot: Invalid argument";
                case UNCOUNTED_CLUSTER -> "Failed to load snapshot: Resource temporarily unavailable";
            };
            default -> switch (e.reason()) {
                case NOT_FOUND -> "snapshot not found";
                case NOT_SUPPORTED -> "Block driver does not support snapshots";
                // qemu-img finds no snapshot to delete: QEMU's qcow2_snapshot_list refuses such an image
                case EXTERNAL_DATA_FILE -> "snapshot not found";
                case TOO_BIG -> "Failed to remove snapshot from snapshot list: File too large";
                case REFCOUNT_OVERFLOW -> "Failed to free the cluster and L1 table: Invalid argument";
                case UNCOUNTED_CLUSTER -> "Failed to free the cluster and L1 table: Resource temporarily unavailable";
            };
        };
    }
}
