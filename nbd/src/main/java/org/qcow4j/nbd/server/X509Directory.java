package org.qcow4j.nbd.server;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.CertPathValidator;
import java.security.cert.CertPathValidatorException;
import java.security.cert.CertificateExpiredException;
import java.security.cert.CertificateFactory;
import java.security.cert.CertificateNotYetValidException;
import java.security.cert.PKIXParameters;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * QEMU's x509 credentials directory for a server endpoint ({@code --object tls-creds-x509,dir=DIR,endpoint=server},
 * crypto/tlscredsx509.c) as a JDK {@link SSLContext}: {@code ca-cert.pem} (the CA certificates: the ones that sign
 * the server's certificate, and the client certificates when peers are verified), {@code server-cert.pem} (the
 * server's certificate, then any intermediates), {@code server-key.pem} (its unencrypted private key). Checked at
 * load as QEMU's {@code sanity-check} does, with its messages: each file present, no certificate expired or not yet
 * active, the server certificate verified against the CA certificates, the key matching the certificate.
 * {@code dh-params.pem} is not needed (the JDK negotiates ECDHE or finite-field groups itself); {@code ca-crl.pem}
 * is refused rather than ignored.
 */
public final class X509Directory {
    private X509Directory() {
    }

    /**
     * Loads {@code dir}. With {@code verifyPeer} a client must present a certificate signed by {@code ca-cert.pem}
     * (QEMU's {@code verify-peer=on}, its default); without, any client may connect (it still verifies the server).
     */
    public static SSLContext load(Path dir, boolean verifyPeer) throws IOException {
        Path caFile = require(dir, "ca-cert.pem");
        Path crl = dir.resolve("ca-crl.pem");
        if (Files.exists(crl)) {
            throw new IOException("Cannot load CRL '" + crl + "': certificate revocation lists are not supported");
        }
        Path certFile = require(dir, "server-cert.pem");
        Path keyFile = require(dir, "server-key.pem");
        List<X509Certificate> cas = Pem.certificates(caFile);
        List<X509Certificate> chain = Pem.certificates(certFile);
        for (X509Certificate ca : cas) {
            checkTimes(ca, "The CA certificate", caFile);
        }
        checkTimes(chain.get(0), "The server certificate", certFile);
        verify(chain, cas, certFile, caFile);
        PrivateKey key;
        try {
            key = Pem.privateKey(keyFile);
            checkPair(key, chain.get(0).getPublicKey());
        } catch (IOException | GeneralSecurityException e) {
            throw new IOException("Cannot load certificate '" + certFile + "' & key '" + keyFile + "': "
                    + e.getMessage(), e);
        }
        try {
            char[] password = "qcow4j".toCharArray(); // of the in-memory key store only
            KeyStore keys = KeyStore.getInstance("PKCS12");
            keys.load(null, null);
            keys.setKeyEntry("server", key, password, chain.toArray(X509Certificate[]::new));
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(keys, password);
            TrustManagerFactory tmf = null;
            if (verifyPeer) {
                KeyStore trusted = KeyStore.getInstance("PKCS12");
                trusted.load(null, null);
                for (int i = 0; i < cas.size(); i++) {
                    trusted.setCertificateEntry("ca" + i, cas.get(i));
                }
                tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
                tmf.init(trusted);
            }
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(kmf.getKeyManagers(), tmf == null ? null : tmf.getTrustManagers(), null);
            return context;
        } catch (GeneralSecurityException e) {
            throw new IOException("Cannot allocate credentials: '" + e.getMessage() + "'", e);
        }
    }

    private static Path require(Path dir, String name) throws IOException {
        Path p = dir.resolve(name);
        if (!Files.exists(p)) {
            throw new IOException("Unable to access credentials " + p + ": No such file or directory");
        }
        return p;
    }

    private static void checkTimes(X509Certificate cert, String what, Path file) throws IOException {
        try {
            cert.checkValidity();
        } catch (CertificateExpiredException e) {
            throw new IOException(what + " " + file + " has expired", e);
        } catch (CertificateNotYetValidException e) {
            throw new IOException(what + " " + file + " is not yet active", e);
        }
    }

    /** The server's chain must lead to one of the CA certificates (gnutls_x509_crt_list_verify in QEMU). */
    private static void verify(List<X509Certificate> chain, List<X509Certificate> cas, Path certFile, Path caFile)
            throws IOException {
        try {
            Set<TrustAnchor> anchors = new HashSet<>();
            for (X509Certificate ca : cas) {
                anchors.add(new TrustAnchor(ca, null));
            }
            // a chain file may end with the CA itself: the path stops before its anchor
            List<X509Certificate> path = chain.stream().filter(c -> !cas.contains(c)).toList();
            PKIXParameters params = new PKIXParameters(anchors);
            params.setRevocationEnabled(false);
            CertPathValidator.getInstance("PKIX")
                    .validate(CertificateFactory.getInstance("X.509").generateCertPath(path), params);
        } catch (CertPathValidatorException e) {
            throw new IOException("Unable to verify server certificate " + certFile + " against CA certificate "
                    + caFile + ": " + e.getMessage(), e);
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            throw new IOException("Unable to verify server certificate " + certFile + ": " + e.getMessage(), e);
        }
    }

    /** Signs a few bytes with the key and checks them with the certificate's public key. */
    private static void checkPair(PrivateKey key, PublicKey pub) throws IOException, GeneralSecurityException {
        if (!key.getAlgorithm().equals(pub.getAlgorithm())) {
            throw new IOException("the key is " + key.getAlgorithm() + ", the certificate's " + pub.getAlgorithm());
        }
        String algorithm = switch (key.getAlgorithm()) {
            case "RSA" -> "SHA256withRSA";
            case "EC" -> "SHA256withECDSA";
            case "EdDSA", "Ed25519", "Ed448" -> "EdDSA";
            default -> null;
        };
        if (algorithm == null) {
            return; // RSASSA-PSS and the like: the handshake will tell
        }
        byte[] probe = "qcow4j key check".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        Signature s = Signature.getInstance(algorithm);
        s.initSign(key);
        s.update(probe);
        byte[] sig = s.sign();
        s.initVerify(pub);
        s.update(probe);
        if (!s.verify(sig)) {
            throw new IOException("The key and the certificate do not match");
        }
    }
}
