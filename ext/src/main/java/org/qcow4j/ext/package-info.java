/**
 * Read-only ext2/3/4 parsing: which blocks of a filesystem are metadata, as e2fsprogs' {@code e2image -Q} selects
 * them. Blocks are never modified and checksums never verified or recomputed.
 *
 * <p>Public: {@link org.qcow4j.ext.ExtFilesystem} (open, then list blocks), {@link org.qcow4j.ext.BlockRanges}
 * (the result, as runs) and {@link org.qcow4j.ext.DirectoryScrambler} ({@code e2image -s}). Inside:
 * <ul>
 * <li>on-disk structures as pure decoders over {@code ByteBuffer}s, each quoting its layout: {@code Superblock}
 *     (with e2fsprogs' open-time checks and the superblock/descriptor placement rules), {@code GroupDescriptor},
 *     {@code Inode}, {@code ExtentHeader}, {@code ExtentIndex}, {@code LeafExtent};</li>
 * <li>walks: {@code InodeScanner} (e2fsprogs' lazy inode scan), {@code InodeBlockWalker} (its block iterator, for
 *     indirect blocks and extent trees, with loop and size bounds), {@code MetadataScan} (e2image's selection);</li>
 * <li>{@code BlockDevice} (bounds-checked block reads), {@code BlockRangesBuilder}, {@code VisitedBlocks}.</li>
 * </ul>
 */
package org.qcow4j.ext;
