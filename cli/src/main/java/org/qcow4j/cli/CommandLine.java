package org.qcow4j.cli;

import java.util.ArrayList;
import java.util.HashMap;
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
    }

    /** A command-line mistake: reported as one line plus a hint, exit 1. */
    static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }

    private final Map<String, String> values = new HashMap<>();
    /** Every value of each option, in order, for options that may be repeated (io's -c). */
    private final Map<String, List<String>> all = new HashMap<>();
    private final List<String> positionals = new ArrayList<>();

    private CommandLine() {
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
                String name = eq < 0 ? a : a.substring(0, eq);
                Option o = byName.get(name);
                if (o == null) {
                    throw new UsageException("unrecognized option '" + name + "'");
                }
                if (o.param() == null) {
                    if (eq >= 0) {
                        throw new UsageException("option '" + name + "' doesn't allow an argument");
                    }
                    cl.put(o, "");
                } else if (eq >= 0) {
                    cl.put(o, a.substring(eq + 1));
                } else {
                    cl.put(o, argument(args, ++i, name));
                }
            } else if (a.startsWith("-") && a.length() > 1) {
                for (int j = 1; j < a.length(); j++) {
                    String name = "-" + a.charAt(j);
                    Option o = byName.get(name);
                    if (o == null) {
                        throw new UsageException("invalid option -- '" + a.charAt(j) + "'");
                    }
                    if (o.param() == null) {
                        cl.put(o, "");
                    } else {
                        cl.put(o, j + 1 < a.length() ? a.substring(j + 1) : argument(args, ++i, name));
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
        all.computeIfAbsent(o.key(), k -> new ArrayList<>()).add(value);
    }

    private static String argument(List<String> args, int i, String name) throws UsageException {
        if (i >= args.size()) {
            throw new UsageException("option '" + name + "' requires an argument");
        }
        return args.get(i);
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
