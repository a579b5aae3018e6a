package org.qcow4j;

import java.util.List;

/**
 * What {@link Images#check} found, field for field what {@code qemu-img check} reports (its QAPI {@code ImageCheck}).
 *
 * @param filename           the image as named to the check
 * @param format             always "qcow2"
 * @param checkErrors        problems that kept parts of the check from running (e.g. unreadable refcount blocks);
 *                           qemu-img then says "Check failed" and exits 1
 * @param corruptions        metadata errors: refcounts lower than the references, COPIED flags that do not match
 *                           refcounts, misaligned or reserved bits, references past the end of the file, ...
 * @param leaks              clusters whose stored refcount is higher than the references to them
 * @param corruptionsFixed   corruptions repaired ({@link Images#repair} with {@link RepairMode#ALL}); 0 for a plain check
 * @param leaksFixed         leaked clusters repaired ({@link Images#repair}); 0 for a plain check
 * @param imageEndOffset     the end of the last cluster that is referenced or has a refcount
 * @param totalClusters      guest clusters of the virtual disk
 * @param allocatedClusters  guest clusters the active L1 table maps to host clusters (standard, zero-allocated and
 *                           compressed)
 * @param fragmentedClusters allocated clusters not following their predecessor in the same L2 table on the host,
 *                           plus every compressed cluster (QEMU's count)
 * @param compressedClusters compressed guest clusters of the active L1 table
 * @param diagnostics        one line per problem, worded as QEMU words it, in the order found; empty when the lines
 *                           were handed to a consumer instead ({@link Images#check(java.nio.file.Path,
 *                           java.util.function.Consumer)})
 */
public record CheckResult(String filename, String format, long checkErrors, long corruptions, long leaks,
                          long corruptionsFixed, long leaksFixed, long imageEndOffset, long totalClusters,
                          long allocatedClusters, long fragmentedClusters, long compressedClusters,
                          List<String> diagnostics) {
    public CheckResult {
        diagnostics = List.copyOf(diagnostics);
    }

    /** Whether nothing at all was found: no corruptions, leaks or check errors. */
    public boolean isClean() {
        return corruptions == 0 && leaks == 0 && checkErrors == 0;
    }
}
