package org.qcow4j.cli;

import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;
import org.qcow4j.Images;

/**
 * A file's allocated size (qemu-img's "disk size"), asked on a thread of its own as soon as the file is named. The
 * JDK has no st_blocks, so {@link Images#allocatedBytes} starts a process: begun before the image opens, it runs
 * beside the open instead of after it, which takes it off a short command's wall time on two cores.
 */
final class AllocatedSize implements Callable<Long> {
    private final Path file;
    private final FutureTask<Long> task;

    private AllocatedSize(Path file) {
        this.file = file;
        this.task = new FutureTask<>(this); // not a lambda: see ImageArgs.openNamed
    }

    /** The asking, on the thread {@link #start} starts. */
    @Override
    public Long call() {
        return Images.allocatedBytes(file);
    }

    /** Started for {@code name} if it names a file the plain way (not {@code json:} or a protocol), else null. */
    static AllocatedSize start(String name) {
        if (name == null || name.startsWith("json:") || name.contains(":") && !name.startsWith("/")
                && !name.startsWith("./")) {
            return null;
        }
        AllocatedSize a;
        try {
            a = new AllocatedSize(Path.of(name));
        } catch (InvalidPathException e) {
            return null;
        }
        Thread t = new Thread(a.task, "qcow4j-stat");
        t.setDaemon(true);
        t.start();
        return a;
    }

    Path file() {
        return file;
    }

    /** The size in bytes, or -1 when it cannot be told. */
    long get() {
        try {
            return task.get();
        } catch (ExecutionException e) {
            return -1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }
}
