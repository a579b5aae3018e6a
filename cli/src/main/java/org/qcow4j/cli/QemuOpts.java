package org.qcow4j.cli;

import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;

/**
 * QEMU 7.2's two option-string syntaxes, as util/qemu-option.c and util/keyval.c parse them: the one parser of
 * {@code key=value,...} strings for {@code --image-opts}, {@code open -o}, {@code reopen -o}, {@code -T} (QemuOpts)
 * and {@code --object} (keyval). Both take a doubled comma as a literal comma in a value and dotted keys
 * ({@code file.filename}); they differ in what a bare word means and in their errors. What the options mean is
 * {@link ImageSpec}'s (block options) or the caller's.
 */
final class QemuOpts {
    /** A string QEMU refuses: its error_report message and, for some, the hint line QEMU prints after it. */
    static final class Invalid extends Exception {
        private static final long serialVersionUID = 1L;
        private final String hint;

        Invalid(String message) {
            this(message, null);
        }

        Invalid(String message, String hint) {
            super(message);
            this.hint = hint;
        }

        /** The line printed after the message (without the program's prefix), or null. */
        String hint() {
            return hint;
        }
    }

    /** Which QemuOptsList the string is parsed for: how it treats "id" and bare words. */
    enum Kind {
        /**
         * A list that merges into one set and refuses an id ({@code open -o}, {@code reopen -o}: qemu-io's
         * "drive" and "reopen" lists).
         */
        MERGED,
        /**
         * A list whose sets may have an id, kept as an option "id" first (qemu-io's {@code --image-opts} "file"
         * list, where the block layer then refuses it).
         */
        WITH_ID
    }

    private static final String ID_HINT = "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.";

    private QemuOpts() {
    }

    /**
     * QEMU's {@code json:} pseudo-protocol: the block options of a JSON object (QEMU's parser takes single quotes
     * too), nested objects flattened to dotted keys ({@code {"file": {"filename": X}}} is {@code file.filename=X}),
     * booleans as on/off; lists (blkdebug rules, quorum children) kept as the key alone, for the reader to refuse.
     */
    static Map<String, String> json(String name) throws Invalid {
        return json(name, false);
    }

    /**
     * {@link #json(String)}, with {@code lists} a list's elements flattened as QEMU's {@code qdict_flatten} does
     * ({@code {"inject-error": [{"sector": 3}]}} is {@code inject-error.0.sector=3}), for a reader that takes them.
     */
    static Map<String, String> json(String name, boolean lists) throws Invalid {
        Map<String, String> out = new LinkedHashMap<>();
        com.fasterxml.jackson.core.JsonFactory factory = com.fasterxml.jackson.core.JsonFactory.builder()
                .enable(com.fasterxml.jackson.core.json.JsonReadFeature.ALLOW_SINGLE_QUOTES).build();
        try (com.fasterxml.jackson.core.JsonParser p = factory.createParser(name.substring("json:".length()))) {
            if (p.nextToken() != com.fasterxml.jackson.core.JsonToken.START_OBJECT) {
                throw new Invalid("Could not parse the JSON options");
            }
            flatten(p, "", out, 0, lists);
        } catch (java.io.IOException e) {
            throw new Invalid("Could not parse the JSON options");
        }
        return out;
    }

    private static void flatten(com.fasterxml.jackson.core.JsonParser p, String prefix, Map<String, String> out,
                                int depth, boolean lists) throws java.io.IOException, Invalid {
        if (depth > 16) {
            throw new Invalid("Could not parse the JSON options");
        }
        for (com.fasterxml.jackson.core.JsonToken t = p.nextToken(); t != com.fasterxml.jackson.core.JsonToken.END_OBJECT;
             t = p.nextToken()) {
            String key = prefix + p.currentName();
            value(p, p.nextToken(), key, out, depth, lists);
        }
    }

    /** The value {@code t} starts, under {@code key}. */
    private static void value(com.fasterxml.jackson.core.JsonParser p, com.fasterxml.jackson.core.JsonToken t,
                              String key, Map<String, String> out, int depth, boolean lists)
            throws java.io.IOException, Invalid {
        switch (t) {
            case START_OBJECT -> flatten(p, key + ".", out, depth + 1, lists);
            case START_ARRAY -> {
                if (!lists) {
                    p.skipChildren();
                    out.put(key, "");
                    return;
                }
                if (depth > 16) {
                    throw new Invalid("Could not parse the JSON options");
                }
                int i = 0;
                for (com.fasterxml.jackson.core.JsonToken e = p.nextToken();
                     e != com.fasterxml.jackson.core.JsonToken.END_ARRAY; e = p.nextToken()) {
                    value(p, e, key + "." + i++, out, depth + 1, lists);
                }
            }
            case VALUE_TRUE -> out.put(key, "on");
            case VALUE_FALSE -> out.put(key, "off");
            default -> out.put(key, p.getText());
        }
    }

    /**
     * qemu_opts_parse_noisily: the options of {@code params} in order, a later value of a key replacing an earlier one
     * (as qemu_opts_to_qdict keeps them). With {@code impliedKey}, a first word without '=' is that key's value
     * ({@code -T pattern}); otherwise a bare word is a flag ({@code foo} is foo=on, {@code nofoo} foo=off) and draws
     * QEMU's deprecation warning (each line handed to {@code warnings}; the first is a warning_report, the second a
     * plain line, told apart by the "warning: " start). {@code help} and {@code ?} stay plain flags: these lists
     * accept any key.
     */
    static Map<String, String> parse(String params, String impliedKey, Kind kind, Consumer<String> warnings)
            throws Invalid {
        Map<String, String> out = new LinkedHashMap<>();
        String id = id(params);
        if (id != null) {
            if (kind == Kind.MERGED) {
                throw new Invalid("Invalid parameter 'id'");
            }
            if (!wellFormedId(id)) {
                throw new Invalid("Parameter 'id' expects an identifier", ID_HINT);
            }
            out.put("id", id);
        }
        String firstName = impliedKey;
        for (int p = 0; p < params.length(); ) {
            String[] nv = new String[2];
            p = nameValue(params, p, firstName, warnings, nv);
            firstName = null;
            if (nv[0].equals("id")) {
                continue;
            }
            out.remove(nv[0]); // the last value wins, in the position it was last given
            out.put(nv[0], nv[1]);
        }
        return out;
    }

    /** opts_parse_id: the value of the first "id" parameter, or null (bare words are flags here, silently). */
    private static String id(String params) {
        for (int p = 0; p < params.length(); ) {
            String[] nv = new String[2];
            p = nameValue(params, p, null, null, nv);
            if (nv[0].equals("id")) {
                return nv[1];
            }
        }
        return null;
    }

    /** id_wellformed: a letter, then letters, digits, '-', '.' and '_'. */
    static boolean wellFormedId(String id) {
        if (id.isEmpty() || !isAsciiLetter(id.charAt(0))) {
            return false;
        }
        for (int i = 1; i < id.length(); i++) {
            char c = id.charAt(i);
            if (!isAsciiLetter(c) && !(c >= '0' && c <= '9') && c != '-' && c != '.' && c != '_') {
                return false;
            }
        }
        return true;
    }

    private static boolean isAsciiLetter(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    }

    /**
     * get_opt_name_value: one parameter from {@code p} into {@code nv} (name, value); returns where the next one
     * starts. {@code warnings} null: no deprecation warnings.
     */
    private static int nameValue(String s, int p, String firstName, Consumer<String> warnings, String[] nv) {
        int len = 0;
        while (p + len < s.length() && s.charAt(p + len) != '=' && s.charAt(p + len) != ',') {
            len++;
        }
        int next;
        if (p + len >= s.length() || s.charAt(p + len) != '=') {
            if (firstName != null) {
                nv[0] = firstName;
                next = value(s, p, nv);
            } else {
                String name = s.substring(p, p + len);
                next = p + len;
                String prefix = "";
                boolean help = false;
                if (name.startsWith("no")) {
                    name = name.substring(2);
                    nv[1] = "off";
                    prefix = "no";
                } else {
                    nv[1] = "on";
                    help = name.equals("help") || name.equals("?");
                }
                nv[0] = name;
                if (!help && warnings != null) {
                    warnings.accept("warning: short-form boolean option '" + prefix + name + "' deprecated");
                    warnings.accept("Please use " + name + "=" + nv[1] + " instead");
                }
            }
        } else {
            nv[0] = s.substring(p, p + len);
            next = value(s, p + len + 1, nv);
        }
        return next < s.length() ? next + 1 : next; // past the ','
    }

    /** get_opt_value: up to a single ',' (a doubled one is a literal comma) into {@code nv[1]}; returns where it stops. */
    private static int value(String s, int p, String[] nv) {
        StringBuilder v = new StringBuilder();
        while (p < s.length()) {
            char c = s.charAt(p);
            if (c == ',') {
                if (p + 1 < s.length() && s.charAt(p + 1) == ',') {
                    v.append(',');
                    p += 2;
                    continue;
                }
                break;
            }
            v.append(c);
            p++;
        }
        nv[1] = v.toString();
        return p;
    }

    // ------------------------------------------------------------------------------------------------ keyval

    /** keyval_parse's result: the dotted keys and their values in order, and whether "help" (or "?") was asked. */
    record Keyval(Map<String, String> values, boolean help) {
    }

    /** QAPI names and key fragments are at most this long (keyval's key_in_cur[128]). */
    private static final int MAX_FRAGMENT = 127;

    /**
     * keyval_parse: {@code key=value,...} where a key is dot-separated QAPI names (list indexes after the first),
     * the first value may stand alone for {@code impliedKey}, a later value of a key replaces an earlier one, and a
     * key used both as a value and as a prefix of others is an error, with QEMU's messages.
     */
    static Keyval keyval(String params, String impliedKey) throws Invalid {
        Map<String, String> out = new LinkedHashMap<>();
        Set<String> prefixes = new HashSet<>();
        boolean help = false;
        int p = 0;
        String implied = impliedKey;
        while (p < params.length()) {
            int len = 0;
            while (p + len < params.length() && params.charAt(p + len) != '=' && params.charAt(p + len) != ',') {
                len++;
            }
            boolean bare = len > 0 && (p + len == params.length() || params.charAt(p + len) != '=');
            if (bare) {
                String word = params.substring(p, p + len);
                if (word.equals("help") || word.equals("?")) {
                    help = true;
                    p += len;
                    if (p < params.length()) {
                        p++;
                    }
                    implied = null;
                    continue;
                }
                if (implied != null) {
                    put(out, prefixes, implied, word);
                    p += len;
                    if (p < params.length()) {
                        p++;
                    }
                    implied = null;
                    continue;
                }
            }
            implied = null;
            int keyEnd = p + len;
            String key = params.substring(p, keyEnd);
            checkKey(key);
            if (keyEnd >= params.length() || params.charAt(keyEnd) != '=') {
                throw new Invalid("Expected '=' after parameter '" + key + "'");
            }
            StringBuilder v = new StringBuilder();
            int q = keyEnd + 1;
            while (q < params.length()) {
                char c = params.charAt(q);
                if (c == ',') {
                    q++;
                    if (q >= params.length() || params.charAt(q) != ',') {
                        break;
                    }
                }
                v.append(params.charAt(q));
                q++;
            }
            put(out, prefixes, key, v.toString());
            p = q;
        }
        return new Keyval(out, help);
    }

    /** A key is QAPI names (list indexes after the first) joined by dots: keyval's "Invalid parameter" check. */
    private static void checkKey(String key) throws Invalid {
        int s = 0;
        boolean first = true;
        while (true) {
            int len = first ? qapiName(key, s) : Math.max(index(key, s), qapiName(key, s));
            if (len <= 0 || (s + len < key.length() && key.charAt(s + len) != '.')) {
                throw new Invalid("Invalid parameter '" + key + "'");
            }
            if (len > MAX_FRAGMENT) {
                boolean whole = first && s + len == key.length();
                throw new Invalid("Parameter" + (whole ? "" : " fragment") + " '" + key.substring(s, s + len) + "' is too long");
            }
            s += len;
            if (s >= key.length()) {
                return;
            }
            s++; // the '.'
            first = false;
        }
    }

    /** parse_qapi_name (not complete): the length of the QAPI name at {@code s}, or 0. */
    private static int qapiName(String k, int s) {
        int p = s;
        if (p < k.length() && k.charAt(p) == '_') { // downstream __RFQDN_
            p++;
            if (p >= k.length() || k.charAt(p) != '_') {
                return 0;
            }
            p++;
            while (p < k.length() && (Character.isLetterOrDigit(k.charAt(p)) && k.charAt(p) < 128
                    || k.charAt(p) == '-' || k.charAt(p) == '.')) {
                p++;
            }
            if (p >= k.length() || k.charAt(p) != '_') {
                return 0;
            }
            p++;
        }
        if (p >= k.length() || !isAsciiLetter(k.charAt(p))) {
            return 0;
        }
        p++;
        while (p < k.length() && (isAsciiLetter(k.charAt(p)) || (k.charAt(p) >= '0' && k.charAt(p) <= '9')
                || k.charAt(p) == '-' || k.charAt(p) == '_')) {
            p++;
        }
        return p - s;
    }

    /** key_to_index: the length of the run of digits at {@code s} (a list index), or 0. */
    private static int index(String k, int s) {
        int p = s;
        while (p < k.length() && k.charAt(p) >= '0' && k.charAt(p) <= '9') {
            p++;
        }
        return p - s;
    }

    /**
     * keyval_parse_put: a value for {@code key}, which must not be a prefix of other keys ({@code prefixes}: the
     * dotted prefixes of the keys so far), nor have one that holds a value.
     */
    private static void put(Map<String, String> out, Set<String> prefixes, String key, String value)
            throws Invalid {
        if (prefixes.contains(key)) {
            throw new Invalid("Parameters '" + key + ".*' used inconsistently");
        }
        for (int dot = key.indexOf('.'); dot >= 0; dot = key.indexOf('.', dot + 1)) {
            String prefix = key.substring(0, dot);
            if (out.containsKey(prefix)) {
                throw new Invalid("Parameters '" + prefix + ".*' used inconsistently");
            }
            prefixes.add(prefix);
        }
        out.remove(key);
        out.put(key, value);
    }
}
