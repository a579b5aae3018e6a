package org.qcow4j.cli;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Runs the common commands once on a tiny bundled image and filesystem so the launcher can record a class-data
 * sharing archive ({@code -XX:ArchiveClassesAtExit}) of the classes they load. Not a user command.
 */
final class Train {
    private Train() {
    }

    public static void main(String[] args) throws IOException {
        Path dir = Files.createTempDirectory("qcow4j-train");
        Path image = dir.resolve("train.qcow2");
        Path raw = dir.resolve("train.raw");
        Path fs = dir.resolve("train-ext4.img");
        Path out = dir.resolve("out.qcow2");
        Path top = dir.resolve("top.qcow2");
        for (Path p : new Path[] {image, fs}) {
            try (InputStream in = Train.class.getResourceAsStream(p.getFileName().toString())) {
                Files.copy(in, p);
            }
        }
        PrintStream sink = new PrintStream(OutputStream.nullOutputStream());
        try {
            Main.run(new String[] {"info", image.toString()}, sink, sink);
            Main.run(new String[] {"info", "--output=json", image.toString()}, sink, sink);
            Main.run(new String[] {"map", "--output=json", image.toString()}, sink, sink);
            Main.run(new String[] {"check", image.toString()}, sink, sink);
            Main.run(new String[] {"convert", "-p", "-O", "raw", image.toString(), raw.toString()}, sink, sink);
            Main.run(new String[] {"info", dir.resolve("missing").toString()}, sink, sink);
            Main.run(new String[] {"convert", "-c", "-O", "qcow2", raw.toString(), out.toString()}, sink, sink);
            Main.run(new String[] {"convert", "-O", "qcow2", "-o", "compression_type=zstd", "-c", raw.toString(),
                out.toString()}, sink, sink);
            Main.run(new String[] {"check", "--output=json", out.toString()}, sink, sink);
            Main.run(new String[] {"create", "-q", "-f", "qcow2", out.toString(), "1M"}, sink, sink);
            Main.run(new String[] {"e2image", "-Q", fs.toString(), out.toString()}, sink, sink);
            Main.run(new String[] {"e2image", "-r", fs.toString(), raw.toString()}, sink, sink);
            Main.run(new String[] {"create", "-q", "-f", "qcow2", out.toString(), "64M"}, sink, sink);
            Main.run(new String[] {"io", "-c", "write -P 0x5a 12345 70000", "-c", "write -z 1M 64k", "-c", "discard 0 64k",
                "-c", "read -P 0x5a 65536 4096", "-c", "flush", out.toString()}, sink, sink);
            Main.run(new String[] {"map", out.toString()}, sink, sink); // human output needs no compressed clusters
            Main.run(new String[] {"bench", "-w", "-c", "64", "-d", "2", "-S", "1052672", out.toString()}, sink, sink);
            Main.run(new String[] {"bench", "-c", "64", "-S", "1052672", out.toString()}, sink, sink);
            // the image operations, whose benches are bound by start-up: their classes belong in the archive too
            Main.run(new String[] {"snapshot", "-c", "s1", out.toString()}, sink, sink);
            Main.run(new String[] {"snapshot", "-l", out.toString()}, sink, sink);
            Main.run(new String[] {"snapshot", "-d", "s1", out.toString()}, sink, sink);
            Main.run(new String[] {"create", "-q", "-f", "qcow2", "-b", out.toString(), "-F", "qcow2", top.toString()},
                sink, sink);
            Main.run(new String[] {"io", "-c", "write -P 0x33 0 128k", top.toString()}, sink, sink);
            Main.run(new String[] {"compare", top.toString(), out.toString()}, sink, sink);
            Main.run(new String[] {"measure", "-O", "qcow2", top.toString()}, sink, sink);
            Main.run(new String[] {"rebase", "-b", image.toString(), "-F", "qcow2", top.toString()}, sink, sink);
            Main.run(new String[] {"commit", top.toString()}, sink, sink);
            Main.run(new String[] {"check", "-r", "all", out.toString()}, sink, sink);
            Main.run(new String[] {"resize", out.toString(), "+1M"}, sink, sink);
            Main.run(new String[] {"bitmap", "--add", out.toString(), "b0"}, sink, sink);
            Main.run(new String[] {"amend", "-o", "lazy_refcounts=on", out.toString()}, sink, sink);
        } finally {
            for (Path p : new Path[] {image, raw, fs, out, top, dir}) {
                Files.deleteIfExists(p);
            }
        }
    }
}
