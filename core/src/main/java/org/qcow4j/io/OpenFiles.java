package org.qcow4j.io;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.HashMap;
import java.util.Map;
import org.qcow4j.ImageLockedException;
import org.qcow4j.QcowException;

/**
 * Every file qcow4j opens, one entry per file in this process, and QEMU's image locking over them.
 *
 * <p>Why one entry per file: the JDK's file locks are POSIX record locks, which belong to the process, and Linux drops
 * all of a process's locks on a file when any descriptor of that file closes. So a file is opened once, its channels
 * (one read-only, one read-write once a writer comes) are shared by every user in the process and closed only when the
 * last user closes, and each lock byte is locked while at least one user needs it.
 *
 * <p>The protocol is QEMU's ({@code raw_apply_lock_bytes}, then {@code raw_check_lock_bytes}): take the shared locks
 * this open needs, then look for another process's lock on a byte that says it refuses this open. Linux makes POSIX
 * locks and QEMU's open-file-description locks conflict, so QEMU sees ours and we see QEMU's. The look is done in
 * {@code /proc/locks}, which shows every lock on the machine with its owner, so our own locks (of this process) are
 * told from others' without the JDK refusing to test a range this process holds. Where {@code /proc/locks} cannot be
 * read (not Linux), qcow4j takes its locks, so QEMU still sees them, but cannot check others'.
 */
public final class OpenFiles {
    private static final Path PROC_LOCKS = Path.of("/proc/locks");
    /** This process's id as /proc/locks prints it; read when first needed (ProcessHandle costs start-up time). */
    private static String pid;
    /** Guarded by itself. */
    private static final Map<Object, Entry> FILES = new HashMap<>();

    private OpenFiles() {
    }

    /**
     * Opens {@code path} as {@code access} says, taking its locks.
     *
     * @param name the file's name for messages
     * @throws ImageLockedException when another process holds the file in a way this access cannot share (nothing
     *         is kept open or locked then)
     */
    public static OpenFile open(Path path, Access access, String name) throws IOException {
        if (Files.isDirectory(path)) {
            // QEMU's file driver: open(2) of a directory for writing fails; read-only it opens, and then is refused
            throw new QcowException(name, "is a directory", null, access.writable()
                    ? "Could not open '" + name + "': Is a directory"
                    : "'file' driver requires '" + name + "' to be a regular file");
        }
        synchronized (FILES) {
            Object key = Files.readAttributes(path, BasicFileAttributes.class).fileKey();
            if (key == null) {
                key = path.toRealPath();
            }
            Entry e = FILES.get(key);
            if (e == null) {
                e = new Entry(key, path);
                FILES.put(key, e);
            }
            e.users++;
            try {
                e.open(path, access.writable());
                e.acquire(access, name);
            } catch (IOException | RuntimeException ex) {
                e.release(0);
                throw ex;
            }
            return new OpenFile(e, access.writable(), heldBytes(access));
        }
    }

    /** This process's id, from /proc/self (a link named by it). */
    private static String pid() throws IOException {
        if (pid == null) {
            pid = Files.readSymbolicLink(Path.of("/proc/self")).toString();
        }
        return pid;
    }

    static int users(Entry e) {
        synchronized (FILES) {
            return e.users;
        }
    }

    static void close(Entry e, int held) throws IOException {
        synchronized (FILES) {
            e.release(held);
        }
    }

    /** The lock bytes (bit i: byte 100 + i, bit 4 + i: byte 200 + i) an access holds. */
    private static int heldBytes(Access access) {
        return access.perm() | ((~access.shared() & Access.P_ALL) << 4);
    }

    private static int byteAt(int index) {
        return index < 4 ? Access.PERM_BASE + index : Access.SHARED_BASE + index - 4;
    }

    /** One file open in this process: its channels, users and locks. */
    static final class Entry {
        private final Object key;
        private final Path path;
        private volatile FileChannel reader;
        private volatile FileChannel writer;
        private int users;
        private final int[] needed = new int[8];
        private final FileLock[] locks = new FileLock[8];

        Entry(Object key, Path path) {
            this.key = key;
            this.path = path;
        }

        FileChannel channel(boolean writable) {
            return writable ? writer : writer != null ? writer : reader;
        }

        void open(Path p, boolean writable) throws IOException {
            if (writable && writer == null) {
                writer = FileChannel.open(p, StandardOpenOption.READ, StandardOpenOption.WRITE);
            } else if (!writable && reader == null && writer == null) {
                reader = FileChannel.open(p, StandardOpenOption.READ);
            }
        }

        /** Locks the bytes {@code access} needs that are not locked yet, then checks for others' locks. */
        void acquire(Access access, String name) throws IOException {
            int held = heldBytes(access);
            int taken = 0;
            try {
                for (int i = 0; i < 8; i++) {
                    if ((held & (1 << i)) != 0) {
                        if (needed[i]++ == 0) {
                            locks[i] = lock(byteAt(i));
                            if (locks[i] == null) {
                                needed[i]--;
                                throw refusal(i, name);
                            }
                        }
                        taken |= 1 << i;
                    }
                }
                check(access, name);
            } catch (IOException | RuntimeException e) {
                unlock(taken);
                throw e;
            }
        }

        private FileLock lock(int pos) throws IOException {
            try {
                return channel(false).tryLock(pos, 1, true);
            } catch (OverlappingFileLockException e) {
                throw new IllegalStateException("lock byte " + pos + " of " + path + " locked twice", e);
            }
        }

        /** QEMU's raw_check_lock_bytes: a used permission another process does not share, a refused one it holds. */
        private void check(Access access, String name) throws IOException {
            int test = (access.perm() << 4) | (~access.shared() & Access.P_ALL);
            if (test == 0) {
                return;
            }
            int foreign = foreignLocks(test);
            for (int i = 0; i < 4; i++) {
                if ((foreign & (1 << (4 + i))) != 0 && (access.perm() & (1 << i)) != 0) {
                    throw new ImageLockedException(name, Access.NAMES[i], false);
                }
            }
            for (int i = 0; i < 4; i++) {
                if ((foreign & (1 << i)) != 0) {
                    throw new ImageLockedException(name, Access.NAMES[i], true);
                }
            }
        }

        /** Which of the lock bytes in {@code mask} another process (or open file description) holds a lock on. */
        private int foreignLocks(int mask) throws IOException {
            String locks;
            try {
                locks = Files.readString(PROC_LOCKS, StandardCharsets.US_ASCII);
            } catch (IOException e) {
                return 0; // not Linux: our locks are taken, others' cannot be seen
            }
            String id = deviceAndInode();
            int found = 0;
            for (int at = 0, end; at < locks.length(); at = end + 1) {
                end = locks.indexOf('\n', at);
                end = end < 0 ? locks.length() : end;
                String line = locks.substring(at, end);
                if (line.contains(id)) {
                    found |= foreignBytes(line, id, mask);
                }
            }
            return found;
        }

        /**
         * The bytes of {@code mask} that one /proc/locks line locks for someone else: "1: POSIX  ADVISORY  READ 1234
         * fe:00:2146340 100 100" (a waiter: "1: -> POSIX ..."). An OFD lock (QEMU's) is never ours; a POSIX lock is
         * ours when it names this process.
         */
        private static int foreignBytes(String line, String id, int mask) throws IOException {
            String[] f = new String[9];
            int n = 0;
            for (int i = 0; i < line.length() && n < f.length; ) {
                while (i < line.length() && line.charAt(i) == ' ') {
                    i++;
                }
                int start = i;
                while (i < line.length() && line.charAt(i) != ' ') {
                    i++;
                }
                if (i > start) {
                    f[n++] = line.substring(start, i);
                }
            }
            int k = n > 1 && f[1].equals("->") ? 2 : 1;
            if (n < k + 7 || !f[k + 4].equals(id)) {
                return 0;
            }
            boolean foreign = f[k].equals("OFDLCK") || (f[k].equals("POSIX") && !f[k + 3].equals(pid()));
            if (!foreign) {
                return 0;
            }
            long first = Long.parseLong(f[k + 5]);
            long last = f[k + 6].equals("EOF") ? Long.MAX_VALUE : Long.parseLong(f[k + 6]);
            int found = 0;
            for (int i = 0; i < 8; i++) {
                int b = byteAt(i);
                if ((mask & (1 << i)) != 0 && first <= b && b <= last) {
                    found |= 1 << i;
                }
            }
            return found;
        }

        /** The file as /proc/locks names it: "MAJOR:MINOR:INODE", the device numbers in two-digit hex at least. */
        private String deviceAndInode() throws IOException {
            long dev = ((Number) Files.getAttribute(path, "unix:dev")).longValue();
            long ino = ((Number) Files.getAttribute(path, "unix:ino")).longValue();
            long major = ((dev >>> 8) & 0xfff) | ((dev >>> 32) & ~0xfffL);
            long minor = (dev & 0xff) | ((dev >>> 12) & ~0xffL);
            return hex2(major) + ":" + hex2(minor) + ":" + ino;
        }

        private static String hex2(long v) {
            String h = Long.toHexString(v);
            return h.length() < 2 ? "0" + h : h;
        }

        private ImageLockedException refusal(int index, String name) {
            // Only a write (exclusive) lock stops a shared one: a tester's probe, never QEMU, which locks shared.
            return index < 4 ? new ImageLockedException(name, Access.NAMES[index], true)
                    : new ImageLockedException(name, Access.NAMES[index - 4], false);
        }

        private void unlock(int bytes) throws IOException {
            for (int i = 0; i < 8; i++) {
                if ((bytes & (1 << i)) != 0 && --needed[i] == 0) {
                    if (locks[i].isValid()) { // not if its channel was closed (an interrupted read closes it)
                        locks[i].release();
                    }
                    locks[i] = null;
                }
            }
        }

        /** One user is done: its lock bytes, and with the last user the channels (and so every lock) go. */
        @SuppressWarnings("try") // the channels are only there to be closed, each even if the other fails
        void release(int held) throws IOException {
            try {
                unlock(held);
            } finally {
                if (--users == 0) {
                    FILES.remove(key);
                    try (FileChannel r = reader; FileChannel w = writer) {
                        reader = null;
                        writer = null;
                    }
                }
            }
        }
    }
}
