package org.qcow4j.cli;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.FilterDiskImage;

/**
 * QEMU's blkdebug driver above an image ({@code json:{'driver': 'blkdebug', 'image': {...}, 'inject-error': [...]}}),
 * as qemu-img's operands take it, with the rules QEMU applies from the start ({@code 'event': 'none'}): a read or block
 * status request that covers a rule's sector (or any, without {@code sector}) fails with the rule's errno (EIO by
 * default), as blkdebug's {@code rule_check}. What else blkdebug has (events, states, {@code once}, {@code
 * immediately}, config files, writes) is refused by name; blkdebug as the file node, without rules, is
 * {@link ImageSpec}'s.
 */
final class BlkdebugFilter {
    /**
     * One inject-error rule: the requests it fails (read, block status) at a byte offset (-1: any), its errno; or,
     * with {@code dataReads}, every read of the image's own data clusters (the event {@code read_aio}, which QEMU's
     * qcow2 driver raises on its file before it reads a data cluster, with {@code once} off).
     */
    private record Rule(boolean read, boolean blockStatus, long offset, int errno, boolean dataReads) {
    }

    private final Map<String, String> image;
    private final List<Rule> rules;
    /** The name the image is known by above the filter (a {@code blkdebug:} operand), or null: the image's own. */
    private final String name;

    private BlkdebugFilter(Map<String, String> image, List<Rule> rules, String name) {
        this.image = image;
        this.rules = rules;
        this.name = name;
    }

    /**
     * The filter that options (a {@code json:} name's, flattened) put above their image, or null when they do not
     * describe blkdebug with an {@code image} child.
     */
    static BlkdebugFilter above(Map<String, String> options) throws ImageSpec.Refused {
        if (!"blkdebug".equals(options.get("driver")) || options.keySet().stream().noneMatch(k -> k.startsWith("image."))) {
            return null;
        }
        Map<String, String> image = new LinkedHashMap<>();
        Map<Integer, Map<String, String>> inject = new java.util.TreeMap<>();
        for (Map.Entry<String, String> e : options.entrySet()) {
            String k = e.getKey();
            if (k.equals("driver")) {
                continue;
            }
            if (k.startsWith("image.")) {
                image.put(k.substring("image.".length()), e.getValue());
            } else if (k.startsWith("inject-error.")) {
                String rest = k.substring("inject-error.".length());
                int dot = rest.indexOf('.');
                int index;
                try {
                    index = Integer.parseInt(dot < 0 ? rest : rest.substring(0, dot));
                } catch (NumberFormatException ex) {
                    throw new ImageSpec.Refused("Invalid parameter '" + k + "'");
                }
                inject.computeIfAbsent(index, i -> new LinkedHashMap<>()).put(dot < 0 ? "" : rest.substring(dot + 1),
                        e.getValue());
            } else {
                throw new ImageSpec.Refused("blkdebug's '" + k + "' is not supported by qcow4j (only its inject-error "
                        + "rules with 'event': 'none' on reads and block status)");
            }
        }
        List<Rule> rules = new ArrayList<>();
        for (Map<String, String> r : inject.values()) {
            rules.add(rule(r));
        }
        return new BlkdebugFilter(image, rules, null);
    }

    private static Rule rule(Map<String, String> r) throws ImageSpec.Refused {
        boolean read = true;
        boolean blockStatus = false;
        long offset = -1;
        int errno = IoErrno.EIO;
        for (Map.Entry<String, String> e : r.entrySet()) {
            String v = e.getValue();
            switch (e.getKey()) {
                case "event" -> {
                    if (!v.equals("none")) {
                        throw new ImageSpec.Refused("blkdebug's event '" + v + "' is not supported by qcow4j (rules "
                                + "with 'event': 'none' only)");
                    }
                }
                case "iotype" -> {
                    read = v.equals("read");
                    blockStatus = v.equals("block-status");
                    if (!read && !blockStatus) {
                        throw new ImageSpec.Refused("blkdebug's iotype '" + v + "' is not supported by qcow4j (read "
                                + "and block-status only)");
                    }
                }
                case "errno" -> errno = -Math.abs(number(e.getKey(), v));
                case "sector" -> offset = Math.multiplyExact(number(e.getKey(), v), 512L);
                case "once" -> {
                    if (!v.equals("false") && !v.equals("off")) {
                        throw new ImageSpec.Refused("blkdebug's 'once' is not supported by qcow4j");
                    }
                }
                default -> throw new ImageSpec.Refused("blkdebug's inject-error '" + e.getKey()
                        + "' is not supported by qcow4j");
            }
        }
        return new Rule(read, blockStatus, offset, errno, false);
    }

    /**
     * {@code blkdebug:CONFIG:FILE} as a qemu-img operand: the filter its config file describes, for the image FILE
     * opened below it ({@link #imageName}); null for any other name. Of the config file's rules, {@code [inject-error]}
     * sections on the event {@code read_aio} with {@code once} off are taken; the others are refused by name.
     */
    static BlkdebugFilter below(String operand) throws ImageSpec.Refused {
        if (!operand.startsWith("blkdebug:")) {
            return null;
        }
        String rest = operand.substring("blkdebug:".length());
        int c = rest.indexOf(':');
        if (c < 0) {
            throw new ImageSpec.Refused("blkdebug requires both config file and image path");
        }
        List<Rule> rules = new ArrayList<>();
        if (c > 0) {
            List<String> lines;
            try {
                lines = java.nio.file.Files.readAllLines(java.nio.file.Path.of(rest.substring(0, c)),
                        java.nio.charset.StandardCharsets.ISO_8859_1);
            } catch (IOException | RuntimeException e) {
                throw new ImageSpec.Refused("Could not read blkdebug config file: " + IoErrno.strerror(IoErrno.of(e)));
            }
            Map<String, String> section = null;
            for (String line : lines) {
                String t = line.strip();
                if (t.isEmpty() || t.startsWith("#")) {
                    continue;
                }
                if (t.startsWith("[")) {
                    if (section != null) {
                        rules.add(configRule(section));
                    }
                    if (!t.equals("[inject-error]")) {
                        throw new ImageSpec.Refused("blkdebug's " + t + " sections are not supported by qcow4j");
                    }
                    section = new LinkedHashMap<>();
                    continue;
                }
                int eq = t.indexOf('=');
                if (section == null || eq < 0) {
                    throw new ImageSpec.Refused("Could not read blkdebug config file: Invalid argument");
                }
                String v = t.substring(eq + 1).strip();
                if (v.length() >= 2 && v.startsWith("\"") && v.endsWith("\"")) {
                    v = v.substring(1, v.length() - 1);
                }
                section.put(t.substring(0, eq).strip(), v);
            }
            if (section != null) {
                rules.add(configRule(section));
            }
        }
        Map<String, String> image = new LinkedHashMap<>();
        image.put("filename", rest.substring(c + 1));
        return new BlkdebugFilter(image, rules, operand);
    }

    /** A config file's {@code [inject-error]} section: only {@code event = "read_aio"} with {@code once} off. */
    private static Rule configRule(Map<String, String> section) throws ImageSpec.Refused {
        int errno = IoErrno.EIO;
        boolean readAio = false;
        for (Map.Entry<String, String> e : section.entrySet()) {
            String v = e.getValue();
            switch (e.getKey()) {
                case "event" -> readAio = v.equals("read_aio");
                case "errno" -> errno = -Math.abs(number(e.getKey(), v));
                case "once" -> {
                    if (!v.equals("off") && !v.equals("false")) {
                        throw new ImageSpec.Refused("blkdebug's 'once' is not supported by qcow4j");
                    }
                }
                default -> throw new ImageSpec.Refused("blkdebug's inject-error '" + e.getKey()
                        + "' is not supported by qcow4j");
            }
            if (e.getKey().equals("event") && !readAio) {
                throw new ImageSpec.Refused("blkdebug's event '" + v + "' is not supported by qcow4j (read_aio only, "
                        + "in config files)");
            }
        }
        if (!readAio) {
            throw new ImageSpec.Refused("blkdebug rules without an event are not supported by qcow4j in config files");
        }
        return new Rule(false, false, -1, errno, true);
    }

    private static int number(String key, String v) throws ImageSpec.Refused {
        try {
            return Integer.parseInt(v);
        } catch (NumberFormatException ex) {
            throw new ImageSpec.Refused("Parameter '" + key + "' expects a number");
        }
    }

    /** The options of the image below the filter. */
    Map<String, String> imageOptions() {
        return image;
    }

    /** The file name of the image below a {@code blkdebug:CONFIG:FILE} operand. */
    String imageName() {
        return image.get("filename");
    }

    /** {@code image} with the filter above it (closing it closes the image). */
    DiskImage wrap(DiskImage image) {
        return rules.isEmpty() && name == null ? image : new Filtered(image);
    }

    /** blkdebug's {@code rule_check}: the first rule of the kind whose sector lies in the request, or none. */
    private void check(DiskImage in, boolean blockStatus, long offset, long bytes, String filename) throws IOException {
        for (Rule r : rules) {
            if (r.dataReads() && !blockStatus && readsOwnData(in, offset, bytes)) {
                throw new IOException(filename + ": blkdebug: injected read_aio error: " + IoErrno.strerror(r.errno()));
            }
            if ((blockStatus ? r.blockStatus() : r.read())
                    && (r.offset() < 0 || (bytes > 0 && r.offset() >= offset && r.offset() < offset + bytes))) {
                throw new IOException(filename + ": blkdebug: injected " + (blockStatus ? "block status" : "read")
                        + " error: " + IoErrno.strerror(r.errno()));
            }
        }
    }

    /** Whether a read of the range reads one of the image's own data clusters (not compressed, zero or backing). */
    private static boolean readsOwnData(DiskImage in, long offset, long bytes) throws IOException {
        for (long pos = offset, end = offset + bytes; pos < end; ) {
            Extent e = in.extentAt(pos, end - pos);
            if (e.depth() == 0 && e.data() && e.hasHostOffset()) {
                return true;
            }
            pos = e.end();
        }
        return false;
    }

    private final class Filtered extends FilterDiskImage {
        Filtered(DiskImage in) {
            super(in);
        }

        @Override
        public String filename() {
            return name != null ? name : in.filename();
        }

        @Override
        public void read(ByteBuffer dst, long offset) throws IOException {
            check(in, false, offset, dst.remaining(), filename());
            in.read(dst, offset);
        }

        @Override
        public Extent extentAt(long offset, long maxLength) throws IOException {
            check(in, true, offset, maxLength, filename());
            return in.extentAt(offset, maxLength);
        }
    }
}
