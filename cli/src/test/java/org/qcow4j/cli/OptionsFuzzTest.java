package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.qcow4j.CreateOptions;
import org.qcow4j.UnsupportedFeatureException;
import org.qcow4j.testing.DamagedInput;

/**
 * Coverage-guided: qemu-img's numbers, sizes and option strings, and the argument parser, on the fuzzer's text
 * (UTF-8; the seeds are plain text files). They must succeed or refuse with their documented exception: none for
 * {@link QemuNumbers} (errors are negative results), {@link CommandLine.UsageException} for the parsers,
 * IllegalArgumentException for {@link CreateOptions#validate}. Regression inputs:
 * {@code src/test/resources/org/qcow4j/cli/OptionsFuzzTestInputs/<method>/}.
 */
class OptionsFuzzTest {
    private static final long LIMIT_MS = 2000;

    /** QemuNumbers.strtosz and strtoul (qemu's own parsers) and ImageOptions.size (create's SIZE). */
    @FuzzTest
    void sizes(byte[] input) {
        String s = new String(input, StandardCharsets.UTF_8);
        DamagedInput.runOrRefuse(LIMIT_MS, CommandLine.UsageException.class, () -> {
            QemuNumbers.strtosz(s, warning -> { });
            QemuNumbers.strtoul(s);
            ImageOptions.size(s);
        });
    }

    /** An {@code -o} string parsed and applied to qcow2 creation options, then validated and described. */
    @FuzzTest
    void imageOptions(byte[] input) {
        String spec = new String(input, StandardCharsets.UTF_8);
        Map<String, String> given = new java.util.LinkedHashMap<>();
        DamagedInput.runOrRefuse(LIMIT_MS, CommandLine.UsageException.class, () ->
                given.putAll(ImageOptions.check(ImageOptions.parse(spec), ImageOptions.QCOW2, "fuzz.qcow2: ")));
        ImageOptions.describe("fuzz.qcow2", "qcow2", given, 1L << 30);
        DamagedInput.runOrRefuse(LIMIT_MS, IllegalArgumentException.class, () -> {
            try {
                ImageOptions.apply("fuzz.qcow2", CreateOptions.defaults(1L << 30), given).validate();
            } catch (UnsupportedFeatureException e) {
                assertTrue(e.getMessage().contains("encryption"), e.getMessage()); // the one feature refused by name
            }
        });
    }

    /** An argv (one argument a line; the first names the command) parsed with that command's options. */
    @FuzzTest
    void commandLine(byte[] input) {
        List<String> argv = new ArrayList<>(Arrays.asList(new String(input, StandardCharsets.UTF_8).split("\n", -1)));
        Command named = Main.command(argv.get(0));
        Command command = named != null ? named
                : Main.command(Main.COMMAND_NAMES.get(Math.floorMod(argv.get(0).hashCode(), Main.COMMAND_NAMES.size())));
        List<CommandLine.Option> options = new ArrayList<>(command.options());
        options.add(Command.HELP);
        options.add(Command.DEBUG);
        DamagedInput.runOrRefuse(LIMIT_MS, CommandLine.UsageException.class, () -> {
            CommandLine args = CommandLine.parse(argv.subList(1, argv.size()), options);
            CommandLine.help(command.synopsis(), command.description(), options);
            for (CommandLine.Option o : options) {
                args.has(o.key());
                args.all(o.key());
                if (o.param() != null) {
                    try {
                        args.getLong(o.key(), 0);
                    } catch (CommandLine.UsageException e) {
                        // a value that is not a number: the documented refusal, and the next option is tried
                    }
                }
            }
        });
    }
}
