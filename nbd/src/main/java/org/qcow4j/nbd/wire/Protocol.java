package org.qcow4j.nbd.wire;

/**
 * NBD's numbers (NBD's doc/proto.md; QEMU's include/block/nbd.h), as qemu-nbd 7.2 uses them. Everything on the wire
 * is big-endian. Shared by the server ({@code nbd.server}) and the client ({@code nbd.client}).
 */
public final class Protocol {
    private Protocol() {
    }

    /** "NBDMAGIC", then "IHAVEOPT": the server's greeting. */
    public static final long NBDMAGIC = 0x4e42444d41474943L;
    public static final long IHAVEOPT = 0x49484156454f5054L;
    /** The old style's greeting after NBDMAGIC (not spoken by qemu-nbd 7.2 or qcow4j). */
    public static final long OLDSTYLE_MAGIC = 0x00420281861253L;
    /** Option reply magic. */
    public static final long OPTION_REPLY_MAGIC = 0x3e889045565a9L;
    public static final int REQUEST_MAGIC = 0x25609513;
    public static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    public static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;

    /** Handshake flags (server) and client flags. */
    public static final int FLAG_FIXED_NEWSTYLE = 1;
    public static final int FLAG_NO_ZEROES = 2;

    /** Options. LIST_META_CONTEXT and SET_META_CONTEXT are 9 and 10, as QEMU and libnbd number them. */
    public static final int OPT_EXPORT_NAME = 1;
    public static final int OPT_ABORT = 2;
    public static final int OPT_LIST = 3;
    public static final int OPT_STARTTLS = 5;
    public static final int OPT_INFO = 6;
    public static final int OPT_GO = 7;
    public static final int OPT_STRUCTURED_REPLY = 8;
    public static final int OPT_LIST_META_CONTEXT = 9;
    public static final int OPT_SET_META_CONTEXT = 10;

    /** Option reply types; errors have bit 31 set. */
    public static final int REP_ACK = 1;
    public static final int REP_SERVER = 2;
    public static final int REP_INFO = 3;
    public static final int REP_META_CONTEXT = 4;
    public static final int REP_ERR_UNSUP = 0x80000001;
    public static final int REP_ERR_POLICY = 0x80000002;
    public static final int REP_ERR_INVALID = 0x80000003;
    public static final int REP_ERR_TLS_REQD = 0x80000005;
    public static final int REP_ERR_UNKNOWN = 0x80000006;

    /** Info types. */
    public static final int INFO_EXPORT = 0;
    public static final int INFO_NAME = 1;
    public static final int INFO_DESCRIPTION = 2;
    public static final int INFO_BLOCK_SIZE = 3;

    /** Transmission flags. */
    public static final int FLAG_HAS_FLAGS = 1 << 0;
    public static final int FLAG_READ_ONLY = 1 << 1;
    public static final int FLAG_SEND_FLUSH = 1 << 2;
    public static final int FLAG_SEND_FUA = 1 << 3;
    public static final int FLAG_SEND_TRIM = 1 << 5;
    public static final int FLAG_SEND_WRITE_ZEROES = 1 << 6;
    public static final int FLAG_SEND_DF = 1 << 7;
    public static final int FLAG_CAN_MULTI_CONN = 1 << 8;
    public static final int FLAG_SEND_CACHE = 1 << 10;
    public static final int FLAG_SEND_FAST_ZERO = 1 << 11;

    /** Commands. */
    public static final int CMD_READ = 0;
    public static final int CMD_WRITE = 1;
    public static final int CMD_DISC = 2;
    public static final int CMD_FLUSH = 3;
    public static final int CMD_TRIM = 4;
    public static final int CMD_CACHE = 5;
    public static final int CMD_WRITE_ZEROES = 6;
    public static final int CMD_BLOCK_STATUS = 7;

    /** Command flags. */
    public static final int CMD_FLAG_FUA = 1 << 0;
    public static final int CMD_FLAG_NO_HOLE = 1 << 1;
    public static final int CMD_FLAG_DF = 1 << 2;
    public static final int CMD_FLAG_REQ_ONE = 1 << 3;
    public static final int CMD_FLAG_FAST_ZERO = 1 << 4;

    /** Structured reply chunks. */
    public static final int REPLY_FLAG_DONE = 1;
    public static final int REPLY_TYPE_NONE = 0;
    public static final int REPLY_TYPE_OFFSET_DATA = 1;
    public static final int REPLY_TYPE_OFFSET_HOLE = 2;
    public static final int REPLY_TYPE_BLOCK_STATUS = 5;
    public static final int REPLY_TYPE_ERROR = 0x8001;
    public static final int REPLY_TYPE_ERROR_OFFSET = 0x8002;

    /** Block status flags: base:allocation. */
    public static final int STATE_HOLE = 1;
    public static final int STATE_ZERO = 2;
    /** {@code qemu:dirty-bitmap:} contexts' flag (NBD_STATE_DIRTY). */
    public static final int STATE_DIRTY = 1;

    /** Errors (NBD's numbers, which are Linux's). */
    public static final int EPERM = 1;
    public static final int EIO = 5;
    public static final int ENOMEM = 12;
    public static final int EINVAL = 22;
    public static final int ENOSPC = 28;
    public static final int EOVERFLOW = 75;
    public static final int ENOTSUP = 95;
    public static final int ESHUTDOWN = 108;

    /** The largest request payload and option length (qemu's NBD_MAX_BUFFER_SIZE), and string (NBD_MAX_STRING_SIZE). */
    public static final int MAX_BUFFER_SIZE = 32 * 1024 * 1024;
    public static final int MAX_STRING_SIZE = 4096;
    /** Requests in flight per connection, as qemu's MAX_NBD_REQUESTS. */
    public static final int MAX_REQUESTS = 16;
    /** Extents in one block-status chunk (qemu's NBD_MAX_BLOCK_STATUS_EXTENTS). */
    public static final int MAX_BLOCK_STATUS_EXTENTS = 1024 * 1024 / 8;

    /** Meta context ids, as qemu-nbd gives them. */
    public static final int META_BASE_ALLOCATION = 0;
    public static final int META_ALLOCATION_DEPTH = 1;
    /** The first {@code qemu:dirty-bitmap:NAME} context; the export's bitmaps follow in order. */
    public static final int META_DIRTY_BITMAP = 2;

    public static String optionName(int option) {
        return switch (option) {
            case OPT_EXPORT_NAME -> "export name";
            case OPT_ABORT -> "abort";
            case OPT_LIST -> "list";
            case OPT_STARTTLS -> "starttls";
            case OPT_INFO -> "info";
            case OPT_GO -> "go";
            case OPT_STRUCTURED_REPLY -> "structured reply";
            case OPT_LIST_META_CONTEXT -> "list meta context";
            case OPT_SET_META_CONTEXT -> "set meta context";
            default -> "<unknown>";
        };
    }

    public static String commandName(int type) {
        return switch (type) {
            case CMD_READ -> "read";
            case CMD_WRITE -> "write";
            case CMD_DISC -> "disconnect";
            case CMD_FLUSH -> "flush";
            case CMD_TRIM -> "trim";
            case CMD_CACHE -> "cache";
            case CMD_WRITE_ZEROES -> "write zeroes";
            case CMD_BLOCK_STATUS -> "block status";
            default -> "<unknown>";
        };
    }
}
