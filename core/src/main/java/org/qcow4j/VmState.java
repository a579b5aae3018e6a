package org.qcow4j;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The VM state area of a qcow2 image, where QEMU's {@code savevm} keeps a VM's memory and device state (QEMU 7.2's
 * {@code bdrv_save_vmstate} and {@code bdrv_load_vmstate}, qemu-io's {@code write -b} and {@code read -b}): guest
 * offsets past the disk, from {@link #offset()}, mapped by the ordinary L1 and L2 tables, the L1 table growing as
 * writes reach further. Get it from {@link DiskImage#vmState()}; formats without one (raw) have none.
 *
 * <p>As in QEMU the area is not part of the disk: {@code convert}, {@code map}, {@code compare} and {@code measure}
 * see only the disk; {@code check} counts the area's clusters as any others; an internal snapshot's L1 table takes
 * the area along (though {@code qemu-img snapshot -c} records a VM state size of 0), and applying a snapshot with a
 * shorter L1 table drops the area's tables. Growing the disk over the area makes what the area held disk data, and
 * shrinking the disk drops the area's tables but not their data clusters (leaked), both as QEMU does. Requests go to
 * the driver directly, as QEMU's do: no dirty bitmap records them, and no {@code detect-zeroes} or copy-on-read
 * applies; with {@code writethrough} a write is flushed. One difference: at an L1 index of 2^32 or more (a VM state
 * offset of 128 TiB with 512-byte clusters, 2^61 bytes with 64 KiB ones) QEMU 7.2 cuts the index to an int and reaches
 * the L1 entry that names, in the disk or the area; here a write that far is refused as too large and a read finds
 * nothing written.
 */
public interface VmState {
    /** The guest offset where the area starts: QEMU's {@code qcow2_vm_state_offset}, just past the disk's L1 entries. */
    long offset();

    /**
     * Reads {@code dst.remaining()} bytes at {@code pos} in the area, advancing {@code dst}'s position. What was never
     * written reads as zeros, or as the backing file at that guest offset, as in QEMU.
     *
     * @throws IndexOutOfBoundsException for a request past QEMU's largest guest offset (its EIO)
     */
    void read(ByteBuffer dst, long pos) throws IOException;

    /**
     * Writes {@code src} at {@code pos} in the area, advancing its position, through the same allocation and write-back
     * order as a guest write; the L1 table grows as QEMU's {@code qcow2_grow_l1_table} grows it (by half at a time).
     *
     * @throws WriteRefusedException when the image was opened read-only
     * @throws IndexOutOfBoundsException for a request past QEMU's largest guest offset (its EIO)
     * @throws RefusedRequestException ({@link RefusedRequestException.Reason#TOO_LARGE}, nothing written) when the L1
     *         table would have to grow past QEMU's limit of 32 MiB
     */
    void write(ByteBuffer src, long pos) throws IOException;
}
