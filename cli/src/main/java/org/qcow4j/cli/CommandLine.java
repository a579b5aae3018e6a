package org.qcow4j.cli;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A parsed command line in qemu-img's getopt style: {@code -f FMT}, {@code -fFMT}, {@code -pq} (grouped flags),
 * {@code --output=json}, {@code --output json}, {@code --} ends options; a repeated option's last value wins.
 * Hand-written because the option grammar is tiny and start-up counts: picocli's annotation model took
 * 120 ms of a 220 ms {@code info} (measured on this project's 2-core machines).
 */
final class CommandLine {
    /** One option: its names ("-f", "--force-share"), the value's label (null for a flag) and its help. */
    record Option(List<String> names, String param, String help) {
        static Option flag(String help, String... names) {
            return new Option(List.of(names), null, help);
        }

        static Option value(String param, String help, String... names) {
            return new Option(List.of(names), param, help);
        }

        String key() {
            return names.get(0);
        }

        // Options are constants compared by identity. A record's generated equals and hashCode link through
        // ObjectMethods' bootstrap, which spins classes at run time: tens of milliseconds of every command's start-up.
        @Override
        public boolean equals(Object o) {
            return this == o;
        }

        @Override
        public int hashCode() {
            return System.identityHashCode(this);
        }
    }

    /**
     * A command-line mistake: reported as one line plus a hint, exit 1. The message is getopt's (glibc's words, as
     * qemu-io and qcow4j print them); qemu-img handles getopt's errors itself and words them differently.
     */
    static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;
        private final String qemuImgMessage;
        private final boolean hint;
        private final boolean eachLine;

        /** A mistake followed by the hint to read the help (QEMU's error_exit). */
        UsageException(String message) {
            this(message, message, true, false);
        }

        private UsageException(String message, String qemuImgMessage) {
            this(message, qemuImgMessage, true, false);
        }

        private UsageException(String message, String qemuImgMessage, boolean hint, boolean eachLine) {
            super(message);
            this.qemuImgMessage = qemuImgMessage;
            this.hint = hint;
            this.eachLine = eachLine;
        }

        /** A mistake reported without the hint (where QEMU uses error_report and exits 1). */
        static UsageException withoutHint(String message) {
            return new UsageException(message, message, false, false);
        }

        /** A mistake QEMU reports in several error_report calls, each line under the program's name. */
        static UsageException reports(String... lines) {
            String message = String.join("\n", lines);
            return new UsageException(message, message, false, true);
        }

        /** Whether the hint to read the help follows the message. */
        boolean hint() {
            return hint;
        }

        /** The lines to report, each under the program's name (else one message, its later lines as they are). */
        List<String> reportedLines(String message) {
            return eachLine ? List.of(message.split("\n")) : List.of(message);
        }

        /** qemu-img's words: "unrecognized option '-Z'", "missing argument for option '-f'" (the word typed). */
        String qemuImgMessage() {
            return qemuImgMessage;
        }

        static UsageException unknownLong(String word) {
            return new UsageException("unrecognized option '" + word + "'", "unrecognized option '" + word + "'");
        }

        static UsageException unknownShort(char c, String word) {
            return new UsageException("invalid option -- '" + c + "'", "unrecognized option '" + word + "'");
        }

        static UsageException missingArgument(String name, String word) {
            String getopt = name.startsWith("--") ? "option '" + name + "' requires an argument"
                    : "option requires an argument -- '" + name.charAt(1) + "'";
            return new UsageException(getopt, "missing argument for option '" + word + "'");
        }

        static UsageException argumentNotAllowed(String name, String word) {
            return new UsageException("option '" + name + "' doesn't allow an argument", "unrecognized option '" + word + "'");
        }

        static UsageException ambiguous(String name, List<String> candidates, String word) {
            StringBuilder sb = new StringBuilder("option '" + name + "' is ambiguous; possibilities:");
            candidates.forEach(c -> sb.append(" '").append(c).append('\''));
            return new UsageException(sb.toString(), "unrecognized option '" + word + "'");
        }
    }

    private final Map<String, String> values = new HashMap<>();
    /** Every value of each option, in order, for options that may be repeated (io's -c). */
    private final Map<String, List<String>> all = new HashMap<>();
    private final List<String> positionals = new ArrayList<>();
    /** The {@code --object} definitions (secrets), added once the command line is parsed. */
    private final QemuObjects objects = new QemuObjects();
    /** Every option given, as (key, value) in the order given (a flag's value is ""). */
    private final List<Map.Entry<String, String>> inOrder = new ArrayList<>();

    private CommandLine() {
    }

    /** The objects {@code --object} defined (qemu-img's commands; qemu-io keeps its own). */
    QemuObjects objects() {
        return objects;
    }

    static CommandLine parse(List<String> args, List<Option> options) throws UsageException {
        Map<String, Option> byName = new HashMap<>();
        for (Option o : options) {
            for (String n : o.names()) {
                byName.put(n, o);
            }
        }
        CommandLine cl = new CommandLine();
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            if (a.equals("--")) {
                cl.positionals.addAll(args.subList(i + 1, args.size()));
                break;
            }
            if (a.startsWith("--")) {
                int eq = a.indexOf('=');
                String typed = eq < 0 ? a : a.substring(0, eq);
                Option o = longOption(byName, typed, a);
                String name = o.names().stream().filter(n -> n.startsWith(typed)).findFirst().orElse(typed);
                if (o.param() == null) {
                    if (eq >= 0) {
                        throw UsageException.argumentNotAllowed(name, a);
                    }
                    cl.put(o, "");
                } else if (eq >= 0) {
                    cl.put(o, a.substring(eq + 1));
                } else {
                    cl.put(o, argument(args, ++i, name, a));
                }
            } else if (a.startsWith("-") && a.length() > 1) {
                for (int j = 1; j < a.length(); j++) {
                    String name = "-" + a.charAt(j);
                    Option o = byName.get(name);
                    if (o == null) {
                        throw UsageException.unknownShort(a.charAt(j), a);
                    }
                    if (o.param() == null) {
                        cl.put(o, "");
                    } else {
                        cl.put(o, j + 1 < a.length() ? a.substring(j + 1) : argument(args, ++i, name, a));
                        break;
                    }
                }
            } else {
                cl.positionals.add(a);
            }
        }
        return cl;
    }

    /** The last value wins, as getopt users usually do; {@link #all} keeps them all. */
    private void put(Option o, String value) {
        values.put(o.key(), value);
        List<String> seen = all.get(o.key());
        if (seen == null) {
            seen = new ArrayList<>();
            all.put(o.key(), seen);
        }
        seen.add(value);
        inOrder.add(Map.entry(o.key(), value));
    }

    private static String argument(List<String> args, int i, String name, String word) throws UsageException {
        if (i >= args.size()) {
            throw UsageException.missingArgument(name, word);
        }
        return args.get(i);
    }

    /** A long option by its name or, as getopt_long allows, a prefix only one option's names start with. */
    private static Option longOption(Map<String, Option> byName, String typed, String word) throws UsageException {
        Option exact = byName.get(typed);
        if (exact != null) {
            return exact;
        }
        Map<Option, String> matches = new LinkedHashMap<>();
        if (typed.length() > 2) {
            byName.entrySet().stream().filter(e -> e.getKey().startsWith(typed)).sorted(Map.Entry.comparingByKey())
                    .forEach(e -> matches.putIfAbsent(e.getValue(), e.getKey()));
        }
        if (matches.isEmpty()) {
            throw UsageException.unknownLong(word);
        }
        if (matches.size() > 1) {
            throw UsageException.ambiguous(typed, List.copyOf(matches.values()), word);
        }
        return matches.keySet().iterator().next();
    }

    boolean has(String key) {
        return values.containsKey(key);
    }

    String get(String key, String fallback) {
        return values.getOrDefault(key, fallback);
    }

    /** Every value given to a repeatable option, in order (empty if none). */
    List<String> all(String key) {
        return all.getOrDefault(key, List.of());
    }

    /** The options as given, in order, each as its key (first name) and value ("" for a flag): getopt's order. */
    List<Map.Entry<String, String>> inOrder() {
        return inOrder;
    }

    long getLong(String key, long fallback) throws UsageException {
        String v = values.get(key);
        if (v == null) {
            return fallback;
        }
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new UsageException("option '" + key + "' expects a number, not '" + v + "'");
        }
    }

    List<String> positionals() {
        return positionals;
    }

    /** The usage text: synopsis, description and one line per option. */
    static String help(String synopsis, String description, List<Option> options) {
        StringBuilder sb = new StringBuilder("usage: qcow4j ").append(synopsis).append("\n\n").append(description).append("\n\n");
        for (Option o : options) {
            String names = String.join(", ", o.names()) + (o.param() == null ? "" : " " + o.param());
            sb.append(String.format("  %-26s %s%n", names, o.help()));
        }
        return sb.toString();
    }
}
