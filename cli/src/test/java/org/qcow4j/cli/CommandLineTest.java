package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class CommandLineTest {
    private static final List<CommandLine.Option> OPTIONS = List.of(Command.FORMAT, Command.OUTPUT,
            CommandLine.Option.flag("p", "-p"), CommandLine.Option.flag("q", "-q"), Command.FORCE_SHARE);

    private static CommandLine parse(String... args) throws CommandLine.UsageException {
        return CommandLine.parse(List.of(args), OPTIONS);
    }

    @Test
    void parsesGetoptStyleLikeQemuImg() throws Exception {
        CommandLine cl = parse("-pq", "-fqcow2", "--output", "json", "a", "--force-share", "b");
        assertTrue(cl.has("-p") && cl.has("-q") && cl.has("-U"));
        assertEquals("qcow2", cl.get("-f", null));
        assertEquals("json", cl.get("--output", null));
        assertEquals(List.of("a", "b"), cl.positionals());
        assertEquals("raw", parse("-f", "qcow2", "-f", "raw").get("-f", null), "the last repeated option wins");
        assertEquals(List.of("-p"), parse("--", "-p").positionals());
        assertFalse(parse("x").has("-p"));
        assertEquals("human", parse("--output=human").get("--output", null));
    }

    @Test
    void refusesUnknownOrIncompleteOptions() {
        assertEquals("unrecognized option '--bogus'", assertThrows(CommandLine.UsageException.class, () -> parse("--bogus")).getMessage());
        assertEquals("invalid option -- 'z'", assertThrows(CommandLine.UsageException.class, () -> parse("-pz")).getMessage());
        assertEquals("option requires an argument -- 'f'", assertThrows(CommandLine.UsageException.class, () -> parse("-f")).getMessage());
        assertEquals("option '--output' requires an argument",
                assertThrows(CommandLine.UsageException.class, () -> parse("--output")).getMessage());
        assertEquals("option '--force-share' doesn't allow an argument",
                assertThrows(CommandLine.UsageException.class, () -> parse("--force-share=yes")).getMessage());
        assertThrows(CommandLine.UsageException.class, () -> parse("-p=1"));
    }

    @Test
    void qemuImgWordsGetoptErrorsItself() {
        // qemu-img's missing_argument() and unrecognized_option() quote the word typed (argv[optind - 1])
        assertEquals("unrecognized option '-pz'", qemuImgMessage("-pz"));
        assertEquals("unrecognized option '--bogus=1'", qemuImgMessage("--bogus=1"));
        assertEquals("unrecognized option '--force-share=yes'", qemuImgMessage("--force-share=yes"));
        assertEquals("missing argument for option '-f'", qemuImgMessage("-f"));
        assertEquals("missing argument for option '--output'", qemuImgMessage("x", "--output"));
    }

    @Test
    void longOptionsMayBeAbbreviatedWhileUnambiguous() throws Exception {
        assertEquals("json", parse("--out=json").get("--output", null));
        assertTrue(parse("--force").has("-U"));
        List<CommandLine.Option> two = List.of(CommandLine.Option.flag("", "--cache"), CommandLine.Option.flag("", "--cmd"));
        assertEquals("option '--c' is ambiguous; possibilities: '--cache' '--cmd'",
                assertThrows(CommandLine.UsageException.class, () -> CommandLine.parse(List.of("--c"), two)).getMessage());
        assertTrue(CommandLine.parse(List.of("--ca"), two).has("--cache"));
    }

    private static String qemuImgMessage(String... args) {
        return assertThrows(CommandLine.UsageException.class, () -> parse(args)).qemuImgMessage();
    }

    @Test
    void usageErrorsAreOneLineAndAHintWithExitOne() {
        Qemu.Result r = Qemu.qcow4j("info", "--bogus", "x");
        assertEquals(1, r.exit());
        assertEquals("qcow4j: unrecognized option '--bogus'\nTry 'qcow4j info --help' for more information.\n", r.err());
        assertEquals(1, Qemu.qcow4j("frobnicate").exit());
        assertEquals(1, Qemu.qcow4j("info").exit());
        assertEquals(1, Qemu.qcow4j("info", "--output=xml", "x").exit());
        assertEquals(1, Qemu.qcow4j("convert", "-m", "0", "a", "b").exit());
        Qemu.Result help = Qemu.qcow4j("convert", "--help");
        assertEquals(0, help.exit());
        assertTrue(help.out().startsWith("usage: qcow4j convert"), help.out());
        assertEquals("qcow4j " + System.getProperty("qcow4j.pom.version") + "\n", Qemu.qcow4j("--version").ok().out());
    }

    @Test
    void everyCommandNameBuildsThatCommandAndTheHelpListsThemAll() {
        String help = Qemu.qcow4j("--help").ok().out();
        for (String name : Main.COMMAND_NAMES) {
            assertEquals(name, Main.command(name).name());
            assertTrue(help.contains("\n  " + name + " "), name);
        }
        assertEquals(null, Main.command("frobnicate"));
    }
}
