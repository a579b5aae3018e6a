package org.qcow4j.cli;

import java.io.PrintWriter;
import java.time.Instant;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.qcow4j.DiskImage;
import org.qcow4j.Qcow2Metadata;

/** {@code info}: what qemu-img info prints, field for field. */
final class InfoCommand extends Command {
    private static final CommandLine.Option BACKING_CHAIN = CommandLine.Option.flag(
            "Show every image of the backing chain.", "--backing-chain");

    InfoCommand() {
        super("info", "info [-f FMT] [--output=human|json] [--backing-chain] IMAGE",
                "Show an image's format, size, backing file and format-specific details.",
                FORMAT, OUTPUT, BACKING_CHAIN, FORCE_SHARE, OBJECT, IMAGE_OPTS);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        boolean json = ImageArgs.json(args);
        boolean backingChain = args.has("--backing-chain");
        List<Map<String, Object>> infos = new ArrayList<>();
        // As qemu-img's collect_image_info_list: each image opened alone (a missing backing file does not stop
        // plain info), the chain followed by the backing names the images give, in the formats they give.
        Set<String> seen = new HashSet<>();
        String filename = ImageArgs.oneImage(args);
        String format = args.get("-f", null);
        AllocatedSize actualSize = args.has("--image-opts") ? null : AllocatedSize.start(filename);
        while (filename != null) {
            if (!seen.add(filename)) {
                err.error("Backing file '" + filename + "' creates an infinite loop.");
                return ExitCodes.FAILURE;
            }
            // (only the first image is given as options: collect_image_info_list opens its backing files by name)
            try (DiskImage d = infos.isEmpty() ? ImageArgs.open(args, filename, format, ImageArgs.Scope.METADATA)
                    : ImageArgs.openByName(args, filename, format, ImageArgs.Scope.METADATA)) {
                Map<String, Object> info = ImageInfo.of(d, infos.isEmpty() ? actualSize : null);
                String shown = infos.isEmpty() ? ImageArgs.jsonName(args, filename, d) : null;
                if (shown != null) {
                    info.put("filename", shown);
                }
                infos.add(info);
                Qcow2Metadata q = backingChain ? d.qcow2().orElse(null) : null;
                filename = q == null ? null : q.fullBackingFilename();
                format = q == null ? null : q.header().backingFormat();
            }
        }
        if (json) {
            out.println(QemuJson.render(backingChain ? infos : infos.get(0)));
        } else {
            for (int i = 0; i < infos.size(); i++) {
                if (i > 0) {
                    out.println();
                }
                printHuman(out, infos.get(i));
            }
        }
        return ExitCodes.OK;
    }

    /** qemu-img's {@code bdrv_image_info_dump}. */
    @SuppressWarnings("unchecked")
    private static void printHuman(PrintWriter out, Map<String, Object> m) {
        out.println("image: " + m.get("filename"));
        out.println("file format: " + m.get("format"));
        long size = (Long) m.get("virtual-size");
        out.println("virtual size: " + Sizes.human(size) + " (" + size + " bytes)");
        Object actual = m.get("actual-size");
        out.println("disk size: " + (actual == null ? "unavailable" : Sizes.human((Long) actual)));
        if (Boolean.TRUE.equals(m.get("encrypted"))) {
            out.println("encrypted: yes");
        }
        if (m.containsKey("cluster-size")) {
            out.println("cluster_size: " + m.get("cluster-size"));
        }
        if (Boolean.TRUE.equals(m.get("dirty-flag"))) {
            out.println("cleanly shut down: no");
        }
        if (m.containsKey("backing-filename")) {
            String b = (String) m.get("backing-filename");
            String full = (String) m.get("full-backing-filename");
            out.println("backing file: " + b + (full != null && !full.equals(b) ? " (actual path: " + full + ")" : ""));
        }
        if (m.containsKey("backing-filename-format")) {
            out.println("backing file format: " + m.get("backing-filename-format"));
        }
        if (m.containsKey("snapshots")) {
            printSnapshots(out, (List<Object>) m.get("snapshots"));
        }
        if (m.containsKey("format-specific")) {
            out.println("Format specific information:");
            ImageInfo.dumpSpecific(out, ((Map<String, Object>) m.get("format-specific")).get("data"));
        }
    }

    /** Built on first use: java.time's set-up costs every command's start-up when it sits in a static field here. */
    private static final class Dates {
        static final DateTimeFormatter DATE = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss");
    }

    /** qemu-img's snapshot table ({@code bdrv_snapshot_dump}): "Snapshot list:", the heading, a line per snapshot. */
    @SuppressWarnings("unchecked")
    static void printSnapshots(PrintWriter out, List<Object> snapshots) {
        out.println("Snapshot list:");
        out.println(String.format("%-10s%-17s%8s%20s%13s%11s", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT"));
        for (Object o : snapshots) {
            Map<String, Object> s = (Map<String, Object>) o;
            long secs = (Long) s.get("vm-clock-sec");
            long nsec = (Long) s.get("vm-clock-nsec");
            String clock = String.format("%02d:%02d:%02d.%03d", secs / 3600, (secs / 60) % 60, secs % 60, nsec / 1_000_000);
            String date = Dates.DATE.format(Instant.ofEpochSecond((Long) s.get("date-sec")).atZone(ZoneId.systemDefault()));
            Object icount = s.get("icount");
            out.println(String.format("%-9s %-16s %8s%20s%13s%11s", s.get("id"), s.get("name"),
                    Sizes.human((Long) s.get("vm-state-size")), date, clock, icount == null ? "" : icount.toString()));
        }
    }
}
