package org.qcow4j.cli;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Runs the common commands once on a tiny bundled image so the launcher can record a class-data sharing
 * archive ({@code -XX:ArchiveClassesAtExit}) of the classes they load. Not a user command.
 */
final class Train {
    private Train() {
    }

    public static void main(String[] args) throws IOException {
        Path dir = Files.createTempDirectory("qcow4j-train");
        Path image = dir.resolve("train.qcow2");
        Path raw = dir.resolve("train.raw");
        try (InputStream in = Train.class.getResourceAsStream("train.qcow2")) {
            Files.copy(in, image);
        }
        PrintStream sink = new PrintStream(OutputStream.nullOutputStream());
        try {
            Main.run(new String[] {"info", image.toString()}, sink, sink);
            Main.run(new String[] {"info", "--output=json", image.toString()}, sink, sink);
            Main.run(new String[] {"map", "--output=json", image.toString()}, sink, sink);
            Main.run(new String[] {"convert", "-p", "-O", "raw", image.toString(), raw.toString()}, sink, sink);
            Main.run(new String[] {"info", dir.resolve("missing").toString()}, sink, sink);
        } finally {
            Files.deleteIfExists(image);
            Files.deleteIfExists(raw);
            Files.deleteIfExists(dir);
        }
    }
}
