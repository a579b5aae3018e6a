package org.qcow4j.nbd;

import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;

/**
 * A client speaking NBD's bytes itself, for the cases real clients never send. Every read times out after 5 s, so
 * a server that neither answers nor hangs up fails the test instead of hanging it.
 */
final class RawClient implements AutoCloseable {
    static final long IHAVEOPT = 0x49484156454f5054L;
    private final Socket socket;
    final DataInputStream in;
    final DataOutputStream out;

    /** One option reply. */
    record OptionReply(int option, int type, byte[] data) {
        String text() {
            return new String(data, StandardCharsets.UTF_8);
        }
    }

    /** One simple reply or structured chunk. */
    record Reply(boolean simple, int flags, int type, long cookie, int error, byte[] payload) {
        boolean done() {
            return simple || (flags & 1) != 0;
        }

        String message() {
            return payload.length < 6 ? "" : new String(payload, 6, payload.length - 6, StandardCharsets.UTF_8);
        }
    }

    RawClient(InetSocketAddress address) throws IOException {
        socket = new Socket();
        socket.connect(address, 5000);
        socket.setSoTimeout(5000);
        in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
        out = new DataOutputStream(socket.getOutputStream());
    }

    /** Reads the greeting and sends the client flags (fixed newstyle, no zeroes unless given). */
    RawClient greet(int clientFlags) throws IOException {
        if (in.readLong() != 0x4e42444d41474943L || in.readLong() != IHAVEOPT) {
            throw new IOException("bad greeting");
        }
        in.readUnsignedShort();
        out.writeInt(clientFlags);
        out.flush();
        return this;
    }

    void option(int option, byte[] data) throws IOException {
        out.writeLong(IHAVEOPT);
        out.writeInt(option);
        out.writeInt(data.length);
        out.write(data);
        out.flush();
    }

    OptionReply optionReply() throws IOException {
        if (in.readLong() != 0x3e889045565a9L) {
            throw new IOException("bad option reply magic");
        }
        int option = in.readInt();
        int type = in.readInt();
        int len = in.readInt();
        if (len < 0 || len > 1 << 20) {
            throw new IOException("option reply length " + len);
        }
        byte[] d = new byte[len];
        in.readFully(d);
        return new OptionReply(option, type, d);
    }

    /** STRUCTURED_REPLY if asked, then GO to {@code export}; returns the export's size. */
    long go(String export, boolean structured) throws IOException {
        if (structured) {
            option(8, new byte[0]);
            if (optionReply().type != 1) {
                throw new IOException("structured replies refused");
            }
        }
        byte[] name = export.getBytes(StandardCharsets.UTF_8);
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4 + name.length + 2).putInt(name.length).put(name)
                .putShort((short) 0);
        option(7, b.array());
        long size = -1;
        while (true) {
            OptionReply r = optionReply();
            if (r.type == 3 && r.data.length == 12) {
                size = java.nio.ByteBuffer.wrap(r.data).getLong(2);
            } else if (r.type == 1) {
                return size;
            } else if (r.type != 3) {
                throw new IOException("GO answered " + Integer.toHexString(r.type) + ": " + r.text());
            }
        }
    }

    void request(int flags, int type, long cookie, long offset, long length) throws IOException {
        out.writeInt(0x25609513);
        out.writeShort(flags);
        out.writeShort(type);
        out.writeLong(cookie);
        out.writeLong(offset);
        out.writeInt((int) length);
        out.flush();
    }

    /** A simple reply ({@code readBytes} of data follow a successful one) or a structured chunk. */
    Reply reply(int readBytes) throws IOException {
        int magic = in.readInt();
        if (magic == 0x67446698) {
            int error = in.readInt();
            long cookie = in.readLong();
            byte[] d = new byte[error == 0 ? readBytes : 0];
            in.readFully(d);
            return new Reply(true, 0, 0, cookie, error, d);
        }
        if (magic != 0x668e33ef) {
            throw new IOException("bad reply magic " + Integer.toHexString(magic));
        }
        int flags = in.readUnsignedShort();
        int type = in.readUnsignedShort();
        long cookie = in.readLong();
        int len = in.readInt();
        if (len < 0 || len > 64 << 20) {
            throw new IOException("chunk length " + len);
        }
        byte[] d = new byte[len];
        in.readFully(d);
        int error = type >= 0x8000 && len >= 4 ? java.nio.ByteBuffer.wrap(d).getInt() : 0;
        return new Reply(false, flags, type, cookie, error, d);
    }

    /** Every chunk of one structured reply, to the one with DONE. */
    java.util.List<Reply> replies() throws IOException {
        java.util.List<Reply> all = new java.util.ArrayList<>();
        Reply r;
        do {
            r = reply(0);
            all.add(r);
        } while (!r.done());
        return all;
    }

    /** Whether the server hung up: the next read ends the stream (a timeout means it did not). */
    boolean closedByServer() throws IOException {
        try {
            return in.read() < 0;
        } catch (SocketTimeoutException e) {
            return false;
        } catch (EOFException e) {
            return true;
        } catch (IOException e) {
            return true; // reset
        }
    }

    @Override
    public void close() throws IOException {
        socket.close();
    }
}
