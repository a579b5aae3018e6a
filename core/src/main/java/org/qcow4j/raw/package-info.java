/** Engine: raw files as disk images, read-only ({@code RawImage}) and writable ({@code WritableRawImage}). Not exported. */
package org.qcow4j.raw;
