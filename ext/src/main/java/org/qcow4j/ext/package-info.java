/**
 * Read-only ext2/3/4 parsing: which blocks of a filesystem are metadata, as e2fsprogs' {@code e2image -Q} selects
 * them. Blocks are never modified and checksums never recomputed.
 */
package org.qcow4j.ext;
