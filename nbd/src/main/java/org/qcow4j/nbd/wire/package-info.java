/** Engine: NBD's numbers on the wire, shared by the server and the client. Not exported. */
package org.qcow4j.nbd.wire;
