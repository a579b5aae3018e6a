package org.qcow4j.cli;

import java.math.BigDecimal;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import org.qcow4j.CreateOptions;
import org.qcow4j.format.Header;

/**
 * qemu-img's {@code -o key=value,...} image options (a doubled comma is a literal comma) and sizes with
 * k/M/G/T/P/E suffixes, turned into {@link CreateOptions}.
 */
final class ImageOptions {
    /**
     * The file protocol's option: QEMU asks XFS for that extent size (FS_IOC_FSSETXATTR), which the JDK cannot do
     * and other file systems ignore. Accepted and shown as qemu-img shows it, with no effect.
     */
    static final String EXTENT_SIZE_HINT = "extent_size_hint";

    private ImageOptions() {
    }

    /** The end of qemu-img create's "Formatting" line for the file protocol's options given. */
    static String describeFileOptions(Map<String, String> given) throws CommandLine.UsageException {
        return given.containsKey(EXTENT_SIZE_HINT) ? " " + EXTENT_SIZE_HINT + "=" + size(given.get(EXTENT_SIZE_HINT)) : "";
    }

    /** Parses one or more {@code -o} strings (later keys win) into an ordered map. */
    static Map<String, String> parse(String spec) throws CommandLine.UsageException {
        Map<String, String> out = new LinkedHashMap<>();
        if (spec == null || spec.isEmpty()) {
            return out;
        }
        StringBuilder cur = new StringBuilder();
        for (int i = 0; i <= spec.length(); i++) {
            char c = i < spec.length() ? spec.charAt(i) : ',';
            if (c == ',' && i + 1 < spec.length() && spec.charAt(i + 1) == ',') {
                cur.append(',');
                i++;
            } else if (c == ',') {
                String kv = cur.toString();
                cur.setLength(0);
                if (kv.isEmpty()) {
                    continue;
                }
                int eq = kv.indexOf('=');
                if (eq <= 0) {
                    throw new CommandLine.UsageException("Invalid option '" + kv + "': expected key=value");
                }
                out.put(kv.substring(0, eq), kv.substring(eq + 1));
            } else {
                cur.append(c);
            }
        }
        return out;
    }

    /**
     * A size: bytes, or a number with one of qemu's k/M/G/T/P/E suffixes (binary units; fractions allowed). Not
     * qemu's {@link QemuNumbers#strtosz}: blanks around the number, exponents and a fraction without a suffix
     * (rounded down) are accepted, hex and a '+' are not, and the messages are qcow4j's.
     */
    static long size(String text) throws CommandLine.UsageException {
        String t = text.trim();
        long unit = t.isEmpty() ? -1 : QemuNumbers.suffixMul(t.charAt(t.length() - 1));
        if (unit > 0) {
            t = t.substring(0, t.length() - 1);
        } else {
            unit = 1;
        }
        try {
            if (t.isEmpty() || t.startsWith("-") || t.startsWith("+")) {
                throw new NumberFormatException(text);
            }
            BigDecimal v = new BigDecimal(t).multiply(BigDecimal.valueOf(unit));
            if (v.compareTo(BigDecimal.valueOf(Long.MAX_VALUE)) > 0) {
                throw new CommandLine.UsageException("Image size '" + text + "' is too large");
            }
            if (v.compareTo(BigDecimal.ONE) < 0) {
                return 0; // at once: rounding "1e-2222220" down divides by 10^2222221
            }
            return v.setScale(0, java.math.RoundingMode.DOWN).longValueExact();
        } catch (NumberFormatException | ArithmeticException e) {
            throw new CommandLine.UsageException("Invalid image size '" + text
                    + "': use a number of bytes, optionally with a k, M, G, T, P or E suffix");
        }
    }

    /** Applies qcow2 creation options to {@code base}; unknown keys are refused like qemu-img's. */
    static CreateOptions apply(CreateOptions base, Map<String, String> o) throws CommandLine.UsageException {
        int version = base.version();
        int clusterBits = base.clusterBits();
        int refcountOrder = base.refcountOrder();
        int compression = base.compressionType();
        boolean extendedL2 = base.extendedL2();
        boolean lazy = base.lazyRefcounts();
        String dataFile = base.dataFile();
        boolean dataFileRaw = base.dataFileRaw();
        CreateOptions.Preallocation prealloc = base.preallocation();
        String backing = base.backingFile();
        String backingFmt = base.backingFormat();
        long size = base.size();
        for (Map.Entry<String, String> e : o.entrySet()) {
            String v = e.getValue();
            switch (e.getKey()) {
                case "compat" -> version = switch (v) {
                    case "0.10", "v2" -> 2;
                    case "1.1", "v3" -> 3;
                    default -> throw new CommandLine.UsageException("Invalid compat version '" + v + "'");
                };
                case "cluster_size" -> {
                    long cs = size(v);
                    if (Long.bitCount(cs) != 1 || cs < 512 || cs > 2 << 20) {
                        throw new CommandLine.UsageException("Cluster size must be a power of two between 512 and 2048k");
                    }
                    clusterBits = Long.numberOfTrailingZeros(cs);
                }
                case "refcount_bits" -> {
                    long bits = number(e.getKey(), v);
                    if (Long.bitCount(bits) != 1 || bits > 64) {
                        throw new CommandLine.UsageException("Refcount width must be a power of two and may not exceed 64 bits");
                    }
                    refcountOrder = Long.numberOfTrailingZeros(bits);
                }
                case "compression_type" -> compression = switch (v) {
                    case "zlib" -> Header.COMPRESSION_ZLIB;
                    case "zstd" -> Header.COMPRESSION_ZSTD;
                    default -> throw new CommandLine.UsageException("Invalid compression_type '" + v + "' (zlib or zstd)");
                };
                case "extended_l2" -> extendedL2 = bool(e.getKey(), v);
                case "lazy_refcounts" -> lazy = bool(e.getKey(), v);
                case "data_file" -> dataFile = v.isEmpty() ? null : v;
                case "data_file_raw" -> dataFileRaw = bool(e.getKey(), v);
                case "preallocation" -> prealloc = switch (v) {
                    case "off" -> CreateOptions.Preallocation.OFF;
                    case "metadata" -> CreateOptions.Preallocation.METADATA;
                    case "falloc" -> CreateOptions.Preallocation.FALLOC;
                    case "full" -> CreateOptions.Preallocation.FULL;
                    default -> throw new CommandLine.UsageException("Invalid preallocation mode: '" + v + "'");
                };
                case "backing_file" -> backing = v;
                case "backing_fmt" -> backingFmt = v;
                case "size" -> size = size(v);
                case EXTENT_SIZE_HINT -> size(v); // checked, then unused: see EXTENT_SIZE_HINT
                case "encrypt.format", "encryption", "encrypt.key-secret" -> throw new CommandLine.UsageException(
                        "Encryption is not supported by qcow4j ('" + e.getKey() + "')");
                default -> throw new CommandLine.UsageException("Invalid parameter '" + e.getKey() + "'");
            }
        }
        return new CreateOptions(size, version, clusterBits, refcountOrder, compression, extendedL2, lazy, dataFile,
                dataFileRaw, prealloc, backing, backingFmt);
    }

    private static long number(String key, String v) throws CommandLine.UsageException {
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new CommandLine.UsageException("Parameter '" + key + "' expects a number, not '" + v + "'");
        }
    }

    private static boolean bool(String key, String v) throws CommandLine.UsageException {
        return switch (v.toLowerCase(Locale.ROOT)) {
            case "on", "yes", "true" -> true;
            case "off", "no", "false" -> false;
            default -> throw new CommandLine.UsageException("Parameter '" + key + "' expects 'on' or 'off'");
        };
    }

    /**
     * The "Formatting ..." line qemu-img create prints: its options in qemu-img's order, sizes as numbers, the size
     * as requested (before rounding), optional ones only when given, strings as given.
     */
    static String describe(String file, CreateOptions o, Map<String, String> given, long requestedSize)
            throws CommandLine.UsageException {
        StringBuilder sb = new StringBuilder("Formatting '").append(file).append("', fmt=qcow2 cluster_size=")
                .append(1L << o.clusterBits()).append(" extended_l2=").append(o.extendedL2() ? "on" : "off");
        if (given.containsKey("preallocation")) {
            sb.append(" preallocation=").append(given.get("preallocation"));
        }
        sb.append(" compression_type=").append(o.compressionType() == Header.COMPRESSION_ZSTD ? "zstd" : "zlib")
                .append(" size=").append(requestedSize);
        if (given.containsKey("compat")) {
            sb.append(" compat=").append(given.get("compat"));
        }
        if (o.backingFile() != null) {
            sb.append(" backing_file=").append(o.backingFile());
            if (o.backingFormat() != null) {
                sb.append(" backing_fmt=").append(o.backingFormat());
            }
        }
        if (o.dataFile() != null) {
            sb.append(" data_file=").append(o.dataFile());
        }
        if (given.containsKey("data_file_raw")) {
            sb.append(" data_file_raw=").append(o.dataFileRaw() ? "on" : "off");
        }
        return sb.append(" lazy_refcounts=").append(o.lazyRefcounts() ? "on" : "off")
                .append(" refcount_bits=").append(1 << o.refcountOrder()).append(describeFileOptions(given)).toString();
    }
}
