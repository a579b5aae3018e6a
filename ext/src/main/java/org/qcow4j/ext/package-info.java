/**
 * Read-only ext2/3/4 parsing: which blocks of a filesystem are metadata, as e2fsprogs' {@code e2image -Q} selects
 * them. Blocks are never modified and checksums never verified or recomputed.
 *
 * <p>Public: {@link org.qcow4j.ext.ExtFilesystem} (open, then list blocks), {@link org.qcow4j.ext.BlockRanges}
 * (the result, as runs) and {@link org.qcow4j.ext.DirectoryScrambler} ({@code e2image -s}). Inside:
 * <ul>
 * <li>on-disk structures as pure decoders, each quoting its layout: {@code Superblock} (with e2fsprogs' open-time
 *     checks and the superblock/descriptor placement rules) and {@code GroupDescriptor} over {@code ByteBuffer}s;
 *     {@code Inode}, {@code ExtentHeader}, {@code ExtentIndex}, {@code LeafExtent} as static field reads over the
 *     {@code byte[]} a table or block was read into ({@code Le}), no object per inode;</li>
 * <li>walks: {@code InodeScanner} (e2fsprogs' lazy inode scan), {@code InodeBlockWalker} (its block iterator, for
 *     indirect blocks and extent trees, with loop and size bounds), {@code MetadataScan} (e2image's selection);</li>
 * <li>{@code BlockDevice} (bounds-checked block reads), {@code BlockRangesBuilder}, {@code VisitedBlocks};</li>
 * <li>{@code MetadataImage.writeTo}: e2image's output loop, for {@code ExtMetadata.writeQcow2} and
 *     {@code writeRaw}.</li>
 * </ul>
 */
package org.qcow4j.ext;
