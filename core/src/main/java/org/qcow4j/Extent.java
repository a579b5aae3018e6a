package org.qcow4j;

/**
 * The allocation status of a run of guest bytes, as {@code qemu-img map --output=json} reports it.
 *
 * @param start      guest offset
 * @param length     bytes in the run
 * @param depth      the layer of the backing chain that decides these bytes (0 = the image itself)
 * @param present    whether some layer allocates the bytes (data or a zero flag); false means "reads as
 *                   zeros because nothing in the chain has it"
 * @param zero       whether the bytes are known to read as zeros
 * @param data       whether the bytes are stored as data (plain or compressed)
 * @param hostOffset byte offset in the layer's data file, or -1 when there is none (compressed, unallocated)
 */
public record Extent(long start, long length, int depth, boolean present, boolean zero, boolean data, long hostOffset) {
    public boolean hasHostOffset() {
        return hostOffset >= 0;
    }

    public long end() {
        return start + length;
    }

    /** The same status one layer further down the chain. */
    public Extent deeper() {
        return new Extent(start, length, depth + 1, present, zero, data, hostOffset);
    }

    /** Whether {@code next} continues this run with the same status, as qemu-img merges map entries. */
    public boolean mergeableWith(Extent next) {
        return end() == next.start && depth == next.depth && present == next.present && zero == next.zero
                && data == next.data && hasHostOffset() == next.hasHostOffset()
                && (!hasHostOffset() || hostOffset + length == next.hostOffset);
    }

    public Extent mergedWith(Extent next) {
        return new Extent(start, length + next.length, depth, present, zero, data, hostOffset);
    }
}
