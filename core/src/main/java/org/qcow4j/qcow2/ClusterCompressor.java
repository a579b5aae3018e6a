package org.qcow4j.qcow2;

import com.github.luben.zstd.ZstdCompressCtx;
import com.github.luben.zstd.ZstdException;
import java.nio.ByteBuffer;
import java.util.zip.Deflater;
import org.qcow4j.format.Header;

/**
 * Compresses one cluster as QEMU does (qcow2-threads.c): raw deflate at the default level, or one zstd frame at
 * zstd's default level. A cluster is stored compressed only if its stream is shorter than the cluster; QEMU
 * compresses into a {@code cluster_size - 1} buffer for the same rule. Not thread-safe: one per worker.
 *
 * <p>QEMU deflates with a 4 KiB window (windowBits -12) and strict decoders accept nothing farther back. The JDK's
 * Deflater always uses 32 KiB, so the input goes in 4 KiB blocks with a full flush between them: no reference can
 * reach back past a block, every stream is valid for a 4 KiB window, and the size stays within 0.1% of QEMU's
 * (measured on the benchmark image; plain 32 KiB-window streams came out 1.2% larger).
 */
public final class ClusterCompressor implements AutoCloseable {
    /** QEMU's deflate window: 1 << 12. */
    private static final int WINDOW = 4096;

    private final int compressionType;
    private final int clusterSize;
    private final byte[] out;
    private Deflater deflater;
    private ZstdCompressCtx zstd;
    private ByteBuffer zstdIn;
    private ByteBuffer zstdOut;

    public ClusterCompressor(int compressionType, int clusterSize) {
        this.compressionType = compressionType;
        this.clusterSize = clusterSize;
        this.out = new byte[clusterSize];
    }

    /**
     * Compresses {@code cluster} (its remaining bytes, a whole cluster).
     *
     * @return the stream (valid until the next call), or null if it would not be shorter than a cluster
     */
    public ByteBuffer compress(ByteBuffer cluster) {
        return compressionType == Header.COMPRESSION_ZSTD ? zstd(cluster) : deflate(cluster);
    }

    private ByteBuffer deflate(ByteBuffer cluster) {
        if (deflater == null) {
            deflater = new Deflater(Deflater.DEFAULT_COMPRESSION, true); // raw deflate, no zlib header
        }
        deflater.reset();
        int limit = clusterSize - 1;
        int n = 0;
        int len = cluster.remaining();
        for (int at = 0; at < len; at += WINDOW) {
            deflater.setInput(cluster.slice(cluster.position() + at, Math.min(WINDOW, len - at)));
            if (at + WINDOW >= len) {
                deflater.finish();
                while (!deflater.finished() && n < limit) {
                    n += deflater.deflate(out, n, limit - n);
                }
                return deflater.finished() ? ByteBuffer.wrap(out, 0, n) : null;
            }
            int k;
            do {
                k = deflater.deflate(out, n, limit - n, Deflater.FULL_FLUSH);
                n += k;
            } while (n < limit && !deflater.needsInput());
            if (n >= limit) {
                return null;
            }
        }
        return null; // empty input: never asked
    }

    private ByteBuffer zstd(ByteBuffer cluster) {
        if (zstd == null) {
            zstd = new ZstdCompressCtx();
            zstd.setLevel(3); // ZSTD_CLEVEL_DEFAULT, what QEMU uses
            zstdIn = ByteBuffer.allocateDirect(clusterSize);
            zstdOut = ByteBuffer.allocateDirect(clusterSize - 1);
        }
        zstdIn.clear();
        zstdIn.put(cluster.duplicate()).flip();
        zstdOut.clear();
        int n;
        try {
            n = zstd.compress(zstdOut, zstdIn);
        } catch (ZstdException e) {
            return null; // does not fit in cluster_size - 1 bytes
        }
        zstdOut.position(0).limit(n);
        zstdOut.get(out, 0, n);
        return ByteBuffer.wrap(out, 0, n);
    }

    @Override
    public void close() {
        if (deflater != null) {
            deflater.end();
        }
        if (zstd != null) {
            zstd.close();
        }
    }
}
