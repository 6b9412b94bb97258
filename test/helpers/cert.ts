/**
 * Certificates for tests — client certificates for mTLS-bound tokens, server certificates
 * for TLS upstreams and for the gateway's own TLS, a CA that signs both — generated at test time with the
 * `openssl` CLI (Node 20's crypto cannot create X.509 certificates) into a temp dir that
 * is removed at once: no .pem/.key file is ever committed.
 */
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A generated self-signed client certificate. */
export interface TestCert {
  pem: string;
  /** base64url SHA-256 of the DER: the `x5t#S256` of tokens bound to it (RFC 8705 §3.1). */
  x5t: string;
  /** Hex SHA-256 of the DER: Envoy XFCC's `Hash=` field. */
  hashHex: string;
}

/**
 * A P-256 certificate and its key (PEM) with subject CN=`cn`, plus `extra` openssl args
 * (about 20 ms): self-signed, or signed by `-CA`/`-CAkey` files given in `extra` by `withDir`.
 */
function selfSigned(cn: string, extra: string[] = [], withDir?: (dir: string) => string[]): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-cert-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', join(dir, 'key'), '-out', join(dir, 'cert'), '-days', '1', '-subj', `/CN=${cn}`, ...extra, ...(withDir ? withDir(dir) : []),
    ], { stdio: 'ignore', timeout: 10_000 });
    return { cert: readFileSync(join(dir, 'cert'), 'utf8'), key: readFileSync(join(dir, 'key'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Generates a P-256 self-signed client certificate with subject CN=`cn`. */
export function generateClientCert(cn = 'tokengate-test-client'): TestCert {
  const pem = selfSigned(cn).cert;
  const der = new X509Certificate(pem).raw;
  return {
    pem,
    x5t: createHash('sha256').update(der).digest('base64url'),
    hashHex: createHash('sha256').update(der).digest('hex'),
  };
}

/** An Envoy XFCC header value for `cert` (`Hash=` and a URL-encoded `Cert=`). */
export function xfcc(cert: TestCert, parts: { hash?: boolean; cert?: boolean } = { hash: true, cert: true }): string {
  const out = ['By=spiffe://cluster.local/ns/default/sa/gateway'];
  if (parts.hash) out.push(`Hash=${cert.hashHex}`);
  if (parts.cert) out.push(`Cert="${encodeURIComponent(cert.pem)}"`);
  out.push('Subject="CN=tokengate-test-client"');
  return out.join(';');
}

/** A generated self-signed server certificate and its key. */
export interface TestServerCert {
  cert: string;
  key: string;
}

/** Generates a P-256 self-signed server certificate for `ip` (subjectAltName IP). */
export function generateServerCert(ip = '127.0.0.1'): TestServerCert {
  return selfSigned(ip, ['-addext', `subjectAltName=IP:${ip}`]);
}

/** A certificate, its key, and its fingerprints, issued by a {@link TestCa}. */
export interface TestIssued extends TestCert {
  key: string;
  /** Node's `fingerprint256` form (colon-separated upper-case hex), as `getPeerCertificate()` reports it. */
  fingerprint256: string;
}

/** A test certificate authority: its certificate (PEM), and a way to issue leaf certificates. */
export interface TestCa {
  cert: string;
  /** Issues a leaf for `cn`, valid for server (SAN IP 127.0.0.1, DNS localhost) and client authentication. */
  issue(cn: string): TestIssued;
}

/** Generates a P-256 CA (CN=`cn`) whose leaves serve 127.0.0.1 and authenticate clients. */
export function generateCa(cn = 'tokengate-test-ca'): TestCa {
  const ca = selfSigned(cn);
  return {
    cert: ca.cert,
    issue(leafCn: string): TestIssued {
      const leaf = selfSigned(leafCn, [
        '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-addext', 'basicConstraints=critical,CA:FALSE',
        '-addext', 'extendedKeyUsage=serverAuth,clientAuth',
      ], (dir) => {
        writeFileSync(join(dir, 'ca.crt'), ca.cert);
        writeFileSync(join(dir, 'ca.key'), ca.key, { mode: 0o600 });
        return ['-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key')];
      });
      const x = new X509Certificate(leaf.cert);
      return {
        pem: leaf.cert,
        key: leaf.key,
        x5t: createHash('sha256').update(x.raw).digest('base64url'),
        hashHex: createHash('sha256').update(x.raw).digest('hex'),
        fingerprint256: x.fingerprint256,
      };
    },
  };
}
