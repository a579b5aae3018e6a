package org.qcow4j.qcow2;

import com.github.luben.zstd.ZstdDecompressCtx;
import com.github.luben.zstd.ZstdException;
import java.nio.ByteBuffer;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;
import org.qcow4j.format.Header;

/**
 * Inflates one compressed cluster (qcow2.txt "Compressed Clusters Descriptor"). Not thread-safe: the image
 * keeps one per thread. Like QEMU, the output must fill the whole cluster; bytes after the stream (the next
 * cluster's data, sector padding) are ignored.
 */
public final class ClusterDecompressor implements AutoCloseable {
    private final int compressionType;
    private final int clusterSize;
    private Inflater inflater;
    private ZstdDecompressCtx zstd;
    private ByteBuffer zstdIn;
    private ByteBuffer zstdOut;

    ClusterDecompressor(int compressionType, int clusterSize) {
        this.compressionType = compressionType;
        this.clusterSize = clusterSize;
    }

    /**
     * Decompresses {@code src} (its remaining bytes) into {@code out[0..clusterSize)}.
     *
     * @return false if the data is not a valid stream or does not fill the cluster
     */
    boolean decompress(ByteBuffer src, byte[] out) {
        return compressionType == Header.COMPRESSION_ZSTD ? zstd(src, out) : deflate(src, out);
    }

    private boolean deflate(ByteBuffer src, byte[] out) {
        if (inflater == null) {
            inflater = new Inflater(true); // raw deflate, 32 KiB window accepts QEMU's 4 KiB one
        }
        inflater.reset();
        inflater.setInput(src);
        int done = 0;
        try {
            while (done < clusterSize) {
                int n = inflater.inflate(out, done, clusterSize - done);
                if (n == 0 && (inflater.finished() || inflater.needsInput() || inflater.needsDictionary())) {
                    return false;
                }
                done += n;
            }
            return true;
        } catch (DataFormatException e) {
            return false;
        }
    }

    private boolean zstd(ByteBuffer src, byte[] out) {
        if (zstd == null) {
            zstd = new ZstdDecompressCtx();
            zstdOut = ByteBuffer.allocateDirect(clusterSize);
        }
        if (zstdIn == null || zstdIn.capacity() < src.remaining()) {
            zstdIn = ByteBuffer.allocateDirect(Math.max(src.remaining(), 2 * clusterSize + 512));
        }
        zstd.reset();
        zstdIn.clear();
        zstdIn.put(src).flip();
        zstdOut.clear();
        try {
            while (zstdOut.hasRemaining()) {
                int inBefore = zstdIn.position();
                int outBefore = zstdOut.position();
                zstd.decompressDirectByteBufferStream(zstdOut, zstdIn);
                if (zstdIn.position() == inBefore && zstdOut.position() == outBefore) {
                    return false; // no progress: truncated or exhausted input
                }
            }
        } catch (ZstdException e) {
            return false;
        }
        zstdOut.flip().get(out, 0, clusterSize);
        return true;
    }

    @Override
    public void close() {
        if (inflater != null) {
            inflater.end();
        }
        if (zstd != null) {
            zstd.close();
        }
    }
}
