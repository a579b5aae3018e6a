package org.qcow4j.cli;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.qcow4j.DiskImage;
import org.qcow4j.Extent;
import org.qcow4j.Qcow2Metadata;

/**
 * QEMU's blkdebug driver above an image ({@code json:{'driver': 'blkdebug', 'image': {...}, 'inject-error': [...]}}),
 * as qemu-img's operands take it, with the rules QEMU applies from the start ({@code 'event': 'none'}): a read or block
 * status request that covers a rule's sector (or any, without {@code sector}) fails with the rule's errno (EIO by
 * default), as blkdebug's {@code rule_check}. What else blkdebug has (events, states, {@code once}, {@code
 * immediately}, config files, writes) is refused by name; blkdebug as the file node, without rules, is
 * {@link ImageSpec}'s.
 */
final class BlkdebugFilter {
    /** One inject-error rule: the requests it fails (read, block status) at a byte offset (-1: any), its errno. */
    private record Rule(boolean read, boolean blockStatus, long offset, int errno) {
    }

    private final Map<String, String> image;
    private final List<Rule> rules;

    private BlkdebugFilter(Map<String, String> image, List<Rule> rules) {
        this.image = image;
        this.rules = rules;
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
        return new BlkdebugFilter(image, rules);
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
        return new Rule(read, blockStatus, offset, errno);
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

    /** {@code image} with the filter above it (closing it closes the image). */
    DiskImage wrap(DiskImage image) {
        return rules.isEmpty() ? image : new Filtered(image);
    }

    /** blkdebug's {@code rule_check}: the first rule of the kind whose sector lies in the request, or none. */
    private void check(boolean blockStatus, long offset, long bytes, String filename) throws IOException {
        for (Rule r : rules) {
            if ((blockStatus ? r.blockStatus() : r.read())
                    && (r.offset() < 0 || (bytes > 0 && r.offset() >= offset && r.offset() < offset + bytes))) {
                throw new IOException(filename + ": blkdebug: injected " + (blockStatus ? "block status" : "read")
                        + " error: " + IoErrno.strerror(r.errno()));
            }
        }
    }

    private final class Filtered implements DiskImage {
        private final DiskImage in;

        Filtered(DiskImage in) {
            this.in = in;
        }

        @Override
        public String filename() {
            return in.filename();
        }

        @Override
        public String format() {
            return in.format();
        }

        @Override
        public long size() {
            return in.size();
        }

        @Override
        public DiskImage backing() {
            return in.backing();
        }

        @Override
        public Optional<Qcow2Metadata> qcow2() {
            return in.qcow2();
        }

        @Override
        public void read(ByteBuffer dst, long offset) throws IOException {
            check(false, offset, dst.remaining(), in.filename());
            in.read(dst, offset);
        }

        @Override
        public Extent extentAt(long offset, long maxLength) throws IOException {
            check(true, offset, maxLength, in.filename());
            return in.extentAt(offset, maxLength);
        }

        @Override
        public void close() throws IOException {
            in.close();
        }
    }
}
