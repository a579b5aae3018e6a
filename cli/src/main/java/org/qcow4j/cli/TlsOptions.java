package org.qcow4j.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.qcow4j.nbd.TlsCredentials;

/**
 * qemu-nbd's TLS options: {@code --object tls-creds-x509,id=ID,dir=DIR,endpoint=server[,verify-peer=on|off]} and
 * {@code --tls-creds ID}, with QEMU's defaults (endpoint client, verify-peer on) and messages. Under qcow4j's own name
 * {@code --tls-creds DIR} also takes the directory itself, with verify-peer off (clients need no certificate).
 */
final class TlsOptions {
    private TlsOptions() {
    }

    /** The credentials the options name, or null without {@code --tls-creds}. */
    static TlsCredentials credentials(List<String> objects, String tlsCreds, boolean directoryForm)
            throws IOException, CommandLine.UsageException {
        Map<String, Map<String, String>> byId = new HashMap<>();
        for (String spec : objects) {
            Map<String, String> props = keyval(spec);
            String type = props.remove("qom-type");
            String id = props.remove("id");
            if (id == null) {
                throw CommandLine.UsageException.withoutHint("Parameter 'id' is missing");
            }
            if (byId.containsKey(id)) {
                throw CommandLine.UsageException.withoutHint("attempt to add duplicate property '" + id
                        + "' to object (type 'container')");
            }
            props.put("qom-type", type);
            byId.put(id, props);
        }
        // QEMU creates (and so loads) every object while it parses the command line, before --tls-creds is looked at
        Map<String, TlsCredentials> loaded = new HashMap<>();
        for (Map.Entry<String, Map<String, String>> e : byId.entrySet()) {
            Map<String, String> props = e.getValue();
            if (!"tls-creds-x509".equals(props.get("qom-type"))) {
                throw CommandLine.UsageException.withoutHint("--object " + props.get("qom-type")
                        + " is not supported (only tls-creds-x509)");
            }
            loaded.put(e.getKey(), load(new HashMap<>(props)));
        }
        if (tlsCreds == null) {
            return null;
        }
        if (byId.containsKey(tlsCreds)) {
            if (!"server".equals(byId.get(tlsCreds).getOrDefault("endpoint", "client"))) {
                throw new IOException("Failed to get TLS creds: Expected TLS credentials for a server endpoint");
            }
            return loaded.get(tlsCreds);
        }
        if (directoryForm && Files.isDirectory(Path.of(tlsCreds))) {
            return TlsCredentials.fromDirectory(Path.of(tlsCreds));
        }
        throw new IOException("Failed to get TLS creds: No TLS credentials with id '" + tlsCreds + "'"
                + (directoryForm ? " (and no directory " + tlsCreds + ")" : ""));
    }

    private static TlsCredentials load(Map<String, String> props) throws IOException, CommandLine.UsageException {
        String dir = props.remove("dir");
        String endpoint = props.remove("endpoint");
        if (endpoint != null && !endpoint.equals("server") && !endpoint.equals("client")) {
            throw CommandLine.UsageException.withoutHint("Parameter 'endpoint' does not accept value '" + endpoint + "'");
        }
        boolean verifyPeer = bool(props.remove("verify-peer"), "verify-peer", true);
        boolean sanity = bool(props.remove("sanity-check"), "sanity-check", true);
        props.remove("qom-type");
        if (!sanity) {
            throw CommandLine.UsageException.withoutHint("sanity-check=off is not supported");
        }
        if (!props.isEmpty()) {
            throw CommandLine.UsageException.withoutHint("Property '" + props.keySet().iterator().next()
                    + "' is not supported by tls-creds-x509 here (dir, endpoint, verify-peer are)");
        }
        if (dir == null) {
            throw new IOException("Missing 'dir' property value");
        }
        if (!"server".equals(endpoint)) {
            return null; // a client endpoint is never loaded as a server's: --tls-creds refuses it by name
        }
        return TlsCredentials.fromDirectory(Path.of(dir), verifyPeer);
    }

    private static boolean bool(String value, String name, boolean dflt) throws CommandLine.UsageException {
        if (value == null) {
            return dflt;
        }
        return switch (value) {
            case "on", "yes", "true" -> true;
            case "off", "no", "false" -> false;
            default -> throw CommandLine.UsageException.withoutHint("Parameter '" + name + "' expects 'on' or 'off'");
        };
    }

    /** QEMU's key=value list: the first item without '=' is the type; ",," is a comma inside a value. */
    static Map<String, String> keyval(String spec) throws CommandLine.UsageException {
        Map<String, String> props = new LinkedHashMap<>();
        StringBuilder item = new StringBuilder();
        int i = 0;
        boolean first = true;
        while (i <= spec.length()) {
            if (i == spec.length() || (spec.charAt(i) == ',' && !(i + 1 < spec.length() && spec.charAt(i + 1) == ','))) {
                String s = item.toString();
                int eq = s.indexOf('=');
                if (first && eq < 0) {
                    props.put("qom-type", s);
                } else if (eq <= 0) {
                    throw CommandLine.UsageException.withoutHint("Expected '=' after parameter '" + s + "'");
                } else if (props.put(s.substring(0, eq), s.substring(eq + 1)) != null) {
                    throw CommandLine.UsageException.withoutHint("Parameter '" + s.substring(0, eq)
                            + "' is duplicate");
                }
                first = false;
                item.setLength(0);
                i++;
            } else if (spec.charAt(i) == ',') {
                item.append(',');
                i += 2;
            } else {
                item.append(spec.charAt(i++));
            }
        }
        if (!props.containsKey("qom-type")) {
            throw CommandLine.UsageException.withoutHint("Parameter 'qom-type' is missing");
        }
        return props;
    }
}
