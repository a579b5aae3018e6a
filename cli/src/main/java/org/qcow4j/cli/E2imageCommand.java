package org.qcow4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.function.LongConsumer;
import org.qcow4j.ConvertOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.ext.ExtMetadata;
import org.qcow4j.ext.MetadataImage;

/**
 * {@code e2image}: an ext2/3/4 filesystem's metadata as a packed qcow2 image ({@code -Q}) or a sparse raw image
 * ({@code -r}), as e2fsprogs' e2image writes them; {@code -r} also turns any qcow2 image back into raw.
 */
final class E2imageCommand extends Command {
    private static final CommandLine.Option QCOW2 = CommandLine.Option.flag("Write a qcow2 image.", "-Q");
    private static final CommandLine.Option RAW = CommandLine.Option.flag(
            "Write a sparse raw image (SRC may also be a qcow2 image to turn back into raw).", "-r");
    private static final CommandLine.Option ALL = CommandLine.Option.flag("Include the data of regular files.", "-a");
    private static final CommandLine.Option SCRAMBLE = CommandLine.Option.flag("Scramble directory entry names.", "-s");
    private static final CommandLine.Option PROGRESS = CommandLine.Option.flag("Show progress.", "-p");
    private static final CommandLine.Option SRC_OFFSET = CommandLine.Option.value("OFFSET",
            "Byte offset of the filesystem in SRC.", "-o");
    private static final CommandLine.Option DEST_OFFSET = CommandLine.Option.value("OFFSET",
            "Byte offset of the image in DEST (raw output, written in place: the rest of DEST is kept).", "-O");
    private static final CommandLine.Option SUPERBLOCK = CommandLine.Option.value("SUPERBLOCK",
            "Open the filesystem from this backup superblock (a damaged primary one).", "-b");
    private static final CommandLine.Option BLOCK_SIZE = CommandLine.Option.value("BLOCKSIZE",
            "Block size of the filesystem, with -b.", "-B");
    private static final CommandLine.Option COMPRESS = CommandLine.Option.value("zlib|zstd",
            "Compress the qcow2 image's clusters (beyond e2image).", "--compress");

    E2imageCommand() {
        super("e2image", "e2image -Q|-r [-a] [-s] [-p] [-o SRC_OFFSET] [-O DEST_OFFSET] [-b SUPERBLOCK -B BLOCKSIZE] "
                + "[--compress zlib|zstd] SRC DEST",
                "Image an ext2/3/4 filesystem's metadata (e2image -Q, -r).",
                QCOW2, RAW, ALL, SCRAMBLE, PROGRESS, SRC_OFFSET, DEST_OFFSET, SUPERBLOCK, BLOCK_SIZE, COMPRESS);
    }

    @Override
    int run(CommandLine args, PrintWriter out, Stderr err) throws Exception {
        List<String> p = args.positionals();
        if (p.size() != 2) {
            throw new CommandLine.UsageException("expecting SRC DEST");
        }
        boolean qcow2 = args.has("-Q");
        if (qcow2 == args.has("-r")) {
            throw new CommandLine.UsageException("give exactly one of -Q (qcow2) and -r (raw)");
        }
        String src = p.get(0);
        String dest = p.get(1);
        if (dest.equals("-")) {
            throw new CommandLine.UsageException("writing to standard output is not supported");
        }
        String compress = args.get("--compress", null);
        if (compress != null && (!qcow2 || !(compress.equals("zlib") || compress.equals("zstd")))) {
            throw new CommandLine.UsageException("--compress takes zlib or zstd, with -Q");
        }
        long srcOffset = args.getLong("-o", 0);
        long destOffset = args.getLong("-O", 0);
        if (srcOffset < 0 || destOffset < 0 || (qcow2 && destOffset != 0)) {
            throw new CommandLine.UsageException("offsets must be positive; -O needs -r");
        }
        ConvertOptions raw = ConvertOptions.raw().withDurable(false);
        if (!qcow2 && srcOffset == 0 && Images.probeFormat(Path.of(src)).equals("qcow2")) {
            // e2image -r of a qcow2 image: any qcow2 qcow4j reads (v3, compressed, backing chains), not only v2.
            try (DiskImage in = Images.open(Path.of(src), OpenOptions.defaults().withFormat("qcow2"))) {
                writeRaw(in, dest, destOffset, raw.withProgress(progress(args, out, in)));
            }
            return ExitCodes.OK;
        }
        ExtMetadata.Options options = ExtMetadata.Options.defaults().withOffset(srcOffset)
                .withBackupSuperblock(args.getLong("-b", 0), (int) args.getLong("-B", 0))
                .withData(args.has("-a")).withScrambling(args.has("-s"));
        try (MetadataImage image = ExtMetadata.image(Path.of(src), options)) {
            if (!args.has("-p") && !args.has("-a") && compress == null && destOffset == 0) {
                // The common case, metadata only: e2image's own loop, one sequential pass on this thread (the
                // conversion pipeline costs a short command more in interpreting and compiling than the copy).
                if (qcow2) {
                    ExtMetadata.writeQcow2(image, Path.of(dest));
                } else {
                    ExtMetadata.writeRaw(image, Path.of(dest));
                }
                return ExitCodes.OK;
            }
            LongConsumer bar = progress(args, out, image);
            // Scrambled names are numbered in block order: such an image is read in order, by one thread.
            int threads = image.readsInOrderOnly() ? 1 : Runtime.getRuntime().availableProcessors();
            if (qcow2) {
                // e2image -Q leaves out exactly the all-zero blocks (clusters): -S of one sector.
                ConvertOptions o = ConvertOptions.qcow2(ExtMetadata.qcow2Options(image, compress)).withDurable(false)
                        .withCompression(compress != null).withThreads(threads).withProgress(bar).withMinSparse(512);
                Images.convert(List.of(image), Path.of(dest), o);
            } else {
                writeRaw(image, dest, destOffset, raw.withThreads(threads).withProgress(bar));
            }
        }
        return ExitCodes.OK;
    }

    private static LongConsumer progress(CommandLine args, PrintWriter out, DiskImage image) throws IOException {
        return args.has("-p") ? new Progress(out, Progress.dataRuns(List.of(image), false))::advance : null;
    }

    /** A raw image at {@code destOffset} of an existing file (a partition of a disk image), or a new file. */
    private static void writeRaw(DiskImage in, String dest, long destOffset, ConvertOptions options) throws IOException {
        if (destOffset != 0) {
            Images.convertInto(List.of(in), Path.of(dest), destOffset, options);
        } else {
            Images.convert(List.of(in), Path.of(dest), options);
        }
    }
}
