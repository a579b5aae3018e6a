/**
 * Engine, bottom layer: file access and plumbing every format shares. Positional reads and writes ({@code
 * FileStorage}), a file's data and holes ({@code FileExtents}), outputs that appear only when complete ({@code
 * OutputFile}), a bounded pool of workers ({@code Workers}), zero detection ({@code Zeros}), a channel over an image
 * ({@code ImageChannel}). Depends on the API only. Not exported.
 */
package org.qcow4j.io;
