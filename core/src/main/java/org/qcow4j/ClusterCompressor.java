package org.qcow4j;

import com.github.luben.zstd.ZstdCompressCtx;
import com.github.luben.zstd.ZstdException;
import java.nio.ByteBuffer;
import java.util.zip.Deflater;
import org.qcow4j.format.Header;

/**
 * Compresses one cluster as QEMU does (qcow2-threads.c): raw deflate at the default level, or one zstd frame at
 * zstd's default level. A cluster is stored compressed only if its stream is shorter than the cluster; QEMU
 * compresses into a {@code cluster_size - 1} buffer for the same rule. Not thread-safe: one per worker.
 */
final class ClusterCompressor implements AutoCloseable {
    private final int compressionType;
    private final int clusterSize;
    private final byte[] out;
    private Deflater deflater;
    private ZstdCompressCtx zstd;
    private ByteBuffer zstdIn;
    private ByteBuffer zstdOut;

    ClusterCompressor(int compressionType, int clusterSize) {
        this.compressionType = compressionType;
        this.clusterSize = clusterSize;
        this.out = new byte[clusterSize];
    }

    /**
     * Compresses {@code cluster} (its remaining bytes, a whole cluster).
     *
     * @return the stream (valid until the next call), or null if it would not be shorter than a cluster
     */
    ByteBuffer compress(ByteBuffer cluster) {
        return compressionType == Header.COMPRESSION_ZSTD ? zstd(cluster) : deflate(cluster);
    }

    private ByteBuffer deflate(ByteBuffer cluster) {
        if (deflater == null) {
            deflater = new Deflater(Deflater.DEFAULT_COMPRESSION, true); // raw deflate, as QEMU's windowBits -12
        }
        deflater.reset();
        deflater.setInput(cluster.duplicate());
        deflater.finish();
        int n = 0;
        while (!deflater.finished() && n < clusterSize - 1) {
            n += deflater.deflate(out, n, clusterSize - 1 - n);
        }
        return deflater.finished() ? ByteBuffer.wrap(out, 0, n) : null;
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
