package org.qcow4j.nbd;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Objects;
import javax.net.ssl.SSLContext;
import org.qcow4j.nbd.server.X509Directory;

/**
 * What a server proves itself with when it offers TLS (NBD's STARTTLS): then clients must start TLS before any other
 * option (the others are answered ERR_TLS_REQD), as qemu-nbd with {@code --tls-creds}.
 *
 * <pre>{@code
 * NbdServer.builder().export(...).tls(TlsCredentials.fromDirectory(Path.of("/etc/pki/qemu")))   // nbds:// clients
 * }</pre>
 */
public final class TlsCredentials {
    private final SSLContext context;
    private final boolean verifyPeer;

    private TlsCredentials(SSLContext context, boolean verifyPeer) {
        this.context = Objects.requireNonNull(context);
        this.verifyPeer = verifyPeer;
    }

    /**
     * QEMU's x509 directory ({@code ca-cert.pem}, {@code server-cert.pem}, {@code server-key.pem}; keys PKCS#8,
     * PKCS#1 RSA or SEC1 EC, unencrypted), checked at once as QEMU checks it. Clients need no certificate of their
     * own; see {@link #fromDirectory(Path, boolean)}.
     *
     * @throws IOException a file missing or unreadable, a certificate expired or not signed by the CA, a key that
     *                     does not match, in QEMU's words
     */
    public static TlsCredentials fromDirectory(Path dir) throws IOException {
        return fromDirectory(dir, false);
    }

    /**
     * As {@link #fromDirectory(Path)}; with {@code verifyPeer} each client must present a certificate that
     * {@code ca-cert.pem} signed (QEMU's {@code verify-peer=on}, its default for {@code tls-creds-x509}).
     */
    public static TlsCredentials fromDirectory(Path dir, boolean verifyPeer) throws IOException {
        return new TlsCredentials(X509Directory.load(dir, verifyPeer), verifyPeer);
    }

    /**
     * An application's own context (its key managers give the server's certificate; with {@code verifyPeer}, its
     * trust managers judge the clients' certificates).
     */
    public static TlsCredentials of(SSLContext context, boolean verifyPeer) {
        return new TlsCredentials(context, verifyPeer);
    }

    /** The context server-side engines are made from. */
    public SSLContext context() {
        return context;
    }

    /** Whether clients must present a certificate. */
    public boolean verifyPeer() {
        return verifyPeer;
    }
}
