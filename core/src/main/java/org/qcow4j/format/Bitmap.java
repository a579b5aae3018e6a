package org.qcow4j.format;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.qcow4j.FormatException;

/**
 * A persistent dirty bitmap's directory entry (qcow2.txt "Bitmaps"), entries padded to 8 bytes:
 * <pre>
 *  0 u64 bitmap_table_offset   8 u32 bitmap_table_size  12 u32 flags (bit0 in_use, bit1 auto)
 * 16 u8 type                  17 u8 granularity_bits   18 u16 name_size  20 u32 extra_data_size
 * 24 extra data, then name
 * </pre>
 */
public record Bitmap(String name, int granularityBits, int flags) {
    public static final int FLAG_IN_USE = 1;
    public static final int FLAG_AUTO = 2;
    private static final int FIXED_SIZE = 24;

    /** The bitmap directory of a header whose bitmaps extension is valid (autoclear bit 0 set). */
    public static List<Bitmap> readDirectory(BitmapsExtension ext, Snapshot.Reader reader, String file, long fileLength)
            throws IOException {
        if (ext.directoryOffset() < 0 || ext.directoryOffset() > fileLength || ext.directorySize() > fileLength - ext.directoryOffset()) {
            throw new FormatException(file, "bitmap_directory_offset", FormatException.hex(ext.directoryOffset()),
                    "bitmap directory runs past the end of the file");
        }
        ByteBuffer dir = reader.read(ext.directoryOffset(), (int) ext.directorySize()).order(ByteOrder.BIG_ENDIAN);
        List<Bitmap> list = new ArrayList<>();
        int pos = 0;
        for (int i = 0; i < ext.count(); i++) {
            if (pos + FIXED_SIZE > dir.limit()) {
                throw new FormatException(file, "bitmap " + i, pos, "entry runs past the bitmap directory");
            }
            int flags = dir.getInt(pos + 12);
            int granularity = dir.get(pos + 17) & 0xff;
            int nameSize = dir.getShort(pos + 18) & 0xffff;
            long extra = Integer.toUnsignedLong(dir.getInt(pos + 20));
            long entry = FIXED_SIZE + extra + nameSize;
            if (pos + entry > dir.limit()) {
                throw new FormatException(file, "bitmap " + i + " name_size", nameSize, "entry runs past the bitmap directory");
            }
            byte[] name = new byte[nameSize];
            dir.get(pos + FIXED_SIZE + (int) extra, name);
            list.add(new Bitmap(new String(name, StandardCharsets.UTF_8), granularity, flags));
            pos += (int) ((entry + 7) & ~7L);
        }
        return List.copyOf(list);
    }
}
