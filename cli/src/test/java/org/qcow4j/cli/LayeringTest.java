package org.qcow4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.qcow4j.Images;
import org.qcow4j.ext.ExtMetadata;
import org.qcow4j.nbd.NbdServer;

/**
 * The layering ARCHITECTURE.md describes, read from the compiled classes of the four modules: every reference a
 * class file makes to another qcow4j class (its constant pool: classes, field and method descriptors) must point the
 * allowed way. module-info keeps other modules out of the engine when they compile; this keeps the packages inside
 * core in order too.
 */
class LayeringTest {
    private static final Pattern REFERENCE = Pattern.compile("org/qcow4j/[A-Za-z0-9_/$]+");
    /** Class name -> the qcow4j classes it refers to. */
    private static final Map<String, Set<String>> DEPENDENCIES = new TreeMap<>();

    @BeforeAll
    static void readClassFiles() throws IOException, URISyntaxException {
        for (Class<?> anchor : List.of(Images.class, ExtMetadata.class, NbdServer.class, Main.class)) {
            Path where = Path.of(anchor.getProtectionDomain().getCodeSource().getLocation().toURI());
            if (Files.isDirectory(where)) {
                try (Stream<Path> files = Files.walk(where)) {
                    for (Path f : (Iterable<Path>) files.filter(p -> p.toString().endsWith(".class"))::iterator) {
                        try (InputStream in = Files.newInputStream(f)) {
                            record(in);
                        }
                    }
                }
            } else {
                try (ZipFile jar = new ZipFile(where.toFile())) {
                    List<? extends ZipEntry> entries = jar.stream()
                            .filter(e -> e.getName().endsWith(".class") && !e.getName().startsWith("META-INF")).toList();
                    for (ZipEntry e : entries) {
                        try (InputStream in = jar.getInputStream(e)) {
                            record(in);
                        }
                    }
                }
            }
        }
        assertTrue(DEPENDENCIES.size() > 60, "class files found: " + DEPENDENCIES.size());
    }

    /** Reads one class file's constant pool: its own name and every qcow4j name in it. */
    private static void record(InputStream stream) throws IOException {
        DataInputStream in = new DataInputStream(stream);
        if (in.readInt() != 0xCAFEBABE) {
            throw new IOException("not a class file");
        }
        in.readUnsignedShort();
        in.readUnsignedShort();
        int count = in.readUnsignedShort();
        String[] utf8 = new String[count];
        int[] classIndex = new int[count];
        for (int i = 1; i < count; i++) {
            int tag = in.readUnsignedByte();
            switch (tag) {
                case 1 -> utf8[i] = in.readUTF();
                case 7 -> classIndex[i] = in.readUnsignedShort();
                case 8, 16, 19, 20 -> in.readUnsignedShort();
                case 3, 4, 9, 10, 11, 12, 17, 18 -> in.readInt();
                case 15 -> {
                    in.readUnsignedByte();
                    in.readUnsignedShort();
                }
                case 5, 6 -> {
                    in.readLong();
                    i++;
                }
                default -> throw new IOException("constant pool tag " + tag);
            }
        }
        in.readUnsignedShort(); // access flags
        String self = utf8[classIndex[in.readUnsignedShort()]];
        if (self.equals("module-info")) {
            return;
        }
        Set<String> refs = DEPENDENCIES.computeIfAbsent(outer(self), k -> new TreeSet<>());
        for (String s : utf8) {
            if (s != null) {
                Matcher m = REFERENCE.matcher(s);
                while (m.find()) {
                    refs.add(outer(m.group()));
                }
            }
        }
    }

    /** "org/qcow4j/qcow2/Qcow2Image$Run" -> "org.qcow4j.qcow2.Qcow2Image". */
    private static String outer(String internalName) {
        int dollar = internalName.indexOf('$');
        return (dollar < 0 ? internalName : internalName.substring(0, dollar)).replace('/', '.');
    }

    private static String packageOf(String className) {
        return className.substring(0, className.lastIndexOf('.'));
    }

    /** The references from classes of package {@code from} (that {@code which} selects) that {@code allowed} refuses. */
    private static List<String> violations(String from, Predicate<String> which, Predicate<String> allowed) {
        List<String> bad = new ArrayList<>();
        DEPENDENCIES.forEach((cls, refs) -> {
            if (packageOf(cls).equals(from) && which.test(cls)) {
                for (String r : refs) {
                    if (!packageOf(r).equals(from) && !allowed.test(r)) {
                        bad.add(cls + " -> " + r);
                    }
                }
            }
        });
        return bad;
    }

    private static Predicate<String> inPackages(String... packages) {
        Set<String> set = Set.of(packages);
        return cls -> set.contains(packageOf(cls));
    }

    @Test
    void theApiDependsOnNoEngineClassButThroughItsEntryPoint() {
        assertEquals(List.of(), violations("org.qcow4j", cls -> !cls.equals("org.qcow4j.Images"),
                inPackages("org.qcow4j.format")));
    }

    @Test
    void formatDependsOnNothingButTheApiExceptions() {
        Set<String> exceptions = Set.of("org.qcow4j.QcowException", "org.qcow4j.FormatException",
                "org.qcow4j.UnsupportedFeatureException");
        assertEquals(List.of(), violations("org.qcow4j.format", cls -> true, exceptions::contains));
    }

    @Test
    void theEngineLayersPointDownward() {
        Predicate<String> api = inPackages("org.qcow4j", "org.qcow4j.format");
        assertEquals(List.of(), violations("org.qcow4j.io", cls -> true, api));
        assertEquals(List.of(), violations("org.qcow4j.crypto", cls -> true, api));
        assertEquals(List.of(), violations("org.qcow4j.raw", cls -> true, api.or(inPackages("org.qcow4j.io"))));
        assertEquals(List.of(), violations("org.qcow4j.qcow2", cls -> true,
                api.or(inPackages("org.qcow4j.io", "org.qcow4j.raw", "org.qcow4j.crypto"))));
        assertEquals(List.of(), violations("org.qcow4j.ops", cls -> true,
                api.or(inPackages("org.qcow4j.io", "org.qcow4j.qcow2"))));
    }

    @Test
    void extNbdAndTheCliReachCoreOnlyThroughTheApi() {
        Predicate<String> api = inPackages("org.qcow4j", "org.qcow4j.format");
        assertEquals(List.of(), violations("org.qcow4j.ext", cls -> true, api));
        assertEquals(List.of(), violations("org.qcow4j.cli", cls -> true,
                api.or(inPackages("org.qcow4j.ext", "org.qcow4j.nbd"))));
    }

    @Test
    void nbdsEngineSitsUnderItsApi() {
        Predicate<String> api = inPackages("org.qcow4j", "org.qcow4j.format");
        assertEquals(List.of(), violations("org.qcow4j.nbd", cls -> true,
                api.or(inPackages("org.qcow4j.nbd.server", "org.qcow4j.nbd.client"))));
        assertEquals(List.of(), violations("org.qcow4j.nbd.server", cls -> true,
                api.or(inPackages("org.qcow4j.nbd", "org.qcow4j.nbd.wire"))));
        assertEquals(List.of(), violations("org.qcow4j.nbd.client", cls -> true, api.or(inPackages("org.qcow4j.nbd.wire"))));
        assertEquals(List.of(), violations("org.qcow4j.nbd.wire", cls -> true, cls -> false));
    }

    @Test
    void everyPackageIsInALayer() {
        Set<String> known = Set.of("org.qcow4j", "org.qcow4j.format", "org.qcow4j.io", "org.qcow4j.crypto",
                "org.qcow4j.raw", "org.qcow4j.qcow2", "org.qcow4j.ops", "org.qcow4j.ext", "org.qcow4j.nbd", "org.qcow4j.nbd.server",
                "org.qcow4j.nbd.client", "org.qcow4j.nbd.wire", "org.qcow4j.cli");
        Set<String> found = new TreeSet<>();
        DEPENDENCIES.keySet().forEach(cls -> found.add(packageOf(cls)));
        assertEquals(known, found, "a new package needs its place in ARCHITECTURE.md and in this test");
    }
}
