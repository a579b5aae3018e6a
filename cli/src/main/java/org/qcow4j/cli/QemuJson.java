package org.qcow4j.cli;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import java.io.IOException;
import java.io.StringWriter;
import java.util.List;
import java.util.Map;

/** Renders an ordered tree as JSON laid out like QEMU's pretty printer (4-space indent, {@code "key": value}). */
final class QemuJson {
    private static final JsonFactory FACTORY = new JsonFactory();

    private QemuJson() {
    }

    static String render(Object tree) {
        StringWriter w = new StringWriter();
        try (JsonGenerator g = FACTORY.createGenerator(w)) {
            DefaultIndenter indent = new DefaultIndenter("    ", "\n");
            g.setPrettyPrinter(new DefaultPrettyPrinter()
                    .withSeparators(Separators.createDefaultInstance()
                            .withObjectFieldValueSpacing(Separators.Spacing.AFTER))
                    .withObjectIndenter(indent)
                    .withArrayIndenter(indent));
            write(g, tree);
        } catch (IOException e) {
            throw new IllegalStateException("writing JSON to a string", e);
        }
        // QEMU's pretty printer opens an empty array on one line and closes it on the next (Jackson: "[ ]").
        return EMPTY_ARRAY.matcher(w.toString()).replaceAll("$1$2[\n$1]$3");
    }

    private static final java.util.regex.Pattern EMPTY_ARRAY =
            java.util.regex.Pattern.compile("(?m)^( *)(.*)\\[ \\](,?)$");

    private static void write(JsonGenerator g, Object v) throws IOException {
        if (v instanceof Map<?, ?> m) {
            g.writeStartObject();
            for (Map.Entry<?, ?> e : m.entrySet()) {
                g.writeFieldName(e.getKey().toString());
                write(g, e.getValue());
            }
            g.writeEndObject();
        } else if (v instanceof List<?> l) {
            g.writeStartArray();
            for (Object o : l) {
                write(g, o);
            }
            g.writeEndArray();
        } else if (v instanceof Boolean b) {
            g.writeBoolean(b);
        } else if (v instanceof Long n) {
            g.writeNumber(n);
        } else if (v instanceof Integer n) {
            g.writeNumber(n);
        } else {
            g.writeString(String.valueOf(v));
        }
    }
}
