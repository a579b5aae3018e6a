package org.qcow4j.cli;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.qcow4j.CreateOptions;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.format.Header;

/**
 * qemu-img's {@code -o key=value,...} image options (a doubled comma is a literal comma), in QEMU's two steps: the
 * options are first checked against the format's list and their types ({@link #check}: unknown keys, sizes, numbers
 * and booleans, before qemu-img prints "Formatting ..."), then applied to {@link CreateOptions}, where the values
 * the driver checks are refused ({@link #apply}, after that line). Messages are qemu-img's.
 */
final class ImageOptions {
    /** How QEMU parses an option's value (QemuOptType). */
    enum Type { SIZE, NUMBER, BOOL, STRING }

    /**
     * The file protocol's option: QEMU asks XFS for that extent size (FS_IOC_FSSETXATTR), which the JDK cannot do
     * and other file systems ignore. Accepted and shown as qemu-img shows it, with no effect.
     */
    static final String EXTENT_SIZE_HINT = "extent_size_hint";

    /**
     * qcow2's creation options and the file protocol's, in the order qemu-img create lists them (qcow2_create_opts
     * then file's, as "Formatting" prints them), and the defaults it shows.
     */
    static final Map<String, Type> QCOW2 = options("encryption", Type.BOOL, "encrypt.format", Type.STRING,
            "encrypt.key-secret", Type.STRING, "encrypt.cipher-alg", Type.STRING, "encrypt.cipher-mode", Type.STRING,
            "encrypt.ivgen-alg", Type.STRING, "encrypt.ivgen-hash-alg", Type.STRING, "encrypt.hash-alg", Type.STRING,
            "encrypt.iter-time", Type.NUMBER, "cluster_size", Type.SIZE, "extended_l2", Type.BOOL,
            "preallocation", Type.STRING, "compression_type", Type.STRING, "size", Type.SIZE, "compat", Type.STRING,
            "backing_file", Type.STRING, "backing_fmt", Type.STRING, "data_file", Type.STRING,
            "data_file_raw", Type.BOOL, "lazy_refcounts", Type.BOOL, "refcount_bits", Type.NUMBER,
            EXTENT_SIZE_HINT, Type.SIZE);
    private static final Map<String, String> QCOW2_DEFAULTS = Map.of("cluster_size", "65536", "extended_l2", "off",
            "compression_type", "zlib", "lazy_refcounts", "off", "refcount_bits", "16");
    /** The luks format's creation options (block/crypto.c), in qemu-img's order. */
    static final Map<String, Type> LUKS = options("size", Type.SIZE, "key-secret", Type.STRING, "cipher-alg", Type.STRING,
            "cipher-mode", Type.STRING, "ivgen-alg", Type.STRING, "ivgen-hash-alg", Type.STRING, "hash-alg", Type.STRING,
            "iter-time", Type.NUMBER, "preallocation", Type.STRING);
    /** raw's: qcow4j makes sparse raw files only, so of the file protocol's options just the hint. */
    static final Map<String, Type> RAW = options("size", Type.SIZE, EXTENT_SIZE_HINT, Type.SIZE);

    private static final String SIZE_HINT = "\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
            + "and exabytes, respectively.";

    private ImageOptions() {
    }

    private static Map<String, Type> options(Object... keysAndTypes) {
        Map<String, Type> m = new LinkedHashMap<>();
        for (int i = 0; i < keysAndTypes.length; i += 2) {
            m.put((String) keysAndTypes[i], (Type) keysAndTypes[i + 1]);
        }
        return Collections.unmodifiableMap(m);
    }

    /**
     * Every {@code -o} given, joined as qemu-img's accumulate_options joins them; one that starts with a comma or
     * ends with an odd number of them is refused, as there.
     */
    static String optionList(List<String> values) throws CommandLine.UsageException {
        for (String v : values) {
            int trailing = 0;
            while (trailing < v.length() && v.charAt(v.length() - 1 - trailing) == ',') {
                trailing++;
            }
            if (v.isEmpty() || v.charAt(0) == ',' || trailing % 2 == 1) {
                throw CommandLine.UsageException.withoutHint("Invalid option list: " + v);
            }
        }
        return values.isEmpty() ? null : String.join(",", values);
    }

    /**
     * Parses an option list (later keys win) into an ordered map of the strings given. A word without '=' is a key
     * with no value, which {@link #check} refuses as an invalid parameter, as QEMU does.
     */
    static Map<String, String> parse(String spec) {
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
                out.put(eq < 0 ? kv : kv.substring(0, eq), eq < 0 ? null : kv.substring(eq + 1));
            } else {
                cur.append(c);
            }
        }
        return out;
    }

    /**
     * QEMU's first step (qemu_opts_do_parse): every key must be one of {@code known}, and sizes, numbers and booleans
     * must parse. Returns the options with sizes and numbers as decimal numbers (what "Formatting" prints). A mistake
     * is refused with {@code prefix} (qemu-img create's "FILE: ") before QEMU's message.
     */
    static Map<String, String> check(Map<String, String> given, Map<String, Type> known, String prefix)
            throws CommandLine.UsageException {
        Map<String, String> out = new LinkedHashMap<>();
        for (Map.Entry<String, String> e : given.entrySet()) {
            String key = e.getKey();
            String v = e.getValue();
            Type type = known.get(key);
            if (type == null || v == null) {
                throw CommandLine.UsageException.withoutHint(prefix + "Invalid parameter '" + key + "'");
            }
            out.put(key, switch (type) {
                case SIZE -> {
                    long n = QemuNumbers.strtosz(v, w -> { });
                    if (n == QemuNumbers.ERANGE) {
                        throw CommandLine.UsageException.withoutHint(prefix + "Value '" + v + "' is out of range for parameter '" + key + "'");
                    }
                    if (n < 0) {
                        throw CommandLine.UsageException.withoutHint(
                                prefix + "Parameter '" + key + "' expects a non-negative number below 2^64" + SIZE_HINT);
                    }
                    yield Long.toString(n);
                }
                case NUMBER -> {
                    // qemu_strtou64(value, NULL, 0): a negative number wraps around, printed signed
                    QemuNumbers.Strtoull n = QemuNumbers.strtoull(v, 0);
                    if (n.end() != v.length() || n.overflow()) {
                        throw CommandLine.UsageException.withoutHint(prefix + "Parameter '" + key + "' expects a number");
                    }
                    yield Long.toString(n.value().longValue());
                }
                case BOOL -> {
                    bool(key, v, prefix);
                    yield v;
                }
                case STRING -> v;
            });
        }
        return out;
    }

    /**
     * qemu-img create's SIZE operand (cvtnum "image size"): QEMU's size syntax, at most INT64_MAX, with its two
     * messages.
     */
    static long size(String text) throws CommandLine.UsageException {
        long n = QemuNumbers.strtosz(text, w -> { });
        if (n == QemuNumbers.ERANGE) {
            throw CommandLine.UsageException.withoutHint(
                    "Invalid image size specified. Must be between 0 and " + Long.MAX_VALUE + ".");
        }
        if (n < 0) {
            throw CommandLine.UsageException.reports("Invalid image size specified. You may use k, M, G, T, P or E "
                    + "suffixes for", "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        }
        return n;
    }

    /**
     * QEMU's second step: applies options {@link #check}ed against {@link #QCOW2} to {@code base}, refusing with an
     * IllegalArgumentException (qemu-img's message) the values qcow2's create refuses, as {@link
     * CreateOptions#validate} refuses combinations. Encryption is refused by name for {@code file}.
     */
    static CreateOptions apply(String file, CreateOptions base, Map<String, String> o) throws UnsupportedFeatureException {
        return apply(file, base, o, id -> null);
    }

    /**
     * {@link #apply(String, CreateOptions, Map)} with {@code secrets} to find the passphrase {@code encrypt.key-secret}
     * names (it throws IllegalArgumentException with QEMU's words for an unknown one).
     */
    static CreateOptions apply(String file, CreateOptions base, Map<String, String> o,
                               java.util.function.Function<String, org.qcow4j.Passphrase> secrets)
            throws UnsupportedFeatureException {
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
        // In the order QEMU's QAPI visitor meets them (BlockdevCreateOptionsQcow2), so the first value refused
        // is the one qemu-img names.
        List<Map.Entry<String, String>> entries = new ArrayList<>(o.entrySet());
        entries.sort(Comparator.comparingInt(e -> QAPI_ORDER.indexOf(e.getKey()) < 0 ? QAPI_ORDER.size()
                : QAPI_ORDER.indexOf(e.getKey())));
        for (Map.Entry<String, String> e : entries) {
            String v = e.getValue();
            switch (e.getKey()) {
                case "compat" -> version = switch (v) {
                    case "0.10", "v2" -> 2;
                    case "1.1", "v3" -> 3;
                    default -> throw notAccepted("version", v);
                };
                // A cluster size or refcount width out of range is refused by CreateOptions.validate, in QEMU's
                // order among its other checks; -1 stands for a number that is no power of two.
                case "cluster_size" -> {
                    long cs = Long.parseLong(v);
                    clusterBits = Long.bitCount(cs) == 1 ? Long.numberOfTrailingZeros(cs) : -1;
                }
                case "refcount_bits" -> {
                    long bits = Long.parseLong(v);
                    refcountOrder = Long.bitCount(bits) == 1 && bits > 0 ? Long.numberOfTrailingZeros(bits) : -1;
                }
                case "compression_type" -> compression = switch (v) {
                    case "zlib" -> Header.COMPRESSION_ZLIB;
                    case "zstd" -> Header.COMPRESSION_ZSTD;
                    default -> throw notAccepted("compression-type", v);
                };
                case "extended_l2" -> extendedL2 = isOn(v);
                case "lazy_refcounts" -> lazy = isOn(v);
                case "data_file" -> dataFile = v.isEmpty() ? null : v;
                case "data_file_raw" -> dataFileRaw = isOn(v);
                case "preallocation" -> prealloc = switch (v) {
                    case "off" -> CreateOptions.Preallocation.OFF;
                    case "metadata" -> CreateOptions.Preallocation.METADATA;
                    case "falloc" -> CreateOptions.Preallocation.FALLOC;
                    case "full" -> CreateOptions.Preallocation.FULL;
                    default -> throw notAccepted("preallocation", v);
                };
                case "backing_file" -> backing = v;
                case "backing_fmt" -> backingFmt = v;
                case "size" -> size = Long.parseLong(v);
                case "encryption" -> {
                    if (isOn(v)) { // QEMU's old spelling of encrypt.format=aes
                        throw legacyAes(file);
                    }
                }
                case "encrypt.format" -> {
                    if (v.equals("aes")) {
                        throw legacyAes(file);
                    }
                    if (!v.equals("luks")) {
                        throw notAccepted("encrypt.format", v);
                    }
                }
                case "encrypt.iter-time" -> Long.parseUnsignedLong(v);
                default -> { } // the file protocol's options: see EXTENT_SIZE_HINT
            }
        }
        CreateOptions c = new CreateOptions(size, version, clusterBits, refcountOrder, compression, extendedL2, lazy, dataFile,
                dataFileRaw, prealloc, backing, backingFmt);
        if ("luks".equals(o.get("encrypt.format"))) {
            String id = o.get("encrypt.key-secret");
            org.qcow4j.EncryptionOptions d = org.qcow4j.EncryptionOptions.luks(id == null ? null : secrets.apply(id));
            c = c.withEncryption(new org.qcow4j.EncryptionOptions(d.passphrase(),
                    o.getOrDefault("encrypt.cipher-alg", d.cipherAlg()), o.getOrDefault("encrypt.cipher-mode", d.cipherMode()),
                    o.getOrDefault("encrypt.ivgen-alg", d.ivgenAlg()), o.get("encrypt.ivgen-hash-alg"),
                    o.getOrDefault("encrypt.hash-alg", d.hashAlg()),
                    o.containsKey("encrypt.iter-time") ? Long.parseLong(o.get("encrypt.iter-time")) : d.iterTimeMs()));
        }
        return c;
    }

    /** The luks format's options (checked against {@link #LUKS}) as the library's encryption options. */
    static org.qcow4j.EncryptionOptions luks(Map<String, String> o,
                                            java.util.function.Function<String, org.qcow4j.Passphrase> secrets) {
        String id = o.get("key-secret");
        org.qcow4j.EncryptionOptions d = org.qcow4j.EncryptionOptions.luks(id == null ? null : secrets.apply(id));
        return new org.qcow4j.EncryptionOptions(d.passphrase(), o.getOrDefault("cipher-alg", d.cipherAlg()),
                o.getOrDefault("cipher-mode", d.cipherMode()), o.getOrDefault("ivgen-alg", d.ivgenAlg()),
                o.get("ivgen-hash-alg"), o.getOrDefault("hash-alg", d.hashAlg()),
                o.containsKey("iter-time") ? Long.parseLong(o.get("iter-time")) : d.iterTimeMs());
    }

    private static UnsupportedFeatureException legacyAes(String file) {
        return new UnsupportedFeatureException(file, "creating images with legacy AES encryption (encrypt.format=aes;"
                + " use encrypt.format=luks)");
    }

    /** The members of QEMU's BlockdevCreateOptionsQcow2, in the schema's order, by their -o names. */
    private static final List<String> QAPI_ORDER = List.of("data_file", "data_file_raw", "extended_l2", "size",
            "compat", "backing_file", "backing_fmt", "encryption", "encrypt.format", "encrypt.key-secret",
            "encrypt.cipher-alg", "encrypt.cipher-mode", "encrypt.ivgen-alg", "encrypt.ivgen-hash-alg", "encrypt.hash-alg",
            "encrypt.iter-time",
            "cluster_size", "preallocation", "lazy_refcounts", "refcount_bits", "compression_type");

    private static IllegalArgumentException notAccepted(String parameter, String value) {
        return new IllegalArgumentException("Parameter '" + parameter + "' does not accept value '" + value + "'");
    }

    /** qapi_bool_parse's words: true or false, or null for any other (also for {@link ImageSpec}'s options). */
    static Boolean qapiBool(String v) {
        return switch (v) {
            case "on", "yes", "true", "y" -> true;
            case "off", "no", "false", "n" -> false;
            default -> null;
        };
    }

    /** qapi_bool_parse's words; {@code prefix} goes before the message of a value it refuses. */
    private static boolean bool(String key, String v, String prefix) throws CommandLine.UsageException {
        Boolean b = qapiBool(v);
        if (b == null) {
            throw CommandLine.UsageException.withoutHint(prefix + "Parameter '" + key + "' expects 'on' or 'off'");
        }
        return b;
    }

    /** A boolean {@link #check} accepted. */
    static boolean isOn(String v) {
        return Boolean.TRUE.equals(qapiBool(v));
    }

    /**
     * The "Formatting ..." line qemu-img create prints (qemu_opts_print): every option of the format's list in the
     * list's order, as given ({@link #check}ed: sizes and numbers as decimal numbers) or else its default, the ones
     * without a default only when given; the size as requested (before rounding).
     */
    static String describe(String file, String format, Map<String, String> given, long size) {
        Map<String, Type> list = format.equals("raw") ? RAW : format.equals("luks") ? LUKS : QCOW2;
        StringBuilder sb = new StringBuilder("Formatting '").append(file).append("', fmt=").append(format);
        for (String key : list.keySet()) {
            String v = key.equals("size") ? Long.toString(size) : given.getOrDefault(key, QCOW2_DEFAULTS.get(key));
            if (v != null && (list == QCOW2 || given.containsKey(key) || key.equals("size"))) {
                sb.append(' ').append(key).append('=').append(v);
            }
        }
        return sb.toString();
    }
}
