package org.qcow4j.nbd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.qcow4j.nbd.NbdTools.ok;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.qcow4j.DiskImage;
import org.qcow4j.Images;
import org.qcow4j.testing.Processes;

/**
 * TLS (STARTTLS with QEMU's x509 directory layout) against libnbd's nbdinfo and nbdcopy ({@code nbds+unix://} with
 * {@code tls-certificates=DIR}) and raw bytes. The certificates are made at test time with openssl: a CA, a server
 * certificate for localhost and 127.0.0.1, a client certificate, and a second CA that signed none of them.
 */
class NbdTlsTest {
    @TempDir
    static Path dir;
    static Path pki;
    static Path otherCa;
    static Path withClientCert;

    @BeforeAll
    static void certificates() throws IOException {
        pki = Files.createDirectory(dir.resolve("pki"));
        ca(pki, "qcow4j test CA");
        signed(pki, "server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                + "extendedKeyUsage=serverAuth\n", "rsa:2048");
        otherCa = Files.createDirectory(dir.resolve("other"));
        ca(otherCa, "some other CA");
        withClientCert = Files.createDirectory(dir.resolve("client"));
        Files.copy(pki.resolve("ca-cert.pem"), withClientCert.resolve("ca-cert.pem"));
        Files.copy(pki.resolve("ca-key.pem"), withClientCert.resolve("ca-key.pem"));
        signed(withClientCert, "client", "/CN=qcow4j client", "extendedKeyUsage=clientAuth\n", "rsa:2048");
        ok(dir, "qemu-img", "create", "-q", "-f", "qcow2", "disk.qcow2", "8M");
        ok(dir, "qemu-io", "-c", "write -P 7 0 1M", "-c", "write -P 9 3M 2M", "-c", "write -z 6M 64k", "disk.qcow2");
    }

    private static void ca(Path d, String name) {
        ok(d, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca-cert.pem",
                "-days", "2", "-subj", "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign");
    }

    /** {@code who-cert.pem} and {@code who-key.pem} (PKCS#8) in {@code d}, signed by the CA in {@code d}. */
    private static void signed(Path d, String who, String subject, String extensions, String key) throws IOException {
        ok(d, "openssl", "req", "-newkey", key, "-nodes", "-keyout", who + "-key.pem", "-out", who + ".csr",
                "-subj", subject);
        Files.writeString(d.resolve(who + ".ext"), "basicConstraints=critical,CA:FALSE\n"
                + "keyUsage=critical,digitalSignature,keyEncipherment\n" + extensions);
        ok(d, "openssl", "x509", "-req", "-in", who + ".csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-out", who + "-cert.pem", "-days", "2", "-extfile", who + ".ext");
    }

    private static String tlsUri(Path socket, Path certs) {
        return "nbds+unix:///?socket=" + socket + "&tls-certificates=" + certs;
    }

    private static NbdServer serve(DiskImage image, TlsCredentials tls, List<String> log) throws IOException {
        Path socket = dir.resolve("tls.sock");
        NbdServer s = NbdServer.builder().export(NbdExport.readOnly("", image)).unixSocket(socket).tls(tls)
                .log(log::add).start();
        NbdTools.awaitSocket(socket, null);
        return s;
    }

    @Test
    void nbdinfoAndNbdcopyOverTlsSeeWhatQemuNbdShows() throws Exception {
        Path qsock = dir.resolve("q.sock");
        Process q = NbdTools.qemuNbd(dir, qsock, "disk.qcow2", "-r", "--object",
                "tls-creds-x509,id=tls0,dir=" + pki + ",endpoint=server,verify-peer=off", "--tls-creds", "tls0");
        JsonNode theirs;
        try {
            theirs = NbdTools.info(dir, tlsUri(qsock, pki));
        } finally {
            NbdTools.stop(q);
        }
        List<String> log = new CopyOnWriteArrayList<>();
        try (DiskImage image = Images.open(dir.resolve("disk.qcow2"));
             NbdServer server = serve(image, TlsCredentials.fromDirectory(pki), log)) {
            Path socket = NbdTools.socket(server);
            JsonNode ours = NbdTools.info(dir, tlsUri(socket, pki));
            assertEquals(theirs, ours);
            assertTrue(ok(dir, "nbdinfo", tlsUri(socket, pki)).contains("newstyle-fixed with TLS"));
            // bulk data through the TLS records, several connections at once
            ok(dir, "nbdcopy", tlsUri(socket, pki), dir.resolve("copy.raw").toString());
            ok(dir, "qemu-img", "convert", "-O", "raw", "disk.qcow2", "expected.raw");
            assertArrayEquals(Files.readAllBytes(dir.resolve("expected.raw")), Files.readAllBytes(dir.resolve("copy.raw")));
        }
    }

    @Test
    void aClientWithoutTlsIsRefusedWithTlsRequired() throws Exception {
        List<String> log = new CopyOnWriteArrayList<>();
        try (DiskImage image = Images.open(dir.resolve("disk.qcow2"));
             NbdServer server = NbdServer.builder().export(NbdExport.readOnly("", image))
                     .tcp(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0)).maxConnections(0)
                     .tls(TlsCredentials.fromDirectory(pki)).log(log::add).start()) {
            InetSocketAddress address = (InetSocketAddress) server.address();
            Processes.Result r = Processes.run(dir, "nbdinfo", "nbd://127.0.0.1:" + address.getPort());
            assertNotEquals(0, r.exit(), r.out());
            try (RawClient c = new RawClient(address).greet(3)) {
                for (int option : new int[] {3, 7, 8, 9, 42}) { // LIST, GO, STRUCTURED_REPLY, LIST_META, unknown
                    c.option(option, option == 7 ? new byte[6] : new byte[0]);
                    RawClient.OptionReply reply = c.optionReply();
                    assertEquals(0x80000005, reply.type(), "option " + option); // ERR_TLS_REQD
                    assertEquals(String.format("Option 0x%x not permitted before TLS", option), reply.text());
                }
                c.option(5, new byte[0]); // STARTTLS: acknowledged, then the TLS handshake
                assertEquals(1, c.optionReply().type());
                c.out.write("not a TLS ClientHello".getBytes(StandardCharsets.US_ASCII));
                c.out.flush();
                assertTrue(c.closedByServer());
            }
            try (RawClient c = new RawClient(address).greet(3)) { // EXPORT_NAME cannot be refused: dropped
                c.option(1, new byte[0]);
                assertTrue(c.closedByServer());
            }
            try (RawClient c = new RawClient(address).greet(3)) { // STARTTLS with a payload: ERR_INVALID, dropped
                c.option(5, new byte[4]);
                assertEquals(0x80000003, c.optionReply().type());
                assertTrue(c.closedByServer());
            }
            // and the server serves a TLS client after all that
            ok(dir, "nbdinfo", "nbds://127.0.0.1:" + address.getPort() + "?tls-certificates=" + pki);
        }
        assertTrue(log.contains("Option 0x1 not permitted before TLS"), log.toString());
    }

    /**
     * Over TCP: libnbd (1.14) checks the server's certificate against the host name of the URI, so not over a Unix
     * socket, where it has none.
     */
    @Test
    void aClientTrustingAnotherCaFailsAndTheServerGoesOn() throws Exception {
        List<String> log = new CopyOnWriteArrayList<>();
        try (DiskImage image = Images.open(dir.resolve("disk.qcow2"));
             NbdServer server = NbdServer.builder().export(NbdExport.readOnly("", image))
                     .tcp(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0))
                     .tls(TlsCredentials.fromDirectory(pki)).log(log::add).start()) {
            String base = "nbds://127.0.0.1:" + ((InetSocketAddress) server.address()).getPort() + "/?tls-certificates=";
            Processes.Result r = Processes.run(dir, "nbdinfo", base + otherCa);
            assertNotEquals(0, r.exit(), r.out());
            assertTrue(r.err().contains("certificate"), r.err());
            // one client at a time (-e 1): the failed one left its place
            assertTrue(ok(dir, "nbdinfo", base + pki).contains("export-size: 8388608"));
        }
        assertTrue(log.stream().anyMatch(l -> l.startsWith("TLS handshake failed")), log.toString());
    }

    @Test
    void verifyPeerWantsAClientCertificateTheCaSigned() throws Exception {
        List<String> log = new CopyOnWriteArrayList<>();
        try (DiskImage image = Images.open(dir.resolve("disk.qcow2"));
             NbdServer server = serve(image, TlsCredentials.fromDirectory(pki, true), log)) {
            Path socket = NbdTools.socket(server);
            assertNotEquals(0, Processes.run(dir, "nbdinfo", tlsUri(socket, pki)).exit()); // no client-cert.pem
            assertTrue(ok(dir, "nbdinfo", tlsUri(socket, withClientCert)).contains("with TLS"));
        }
    }

    @Test
    void keysInEveryPemEncodingLoad() throws Exception {
        Path d = Files.createDirectory(dir.resolve("keys"));
        Files.copy(pki.resolve("ca-cert.pem"), d.resolve("ca-cert.pem"));
        Files.copy(pki.resolve("ca-key.pem"), d.resolve("ca-key.pem"));
        signed(d, "server", "/CN=localhost", "subjectAltName=DNS:localhost\n", "rsa:2048");
        ok(d, "openssl", "rsa", "-in", "server-key.pem", "-traditional", "-out", "pkcs1.pem");
        assertTrue(Files.readString(d.resolve("pkcs1.pem")).startsWith("-----BEGIN RSA PRIVATE KEY-----"));
        Files.move(d.resolve("pkcs1.pem"), d.resolve("server-key.pem"), StandardCopyOption.REPLACE_EXISTING);
        TlsCredentials.fromDirectory(d);

        signed(d, "server", "/CN=localhost", "subjectAltName=DNS:localhost\n", "ec:" + ecParams(d)); // PKCS#8 EC
        assertTrue(Files.readString(d.resolve("server-key.pem")).startsWith("-----BEGIN PRIVATE KEY-----"));
        TlsCredentials ec = TlsCredentials.fromDirectory(d);
        ok(d, "openssl", "ec", "-in", "server-key.pem", "-out", "sec1.pem");
        assertTrue(Files.readString(d.resolve("sec1.pem")).startsWith("-----BEGIN EC PRIVATE KEY-----"));
        Files.copy(d.resolve("server-key.pem"), d.resolve("pkcs8.pem"));
        Files.move(d.resolve("sec1.pem"), d.resolve("server-key.pem"), StandardCopyOption.REPLACE_EXISTING);
        TlsCredentials sec1 = TlsCredentials.fromDirectory(d);
        List<String> log = new CopyOnWriteArrayList<>();
        try (DiskImage image = Images.open(dir.resolve("disk.qcow2"));
             NbdServer server = serve(image, sec1, log)) { // an ECDSA handshake with gnutls
            assertTrue(ok(dir, "nbdinfo", tlsUri(NbdTools.socket(server), pki)).contains("with TLS"));
        }
        assertTrue(ec.context() != null);

        // a key of another certificate, and a missing file: refused at load, in QEMU's words
        Files.copy(pki.resolve("server-key.pem"), d.resolve("server-key.pem"), StandardCopyOption.REPLACE_EXISTING);
        IOException e = assertThrows(IOException.class, () -> TlsCredentials.fromDirectory(d));
        assertTrue(e.getMessage().startsWith("Cannot load certificate '" + d.resolve("server-cert.pem") + "' & key '"),
                e.getMessage());
        Files.delete(d.resolve("server-key.pem"));
        e = assertThrows(IOException.class, () -> TlsCredentials.fromDirectory(d));
        assertEquals("Unable to access credentials " + d.resolve("server-key.pem") + ": No such file or directory",
                e.getMessage());
        // a server certificate another CA signed
        e = assertThrows(IOException.class, () -> TlsCredentials.fromDirectory(withOtherCa()));
        assertTrue(e.getMessage().startsWith("Unable to verify server certificate "), e.getMessage());
    }

    private static String ecParams(Path d) {
        ok(d, "openssl", "ecparam", "-name", "prime256v1", "-out", "ec.param");
        return "ec.param";
    }

    private static Path withOtherCa() throws IOException {
        Path d = Files.createDirectories(dir.resolve("mixed"));
        Files.copy(otherCa.resolve("ca-cert.pem"), d.resolve("ca-cert.pem"), StandardCopyOption.REPLACE_EXISTING);
        Files.copy(pki.resolve("server-cert.pem"), d.resolve("server-cert.pem"), StandardCopyOption.REPLACE_EXISTING);
        Files.copy(pki.resolve("server-key.pem"), d.resolve("server-key.pem"), StandardCopyOption.REPLACE_EXISTING);
        return d;
    }

    @Test
    void pemBlocksAreFoundAmongOtherText() throws Exception {
        Path f = dir.resolve("bundle.pem");
        String cert = Files.readString(pki.resolve("server-cert.pem"));
        String ca = Files.readString(pki.resolve("ca-cert.pem"));
        Files.writeString(f, "Bag Attributes\n  subject=CN=localhost\n" + cert + "\nissuer text\n" + ca);
        assertEquals(2, org.qcow4j.nbd.server.Pem.certificates(f).size());
        Files.writeString(f, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
        assertThrows(IOException.class, () -> org.qcow4j.nbd.server.Pem.certificates(f));
    }
}
