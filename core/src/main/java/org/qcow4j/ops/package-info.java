/**
 * Engine, top layer: operations over whole images, built on the drivers. Conversions to raw and qcow2
 * ({@code Conversion}, {@code RawConverter}, {@code Qcow2Converter}, {@code ConcatenatedImage}), copies into existing
 * images ({@code ImageCopier}), {@code Rebase} and {@code Commit}. Not exported: {@link org.qcow4j.Images} is their door.
 */
package org.qcow4j.ops;
