package org.qcow4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.Qcow2Metadata;
import org.qcow4j.format.Bitmap;
import org.qcow4j.format.Feature;
import org.qcow4j.format.Header;
import org.qcow4j.format.Snapshot;

/**
 * What {@code qemu-img info} reports about one image, as an ordered tree of maps, lists, strings, numbers and
 * booleans with qemu-img's field names, in qemu-img 7.2's order. Rendered as JSON by {@link QemuJson} and as
 * text by {@link InfoCommand}.
 */
final class ImageInfo {
    private ImageInfo() {
    }

    static Map<String, Object> of(DiskImage image) throws IOException {
        return of(image, null);
    }

    /**
     * As {@link #of(DiskImage)}, with the file's allocated size from {@code actualSize} when it was started before
     * the image opened (see {@link AllocatedSize}), else asked now.
     */
    static Map<String, Object> of(DiskImage image, AllocatedSize actualSize) throws IOException {
        Map<String, Object> m = new LinkedHashMap<>();
        Qcow2Metadata q = image.qcow2().orElse(null);
        Header h = q == null ? null : q.header();
        if (h != null && h.backingFile() != null && h.backingFormat() != null) {
            m.put("backing-filename-format", h.backingFormat());
        }
        if (q != null && !q.snapshots().isEmpty()) {
            List<Object> list = new ArrayList<>();
            for (Snapshot s : q.snapshots()) {
                list.add(snapshot(s));
            }
            m.put("snapshots", list);
        }
        m.put("virtual-size", image.size());
        m.put("filename", ImageArgs.qemuFilename(image.filename()));
        if (h != null) {
            m.put("cluster-size", h.clusterSize());
        }
        m.put("format", image.format());
        Path file = Path.of(image.filename());
        long actual = actualSize != null && actualSize.file().equals(file) ? actualSize.get()
                : Images.allocatedBytes(file);
        if (actual >= 0) {
            m.put("actual-size", actual);
        }
        if (h != null) {
            Map<String, Object> fs = new LinkedHashMap<>();
            fs.put("type", "qcow2");
            fs.put("data", qcow2Specific(q));
            m.put("format-specific", fs);
            if (q.encryption().isPresent()) {
                m.put("encrypted", true);
            }
            if (h.backingFile() != null) {
                // QEMU combines the name with the image's name as it shows it (./a:b.qcow2 gives ./base); a
                // protocol name (file:...) is its full name as it is
                String shown = ImageArgs.qemuFilename(image.filename());
                m.put("full-backing-filename", h.backingFile().startsWith("file:") ? h.backingFile()
                        : shown.equals(image.filename()) ? q.fullBackingFilename()
                        : Images.resolveRelative(shown, h.backingFile()));
                m.put("backing-filename", h.backingFile());
            }
        }
        m.put("dirty-flag", h != null && h.has(Feature.DIRTY));
        return m;
    }

    static Map<String, Object> snapshot(Snapshot s) {
        Map<String, Object> m = new LinkedHashMap<>();
        if (s.icount() != -1) {
            m.put("icount", s.icount());
        }
        m.put("vm-clock-nsec", Long.remainderUnsigned(s.vmClockNsec(), 1_000_000_000L));
        m.put("name", s.name());
        m.put("date-sec", s.dateSec());
        m.put("date-nsec", s.dateNsec());
        m.put("vm-clock-sec", Long.divideUnsigned(s.vmClockNsec(), 1_000_000_000L));
        m.put("id", s.id());
        m.put("vm-state-size", s.vmStateSize());
        return m;
    }

    /** The "data" of qemu-img info's qcow2 "format-specific" (qemu-io's info prints it too). */
    static Map<String, Object> qcow2Specific(Qcow2Metadata q) {
        Header h = q.header();
        Map<String, Object> d = new LinkedHashMap<>();
        if (h.version() == 2) {
            d.put("compat", "0.10");
            d.put("compression-type", h.compressionTypeName());
            d.put("refcount-bits", h.refcountBits());
            return d;
        }
        d.put("compat", "1.1");
        d.put("compression-type", h.compressionTypeName());
        d.put("lazy-refcounts", h.has(Feature.LAZY_REFCOUNTS));
        if (!q.bitmaps().isEmpty()) {
            List<Object> list = new ArrayList<>();
            for (Bitmap b : q.bitmaps()) {
                Map<String, Object> bm = new LinkedHashMap<>();
                List<Object> flags = new ArrayList<>();
                if ((b.flags() & Bitmap.FLAG_IN_USE) != 0) {
                    flags.add("in-use");
                }
                if ((b.flags() & Bitmap.FLAG_AUTO) != 0) {
                    flags.add("auto");
                }
                bm.put("flags", flags);
                bm.put("name", b.name());
                bm.put("granularity", 1L << b.granularityBits());
                list.add(bm);
            }
            d.put("bitmaps", list);
        }
        d.put("refcount-bits", h.refcountBits());
        if (q.dataFile() != null) {
            d.put("data-file", q.dataFile());
        }
        if (h.has(Feature.EXTERNAL_DATA_FILE)) {
            // (also where the header names no data file: QEMU's has_data_file_raw is has_data_file)
            d.put("data-file-raw", h.has(Feature.RAW_EXTERNAL_DATA));
        }
        if (q.encryption().isPresent()) {
            d.put("encrypt", encrypt(q.encryption().get()));
        }
        d.put("corrupt", h.has(Feature.CORRUPT));
        d.put("extended-l2", h.has(Feature.EXTENDED_L2));
        return d;
    }

    /** QEMU's QCryptoBlockInfo, in the order qemu-img prints its keys. */
    private static Map<String, Object> encrypt(org.qcow4j.EncryptionInfo e) {
        Map<String, Object> m = new LinkedHashMap<>();
        if (!e.format().equals("luks")) {
            m.put("format", e.format());
            return m;
        }
        m.put("ivgen-alg", e.ivgenAlg());
        m.put("hash-alg", e.hashAlg());
        m.put("cipher-alg", e.cipherAlg());
        m.put("uuid", e.uuid());
        if (e.ivgenHashAlg() != null) {
            m.put("ivgen-hash-alg", e.ivgenHashAlg());
        }
        m.put("format", e.format());
        m.put("cipher-mode", e.cipherMode());
        List<Object> slots = new ArrayList<>();
        for (org.qcow4j.EncryptionInfo.KeySlot s : e.slots()) {
            Map<String, Object> sm = new LinkedHashMap<>();
            sm.put("active", s.active());
            if (s.active()) {
                sm.put("iters", s.iters());
            }
            sm.put("key-offset", s.keyOffset());
            if (s.active()) {
                sm.put("stripes", (long) s.stripes());
            }
            slots.add(sm);
        }
        m.put("slots", slots);
        m.put("payload-offset", e.payloadOffset());
        m.put("master-key-iters", e.masterKeyIters());
        return m;
    }

    /**
     * qemu's bdrv_image_info_specific_dump (dump_qobject) as qemu-io's info prints it after "Format specific
     * information:": nested maps and lists indented by four spaces a level, keys with '-' shown as ' '.
     */
    static void dumpSpecific(PrintWriter out, Object tree) {
        dumpTree(out, tree, 1);
    }

    @SuppressWarnings("unchecked")
    private static void dumpTree(PrintWriter out, Object v, int level) {
        String pad = "    ".repeat(level);
        if (v instanceof Map<?, ?> map) {
            for (Map.Entry<String, Object> e : ((Map<String, Object>) map).entrySet()) {
                dumpEntry(out, e.getKey().replace('-', ' '), e.getValue(), pad, level);
            }
        } else if (v instanceof List<?> list) {
            for (int i = 0; i < list.size(); i++) {
                dumpEntry(out, "[" + i + "]", list.get(i), pad, level);
            }
        }
    }

    private static void dumpEntry(PrintWriter out, String key, Object value, String pad, int level) {
        if (value instanceof Map<?, ?> || value instanceof List<?>) {
            out.println(pad + key + ":");
            dumpTree(out, value, level + 1);
        } else {
            out.println(pad + key + ": " + value);
        }
    }
}
