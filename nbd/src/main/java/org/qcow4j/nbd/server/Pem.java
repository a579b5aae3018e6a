package org.qcow4j.nbd.server;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

/**
 * PEM files as QEMU's x509 credentials directory holds them, read with the JDK alone: certificates ({@code BEGIN
 * CERTIFICATE}, several per file) and unencrypted private keys, PKCS#8 ({@code BEGIN PRIVATE KEY}: RSA, EC, EdDSA,
 * RSASSA-PSS), PKCS#1 ({@code BEGIN RSA PRIVATE KEY}) and SEC1 ({@code BEGIN EC PRIVATE KEY}). The last two are
 * wrapped into PKCS#8 (RFC 5208 {@code PrivateKeyInfo}), the only encoding the JDK's key factories take.
 */
public final class Pem {
    /** DER tags. */
    private static final int INTEGER = 0x02;
    private static final int OCTET_STRING = 0x04;
    private static final int NULL = 0x05;
    private static final int OID = 0x06;
    private static final int SEQUENCE = 0x30;
    /** SEC1's {@code parameters [0] ECParameters}. */
    private static final int CONTEXT_0 = 0xa0;

    /** Algorithm OIDs, DER-encoded content bytes. */
    private static final byte[] RSA_ENCRYPTION = {0x2a, (byte) 0x86, 0x48, (byte) 0x86, (byte) 0xf7, 0x0d, 1, 1, 1};
    private static final byte[] RSASSA_PSS = {0x2a, (byte) 0x86, 0x48, (byte) 0x86, (byte) 0xf7, 0x0d, 1, 1, 10};
    private static final byte[] EC_PUBLIC_KEY = {0x2a, (byte) 0x86, 0x48, (byte) 0xce, 0x3d, 2, 1};
    private static final byte[] ED25519 = {0x2b, 0x65, 0x70};
    private static final byte[] ED448 = {0x2b, 0x65, 0x71};

    private Pem() {
    }

    /** One PEM block: its label ("CERTIFICATE") and decoded bytes. */
    record Block(String label, byte[] der) {
    }

    /** Every PEM block of {@code text}, in order; text between blocks is ignored, as OpenSSL does. */
    static List<Block> blocks(String text) throws IOException {
        List<Block> blocks = new ArrayList<>();
        int pos = 0;
        while (true) {
            int begin = text.indexOf("-----BEGIN ", pos);
            if (begin < 0) {
                return blocks;
            }
            int labelEnd = text.indexOf("-----", begin + 11);
            if (labelEnd < 0) {
                throw new IOException("unterminated PEM header");
            }
            String label = text.substring(begin + 11, labelEnd);
            String footer = "-----END " + label + "-----";
            int end = text.indexOf(footer, labelEnd + 5);
            if (end < 0) {
                throw new IOException("no '" + footer + "'");
            }
            String body = text.substring(labelEnd + 5, end);
            if (body.contains(":")) { // RFC 1421 headers: "Proc-Type: 4,ENCRYPTED" (OpenSSL's traditional encryption)
                throw new IOException("encrypted PEM " + label + " is not supported");
            }
            try {
                blocks.add(new Block(label, Base64.getMimeDecoder().decode(body)));
            } catch (IllegalArgumentException e) {
                throw new IOException("bad base64 in PEM " + label + ": " + e.getMessage(), e);
            }
            pos = end + footer.length();
        }
    }

    /** The certificates of a PEM file, in file order (a chain: the leaf first). */
    public static List<X509Certificate> certificates(Path file) throws IOException {
        List<X509Certificate> certs = new ArrayList<>();
        try {
            CertificateFactory f = CertificateFactory.getInstance("X.509");
            for (Block b : blocks(Files.readString(file, StandardCharsets.ISO_8859_1))) {
                if (b.label.equals("CERTIFICATE") || b.label.equals("X509 CERTIFICATE")) {
                    certs.add((X509Certificate) f.generateCertificate(new ByteArrayInputStream(b.der)));
                }
            }
        } catch (CertificateException e) {
            throw new IOException(file + ": " + e.getMessage(), e);
        }
        if (certs.isEmpty()) {
            throw new IOException(file + ": no certificate");
        }
        return certs;
    }

    /** The (first) private key of a PEM file. */
    public static PrivateKey privateKey(Path file) throws IOException {
        for (Block b : blocks(Files.readString(file, StandardCharsets.ISO_8859_1))) {
            try {
                switch (b.label) {
                    case "PRIVATE KEY" -> {
                        return pkcs8(b.der);
                    }
                    case "RSA PRIVATE KEY" -> {
                        return pkcs8(privateKeyInfo(sequence(tlv(OID, RSA_ENCRYPTION), tlv(NULL, new byte[0])), b.der));
                    }
                    case "EC PRIVATE KEY" -> {
                        byte[] curve = sec1Curve(b.der);
                        return pkcs8(privateKeyInfo(sequence(tlv(OID, EC_PUBLIC_KEY), curve), b.der));
                    }
                    case "ENCRYPTED PRIVATE KEY" -> throw new IOException("encrypted private keys are not supported");
                    default -> {
                        // EC PARAMETERS and the like: next block
                    }
                }
            } catch (GeneralSecurityException | IndexOutOfBoundsException e) {
                throw new IOException(file + ": bad " + b.label + ": " + e.getMessage(), e);
            } catch (IOException e) {
                throw new IOException(file + ": " + e.getMessage(), e);
            }
        }
        throw new IOException(file + ": no private key");
    }

    /** A PKCS#8 {@code PrivateKeyInfo}, its algorithm read from its {@code AlgorithmIdentifier}. */
    private static PrivateKey pkcs8(byte[] der) throws GeneralSecurityException, IOException {
        Der info = new Der(der).enter(SEQUENCE);
        info.skip(INTEGER);
        byte[] oid = info.enter(SEQUENCE).value(OID);
        String algorithm;
        if (java.util.Arrays.equals(oid, RSA_ENCRYPTION)) {
            algorithm = "RSA";
        } else if (java.util.Arrays.equals(oid, RSASSA_PSS)) {
            algorithm = "RSASSA-PSS";
        } else if (java.util.Arrays.equals(oid, EC_PUBLIC_KEY)) {
            algorithm = "EC";
        } else if (java.util.Arrays.equals(oid, ED25519) || java.util.Arrays.equals(oid, ED448)) {
            algorithm = "EdDSA";
        } else {
            throw new IOException("unsupported private key algorithm (OID bytes " + hex(oid) + ")");
        }
        return KeyFactory.getInstance(algorithm).generatePrivate(new PKCS8EncodedKeySpec(der));
    }

    /** The curve OID (a whole TLV) of a SEC1 {@code ECPrivateKey}: {@code SEQUENCE {1, key, [0] curve, [1] pub}}. */
    private static byte[] sec1Curve(byte[] der) throws IOException {
        Der key = new Der(der).enter(SEQUENCE);
        key.skip(INTEGER);
        key.skip(OCTET_STRING);
        if (!key.more() || key.peek() != CONTEXT_0) {
            throw new IOException("EC PRIVATE KEY without its curve");
        }
        Der params = key.enter(CONTEXT_0);
        return tlv(OID, params.value(OID));
    }

    /** RFC 5208: {@code SEQUENCE {INTEGER 0, algorithm, OCTET STRING key}}. */
    private static byte[] privateKeyInfo(byte[] algorithm, byte[] key) {
        return sequence(tlv(INTEGER, new byte[] {0}), algorithm, tlv(OCTET_STRING, key));
    }

    private static byte[] sequence(byte[]... parts) {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            b.writeBytes(p);
        }
        return tlv(SEQUENCE, b.toByteArray());
    }

    private static byte[] tlv(int tag, byte[] value) {
        ByteArrayOutputStream b = new ByteArrayOutputStream(value.length + 6);
        b.write(tag);
        int n = value.length;
        if (n < 0x80) {
            b.write(n);
        } else {
            int bytes = n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x1000000 ? 3 : 4;
            b.write(0x80 | bytes);
            for (int i = bytes - 1; i >= 0; i--) {
                b.write(n >>> (8 * i));
            }
        }
        b.writeBytes(value);
        return b.toByteArray();
    }

    private static String hex(byte[] b) {
        StringBuilder s = new StringBuilder();
        for (byte x : b) {
            s.append(String.format("%02x", x));
        }
        return s.toString();
    }

    /** A reader over the TLVs of one DER constructed value (definite lengths only, as DER requires). */
    private static final class Der {
        private final byte[] b;
        private int pos;
        private final int end;

        Der(byte[] b) {
            this(b, 0, b.length);
        }

        private Der(byte[] b, int pos, int end) {
            this.b = b;
            this.pos = pos;
            this.end = end;
        }

        boolean more() {
            return pos < end;
        }

        int peek() {
            return b[pos] & 0xff;
        }

        /** The content bounds of the next TLV, which must carry {@code tag}; moves past it. */
        private int[] next(int tag) throws IOException {
            if (pos + 2 > end || (b[pos] & 0xff) != tag) {
                throw new IOException(String.format("DER: expected tag 0x%02x at %d", tag, pos));
            }
            int p = pos + 1;
            int len = b[p++] & 0xff;
            if (len >= 0x80) {
                int bytes = len & 0x7f;
                if (bytes == 0 || bytes > 4 || p + bytes > end) {
                    throw new IOException("DER: bad length at " + pos);
                }
                len = 0;
                for (int i = 0; i < bytes; i++) {
                    len = (len << 8) | (b[p++] & 0xff);
                }
            }
            if (len < 0 || len > end - p) {
                throw new IOException("DER: length past the end at " + pos);
            }
            pos = p + len;
            return new int[] {p, p + len};
        }

        Der enter(int tag) throws IOException {
            int[] r = next(tag);
            return new Der(b, r[0], r[1]);
        }

        byte[] value(int tag) throws IOException {
            int[] r = next(tag);
            return java.util.Arrays.copyOfRange(b, r[0], r[1]);
        }

        void skip(int tag) throws IOException {
            next(tag);
        }
    }
}
