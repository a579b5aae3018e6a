package org.qcow4j.cli;

import java.util.ArrayList;
import java.util.List;

/**
 * glibc's {@code getopt} as qemu-io's commands use it: short options from an option string ("bCl:pP:qs:v"),
 * grouped flags ({@code -qv}), values attached or in the next word, options anywhere among the operands (glibc
 * permutes: {@code read 0 512 -q} is quiet), {@code --} ends the options. Errors are printed as glibc prints
 * them ("read: invalid option -- 'x'") and end the parse; the commands handle the options before the error first
 * (a bad pattern there is reported instead), as they do in qemu-io, where getopt is called option by option.
 */
final class IoGetopt {
    /** One option seen: its letter and its value (null for a flag). */
    record Opt(char letter, String value) {
    }

    private final List<Opt> options = new ArrayList<>();
    private final List<String> operands = new ArrayList<>();
    private String error;

    private IoGetopt() {
    }

    /**
     * Parses {@code argv} ({@code argv[0]} is the command as typed, used in messages). After an error,
     * {@link #error()} is glibc's message and {@link #options()} holds the options before it.
     */
    static IoGetopt parse(List<String> argv, String optstring) {
        IoGetopt g = new IoGetopt();
        String cmd = argv.get(0);
        for (int i = 1; i < argv.size(); i++) {
            String a = argv.get(i);
            if (a.equals("--")) {
                g.operands.addAll(argv.subList(i + 1, argv.size()));
                break;
            }
            if (a.length() < 2 || a.charAt(0) != '-') {
                g.operands.add(a);
                continue;
            }
            for (int j = 1; j < a.length(); j++) {
                char c = a.charAt(j);
                int k = c == ':' ? -1 : optstring.indexOf(c);
                if (k < 0) {
                    g.error = cmd + ": invalid option -- '" + c + "'";
                    return g;
                }
                if (k + 1 < optstring.length() && optstring.charAt(k + 1) == ':') {
                    String value;
                    if (j + 1 < a.length()) {
                        value = a.substring(j + 1);
                    } else if (i + 1 < argv.size()) {
                        value = argv.get(++i);
                    } else {
                        g.error = cmd + ": option requires an argument -- '" + c + "'";
                        return g;
                    }
                    g.options.add(new Opt(c, value));
                    break;
                }
                g.options.add(new Opt(c, null));
            }
        }
        return g;
    }

    List<Opt> options() {
        return options;
    }

    /** The words that are not options, in order (getopt's argv[optind..]). */
    List<String> operands() {
        return operands;
    }

    /** glibc's message for a bad option (for stderr), or null. */
    String error() {
        return error;
    }
}
