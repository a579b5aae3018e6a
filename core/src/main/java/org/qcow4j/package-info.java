/**
 * The library's API: {@link org.qcow4j.Images} (the entry point: open, create, check, repair, convert), the images it
 * hands out ({@link org.qcow4j.DiskImage}, {@link org.qcow4j.WritableImage}, {@link org.qcow4j.Qcow2Metadata}), their
 * options and results, and the exceptions ({@link org.qcow4j.QcowException} and its kinds). Nothing here but
 * {@code Images} knows the engine.
 */
package org.qcow4j;
