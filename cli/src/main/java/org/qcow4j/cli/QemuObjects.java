package org.qcow4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * QEMU's {@code --object OBJECTDEF} (user_creatable_process_cmdline, QEMU 7.2) for its tools: the definitions are
 * checked as QEMU checks them and the objects kept by id. qcow4j has one type, {@code secret} (passwords and keys,
 * kept for encryption), with its data given inline or read from a file; every other type QEMU's tools have is refused
 * by name. Help ({@code help}, {@code secret,help}) prints what QEMU prints for what qcow4j has.
 */
final class QemuObjects {
    /** An object definition refused: QEMU's message and maybe its hint line. */
    static final class Invalid extends Exception {
        private static final long serialVersionUID = 1L;
        private final String hint;

        Invalid(String message, String hint) {
            super(message);
            this.hint = hint;
        }

        String hint() {
            return hint;
        }
    }

    /**
     * A secret: its text as given (data, or the file's bytes as ISO-8859-1 characters: {@code fromFile}) and its
     * format ("raw" or "base64"). Never printed.
     */
    record Secret(String id, String value, String format, boolean fromFile) {
        @Override
        public String toString() {
            return "Secret[" + id + "]";
        }
    }

    /** The object types of QEMU 7.2's tools (qemu-io --object help). */
    private static final Set<String> QEMU_TYPES = Set.of("authz-list", "authz-list-file", "authz-simple", "main-loop",
            "pr-manager-helper", "secret", "secret_keyring", "thread-context", "throttle-group", "tls-cipher-suites",
            "tls-creds-anon", "tls-creds-psk", "tls-creds-x509");
    private static final List<String> SECRET_KEYS = List.of("data", "file", "format", "iv", "keyid");

    private final Map<String, Secret> secrets = new LinkedHashMap<>();

    /**
     * {@link #add} as the tools' {@code --object} does it: null to go on, else the exit code to end the program with
     * (0 after help was printed; 1 after the refusal, printed as QEMU prints it).
     */
    Integer addOption(String definition, PrintWriter out, Stderr err) {
        try {
            return add(definition, out) ? null : ExitCodes.OK;
        } catch (Invalid e) {
            err.error(e.getMessage());
            if (e.hint() != null) {
                err.println(e.hint());
            }
            return ExitCodes.FAILURE;
        }
    }

    /**
     * Adds the object {@code definition} defines; returns false when it asked for help instead (printed on
     * {@code out}: the program then ends successfully, as QEMU's does).
     */
    boolean add(String definition, PrintWriter out) throws Invalid {
        QemuOpts.Keyval kv;
        try {
            kv = QemuOpts.keyval(definition, "qom-type");
        } catch (QemuOpts.Invalid e) {
            throw new Invalid(e.getMessage(), e.hint());
        }
        Map<String, String> v = new LinkedHashMap<>(kv.values());
        String type = v.remove("qom-type");
        if (kv.help()) {
            if (type == null) {
                out.println("List of user creatable objects:");
                out.println("  secret");
            } else if (type.equals("secret")) {
                out.println("secret options:");
                out.println("  data=<string>");
                out.println("  file=<string>");
                out.println("  format=<QCryptoSecretFormat>");
                out.println("  iv=<string>");
                out.println("  keyid=<string>");
            } else {
                throw unsupported(type);
            }
            return false;
        }
        if (type == null) {
            throw new Invalid("Parameter 'qom-type' is missing", null);
        }
        if (!QEMU_TYPES.contains(type)) {
            throw new Invalid("Parameter 'qom-type' does not accept value '" + type + "'", null);
        }
        if (!type.equals("secret")) {
            throw unsupported(type);
        }
        String id = v.remove("id");
        if (id == null) {
            throw new Invalid("Parameter 'id' is missing", null);
        }
        for (String k : v.keySet()) {
            if (!SECRET_KEYS.contains(k)) {
                throw new Invalid("Parameter '" + k + "' is unexpected", null);
            }
        }
        String format = v.getOrDefault("format", "raw");
        if (!format.equals("raw") && !format.equals("base64")) {
            throw new Invalid("Parameter 'format' does not accept value '" + format + "'", null);
        }
        if (!QemuOpts.wellFormedId(id)) {
            throw new Invalid("Parameter 'id' expects an identifier",
                    "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.");
        }
        if (secrets.containsKey(id)) {
            throw new Invalid("attempt to add duplicate property '" + id + "' to object (type 'container')", null);
        }
        String data = v.get("data");
        String file = v.get("file");
        if (data != null && file != null) {
            throw new Invalid("'file' and 'data' are mutually exclusive", null);
        }
        if (data == null && file == null) {
            throw new Invalid("Either 'file' or 'data' must be provided", null);
        }
        boolean fromFile = file != null;
        if (fromFile) {
            data = read(file);
        }
        String keyid = v.get("keyid");
        if (keyid != null) {
            if (!secrets.containsKey(keyid)) {
                throw new Invalid("No secret with id '" + keyid + "'", null);
            }
            throw new Invalid("secrets encrypted with another secret (keyid) are not supported by qcow4j", null);
        }
        if (format.equals("base64")) {
            try {
                java.util.Base64.getDecoder().decode(data.strip());
            } catch (IllegalArgumentException e) {
                throw new Invalid("Unable to decode base64 data of secret '" + id + "'", null);
            }
        }
        secrets.put(id, new Secret(id, data, format, fromFile));
        return true;
    }

    private static Invalid unsupported(String type) {
        return new Invalid("objects of type '" + type + "' are not supported by qcow4j (it has 'secret')", null);
    }

    private static String read(String file) throws Invalid {
        try {
            return Files.readString(Path.of(file), StandardCharsets.ISO_8859_1);
        } catch (NoSuchFileException e) {
            throw new Invalid("Unable to read " + file + ": Failed to open file \u201c" + file + "\u201d: No such file or directory",
                    null);
        } catch (IOException | RuntimeException e) {
            throw new Invalid("Unable to read " + file + ": Failed to open file \u201c" + file + "\u201d: "
                    + IoErrno.strerror(IoErrno.of(e)), null);
        }
    }

    /** The secret {@code id}, or null. */
    Secret secret(String id) {
        return secrets.get(id);
    }

    /**
     * The secret {@code id} as a passphrase, as QEMU's qcrypto_secret_lookup_as_utf8 hands it to the encryption: its
     * bytes (base64 decoded if so defined), valid UTF-8, up to the first NUL byte (QEMU takes strlen of it).
     */
    org.qcow4j.Passphrase passphrase(String id) throws Invalid {
        Secret s = secrets.get(id);
        if (s == null) {
            throw new Invalid("No secret with id '" + id + "'", null);
        }
        byte[] raw = s.fromFile() ? s.value().getBytes(StandardCharsets.ISO_8859_1) : s.value().getBytes(StandardCharsets.UTF_8);
        if (s.format().equals("base64")) {
            byte[] decoded = java.util.Base64.getDecoder().decode(new String(raw, StandardCharsets.ISO_8859_1).strip());
            java.util.Arrays.fill(raw, (byte) 0);
            raw = decoded;
        }
        try {
            StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(raw));
        } catch (java.nio.charset.CharacterCodingException e) {
            java.util.Arrays.fill(raw, (byte) 0);
            throw new Invalid("Data from secret " + id + " is not valid UTF-8", null);
        }
        int len = 0;
        while (len < raw.length && raw[len] != 0) {
            len++;
        }
        byte[] pass = java.util.Arrays.copyOf(raw, len);
        java.util.Arrays.fill(raw, (byte) 0);
        try {
            return org.qcow4j.Passphrase.of(pass);
        } finally {
            java.util.Arrays.fill(pass, (byte) 0);
        }
    }
}
