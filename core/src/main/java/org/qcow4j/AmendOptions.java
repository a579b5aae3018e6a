package org.qcow4j;

import java.util.function.Consumer;
import java.util.function.DoubleConsumer;

/**
 * What {@link Images#amend} changes in a qcow2 image, as {@code qemu-img amend -o} says it; a null field is left as
 * it is.
 *
 * @param compat        "0.10" or "v2" (a downgrade), "1.1" or "v3" (an upgrade)
 * @param lazyRefcounts lazy refcounts on or off (version 3 only)
 * @param refcountBits  the refcount width (a power of two up to 64)
 * @param dataFile      a new name for the external data file of an image that has one ("" removes the name)
 * @param dataFileRaw   whether the external data file stays a valid raw image (it can only be turned off)
 * @param backingFile   the backing file name, which must be the one the image has (QEMU refuses to change it)
 * @param backingFormat its format, likewise
 * @param size          a new virtual size (exactly that many bytes; 0 or null: unchanged)
 * @param open          how the image is opened ({@code -f} its format)
 * @param progress      told the share done, 0 to 100; may be null
 * @param repairReport  told each line of the repair QEMU makes when it opens an image left dirty (lazy refcounts not
 *                      written back), as QEMU prints them ("Repairing cluster 1 refcount=1 reference=0"); may be null
 * @param keySlots      a LUKS key slot change ({@code encrypt.*}); null: none
 * @param force         qemu-img's {@code --force}: LUKS key slot changes QEMU otherwise refuses
 */
public record AmendOptions(String compat, Boolean lazyRefcounts, Integer refcountBits, String dataFile,
                           Boolean dataFileRaw, String backingFile, String backingFormat, Long size, OpenOptions open,
                           DoubleConsumer progress, Consumer<String> repairReport, KeySlotChange keySlots,
                           boolean force) {
    /**
     * A LUKS key slot change, as {@code qemu-img amend -o encrypt.state=...,encrypt.keyslot=...,encrypt.old-secret=...,
     * encrypt.new-secret=...,encrypt.iter-time=...} gives it (null: not given). A secret is named by its id; its
     * passphrase is null when no secret of that id exists (refused, in QEMU's words, where QEMU looks it up).
     *
     * @param state "active" (add a key) or "inactive" (erase keys)
     */
    public record KeySlotChange(String state, Long keyslot, String oldSecretId, Passphrase oldSecret, String newSecretId,
                                Passphrase newSecret, Long iterTimeMs) {
    }

    public AmendOptions withKeySlots(KeySlotChange change) {
        return new AmendOptions(compat, lazyRefcounts, refcountBits, dataFile, dataFileRaw, backingFile,
                backingFormat, size, open, progress, repairReport, change, force);
    }

    public AmendOptions withForce(boolean on) {
        return new AmendOptions(compat, lazyRefcounts, refcountBits, dataFile, dataFileRaw, backingFile,
                backingFormat, size, open, progress, repairReport, keySlots, on);
    }

    /** Nothing changed yet; the format probed. */
    public static AmendOptions none() {
        return new AmendOptions(null, null, null, null, null, null, null, null, OpenOptions.defaults(), null, null, null, false);
    }

    public AmendOptions withCompat(String c) {
        return new AmendOptions(c, lazyRefcounts, refcountBits, dataFile, dataFileRaw, backingFile, backingFormat,
                size, open, progress, repairReport, keySlots, force);
    }

    public AmendOptions withLazyRefcounts(Boolean on) {
        return new AmendOptions(compat, on, refcountBits, dataFile, dataFileRaw, backingFile, backingFormat, size,
                open, progress, repairReport, keySlots, force);
    }

    public AmendOptions withRefcountBits(Integer bits) {
        return new AmendOptions(compat, lazyRefcounts, bits, dataFile, dataFileRaw, backingFile, backingFormat, size,
                open, progress, repairReport, keySlots, force);
    }

    public AmendOptions withDataFile(String name) {
        return new AmendOptions(compat, lazyRefcounts, refcountBits, name, dataFileRaw, backingFile, backingFormat,
                size, open, progress, repairReport, keySlots, force);
    }

    public AmendOptions withDataFileRaw(Boolean raw) {
        return new AmendOptions(compat, lazyRefcounts, refcountBits, dataFile, raw, backingFile, backingFormat, size,
                open, progress, repairReport, keySlots, force);
    }

    public AmendOptions withBacking(String file, String format) {
        return new AmendOptions(compat, lazyRefcounts, refcountBits, dataFile, dataFileRaw, file, format, size, open,
                progress, repairReport, keySlots, force);
    }

    public AmendOptions withSize(Long bytes) {
        return new AmendOptions(compat, lazyRefcounts, refcountBits, dataFile, dataFileRaw, backingFile,
                backingFormat, bytes, open, progress, repairReport, keySlots, force);
    }

    public AmendOptions withOpen(OpenOptions o) {
        return new AmendOptions(compat, lazyRefcounts, refcountBits, dataFile, dataFileRaw, backingFile,
                backingFormat, size, o, progress, repairReport, keySlots, force);
    }

    public AmendOptions withProgress(DoubleConsumer p) {
        return new AmendOptions(compat, lazyRefcounts, refcountBits, dataFile, dataFileRaw, backingFile,
                backingFormat, size, open, p, repairReport, keySlots, force);
    }

    public AmendOptions withRepairReport(Consumer<String> lines) {
        return new AmendOptions(compat, lazyRefcounts, refcountBits, dataFile, dataFileRaw, backingFile,
                backingFormat, size, open, progress, lines, keySlots, force);
    }
}
