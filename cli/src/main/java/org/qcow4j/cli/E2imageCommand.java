package org.qcow4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.function.LongConsumer;
import org.qcow4j.ext.BlockRanges;
import org.qcow4j.ext.ExtFilesystem;
import org.qcow4j.CreateOptions;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.OpenOptions;
import org.qcow4j.QcowException;
import org.qcow4j.format.Header;
import org.qcow4j.io.OutputFile;
import org.qcow4j.ops.Qcow2Converter;
import org.qcow4j.ops.RawConverter;
import org.qcow4j.qcow2.Qcow2Writer;

/**
 * {@code e2image}: an ext2/3/4 filesystem's metadata as a packed qcow2 image ({@code -Q}) or a sparse raw image
 * ({@code -r}), as e2fsprogs' e2image writes them; {@code -r} also turns any qcow2 image back into raw.
 */
final class E2imageCommand implements Command {
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

    @Override
    public String name() {
        return "e2image";
    }

    @Override
    public String synopsis() {
        return "e2image -Q|-r [-a] [-s] [-p] [-o SRC_OFFSET] [-O DEST_OFFSET] [-b SUPERBLOCK -B BLOCKSIZE] "
                + "[--compress zlib|zstd] SRC DEST";
    }

    @Override
    public String description() {
        return "Image an ext2/3/4 filesystem's metadata (e2image -Q, -r).";
    }

    @Override
    public List<CommandLine.Option> options() {
        return List.of(QCOW2, RAW, ALL, SCRAMBLE, PROGRESS, SRC_OFFSET, DEST_OFFSET, SUPERBLOCK, BLOCK_SIZE, COMPRESS);
    }

    @Override
    public int run(CommandLine args, PrintWriter out) throws Exception {
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
        // -s numbers names in block order, so its blocks must be read in order, by one thread.
        int threads = args.has("-s") ? 1 : Runtime.getRuntime().availableProcessors();
        if (!qcow2 && srcOffset == 0 && isQcow2(Path.of(src))) {
            // e2image -r of a qcow2 image: any qcow2 qcow4j reads (v3, compressed, backing chains), not only v2.
            try (DiskImage in = Images.open(Path.of(src), OpenOptions.defaults().withFormat("qcow2"))) {
                writeRaw(List.of(in), dest, destOffset, threads, progress(args, out, in.size()));
            }
            return ExitCodes.OK;
        }
        try (FileChannel device = FileChannel.open(Path.of(src), StandardOpenOption.READ)) {
            ExtFilesystem fs = ExtFilesystem.open(device, src, srcOffset, args.getLong("-b", 0), (int) args.getLong("-B", 0));
            BlockRanges blocks = fs.metadataBlocks(args.has("-a"));
            BlockRanges dirs = args.has("-s") ? fs.directoryBlocks() : null;
            MetadataImage image = new MetadataImage(src, device, srcOffset, fs.blockSize(), fs.blocksCount(), blocks, dirs);
            LongConsumer bar = progress(args, out, image.size());
            if (qcow2) {
                writeQcow2(image, dest, fs.blockSize(), compress, threads, bar);
            } else {
                writeRaw(List.of(image), dest, destOffset, threads, bar);
            }
        }
        return ExitCodes.OK;
    }

    private static LongConsumer progress(CommandLine args, PrintWriter out, long total) {
        return args.has("-p") ? new Progress(out, total)::advance : null;
    }

    private static boolean isQcow2(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            ByteBuffer magic = ByteBuffer.allocate(4).order(ByteOrder.BIG_ENDIAN);
            ch.read(magic, 0);
            return magic.position() == 4 && magic.getInt(0) == Header.MAGIC;
        }
    }

    /**
     * Like e2image: a version 2 image (what e2image -r reads back) whose clusters are the filesystem's blocks,
     * the blocks in filesystem order, all-zero blocks left out. Compression with zstd needs version 3.
     */
    private static void writeQcow2(MetadataImage image, String dest, int blockSize, String compress, int threads,
                                   LongConsumer progress) throws IOException {
        CreateOptions defaults = CreateOptions.defaults(image.size());
        CreateOptions o = new CreateOptions(image.size(), "zstd".equals(compress) ? 3 : 2,
                Integer.numberOfTrailingZeros(blockSize), 4,
                "zstd".equals(compress) ? Header.COMPRESSION_ZSTD : Header.COMPRESSION_ZLIB, false, false, null, false,
                defaults.preallocation(), null, null);
        CreateOptions options;
        try {
            options = o.validate();
        } catch (IllegalArgumentException e) {
            throw new QcowException(dest, e.getMessage());
        }
        long hint = Qcow2Converter.dataClustersHint(List.of(image), options.clusterBits());
        OutputFile.writeAtomically(Path.of(dest), file -> {
            try (Qcow2Writer w = Qcow2Writer.create(file, dest, options, hint)) {
                new Qcow2Converter(threads, compress != null, null, progress).convert(List.of(image), w);
                w.finish(false);
            }
        });
    }

    private static void writeRaw(List<DiskImage> in, String dest, long destOffset, int threads, LongConsumer progress)
            throws IOException {
        if (destOffset != 0) {
            // Into an existing (or new) file, e.g. a partition of a disk image: written in place, the rest kept.
            try (FileChannel ch = FileChannel.open(Path.of(dest), StandardOpenOption.WRITE, StandardOpenOption.CREATE)) {
                new RawConverter(threads, progress).convertInto(in, ch, Path.of(dest), dest, destOffset);
            }
            return;
        }
        OutputFile.writeAtomically(Path.of(dest), file -> {
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
                new RawConverter(threads, progress).convert(in, ch, dest);
            }
        });
    }
}
