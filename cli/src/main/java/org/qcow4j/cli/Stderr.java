package org.qcow4j.cli;

import java.io.OutputStream;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;

/**
 * Standard error of one run, knowing the program it speaks for: {@link #error} prints a message as that program
 * does ({@code qemu-img: MESSAGE}). Lines are flushed as printed, so they interleave with stdout as QEMU's do.
 */
final class Stderr extends PrintWriter {
    private final Program program;

    Stderr(OutputStream err, Program program) {
        super(new OutputStreamWriter(err, StandardCharsets.UTF_8), true);
        this.program = program;
    }

    /** For tests: a Stderr writing to {@code writer}. */
    Stderr(Writer writer, Program program) {
        super(writer, true);
        this.program = program;
    }

    Program program() {
        return program;
    }

    /** One message, prefixed with the program's name ("qemu-io: Block node is read-only"). */
    void error(String message) {
        println(program.displayName() + ": " + message);
    }
}
