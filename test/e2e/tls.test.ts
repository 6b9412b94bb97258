/**
 * TLS on the proxy port (SPEC "HTTP/2, gRPC and TLS"), with real clients only: curl over
 * HTTP/1.1 and HTTP/2 (ALPN h2), @grpc/grpc-js over TLS (with and without a client
 * certificate), Node's own TLS client where a protocol version must be forced. Tokens come
 * from the real oidc-provider IdP; certificates are made by openssl at test time.
 *
 * - The certificate is rotated the way a Kubernetes Secret volume (and cert-manager) does
 *   it, by swapping the `..data` symlink: open HTTP/1.1 keep-alive connections and HTTP/2
 *   sessions keep working, new connections see the new certificate, a bad new pair is
 *   logged and the old one keeps serving, and the TLS floor survives the rotation.
 * - `clientCaFile`: the certificate verified in the handshake binds tokens by RFC 8705
 *   (`cnf["x5t#S256"]`); one the CA did not verify never does; a client-certificate header
 *   is ignored there (and not forwarded), even from a trusted proxy address.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { IDP_RESOURCES, startIdp, type TestIdp } from '../helpers/idp.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { generateCa, xfcc, type TestIssued } from '../helpers/cert.js';
import { bearerMetadata, echoClient, startEchoServer, unary, type EchoServer } from '../helpers/grpc-echo.js';

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;
// A JDK: `java File.java` compiles the client first, which a JRE alone cannot (.ci/run installs one).
const JAVA = spawnSync('java', ['-version'], { stdio: 'ignore' }).status === 0 && spawnSync('javac', ['-version'], { stdio: 'ignore' }).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'tokengate-tls-e2e-'));
const ca = generateCa();
const server1 = ca.issue('127.0.0.1');
const clientA = ca.issue('client-a');
const clientB = ca.issue('client-b');
// Issued by another CA: the client presents it, the gateway's CA does not verify it.
const rogue = generateCa('rogue-ca').issue('rogue');

/** Writes `text` to `name` under the temp dir; returns the path. */
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text, { mode: 0o600 });
  return p;
}
const caFile = file('ca.crt', ca.cert);
const pemOf = (c: TestIssued, name: string) => ({ cert: file(`${name}.crt`, c.pem), key: file(`${name}.key`, c.key) });
const A = pemOf(clientA, 'client-a');
const B = pemOf(clientB, 'client-b');
const R = pemOf(rogue, 'rogue');

/**
 * A directory laid out like a Kubernetes Secret volume: `tls.crt -> ..data/tls.crt`,
 * `..data -> ..<timestamp>`; {@link rotate} writes a new timestamped directory, swaps
 * `..data` atomically (rename of a temp symlink) and removes the old one, as the kubelet
 * (and so cert-manager) does.
 */
function secretVolume(name: string, first: { 'tls.crt': string; 'tls.key': string }) {
  const root = join(dir, name);
  mkdirSync(root);
  let n = 0;
  const rotate = (files: Record<string, string>) => {
    const ts = `..2026_01_01_00_00_0${n++}`;
    mkdirSync(join(root, ts));
    for (const [k, v] of Object.entries(files)) writeFileSync(join(root, ts, k), v, { mode: 0o600 });
    const old = readdirSync(root).filter((e) => e.startsWith('..2026') && e !== ts);
    symlinkSync(ts, join(root, '..data_tmp'));
    renameSync(join(root, '..data_tmp'), join(root, '..data'));
    for (const o of old) rmSync(join(root, o), { recursive: true, force: true });
  };
  rotate(first);
  for (const k of Object.keys(first)) symlinkSync(`..data/${k}`, join(root, k));
  return { certFile: join(root, 'tls.crt'), keyFile: join(root, 'tls.key'), rotate };
}

interface CurlAnswer { exit: number; status: number; version: string; body: string; stderr: string }

/** curl against the gateway, trusting the test CA; `-w` appends status and HTTP version. */
function curl(args: string[]): Promise<CurlAnswer> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', '--cacert', caFile, '-w', '\n%{http_code} %{http_version}', ...args], { timeout: 15_000 }, (err, stdout, stderr) => {
      const nl = stdout.lastIndexOf('\n');
      const [status, version] = stdout.slice(nl + 1).split(' ');
      resolve({ exit: err ? (typeof err.code === 'number' ? err.code : -1) : 0, status: Number(status), version, body: stdout.slice(0, nl), stderr });
    });
  });
}

/** gRPC over TLS to 127.0.0.1, the name checked against the certificate's `DNS:localhost` (an IP is no SNI name). */
const GRPC_TLS = { 'grpc.ssl_target_name_override': 'localhost' };

/** The fingerprint of the certificate a fresh TLS connection to `port` is served. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: ca.cert, ALPNProtocols: ['http/1.1'] }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const portOf = (g: TestGateway) => Number(new URL(g.url).port);
const errorOf = (a: CurlAnswer) => (JSON.parse(a.body) as { error?: string; error_description?: string });

let idp: TestIdp; let up: EchoUpstream; let echo: EchoServer;
let gw: TestGateway; let base: string;
let plain: string; let boundA: string; let boundRogue: string;

const routes = (upstream: string, grpcUpstream: string) => `
routes:
  - id: echo
    match: { pathPrefix: /tokengate.test.Echo/ }
    upstream: http://${grpcUpstream}
    upstreamProtocol: h2
    auth: { mode: jwt }
  - id: mtls
    match: { pathPrefix: /mtls }
    upstream: ${upstream}
    auth: { mode: jwt, binding: require-mtls }
  - id: api
    match: { pathPrefix: /api }
    upstream: ${upstream}
    auth: { mode: jwt }
    forward: { headers: { x-auth-subject: sub } }
`;
const issuerYaml = (i: TestIdp) => `
issuers:
  - id: idp
    issuer: ${i.issuer}
    jwksUri: ${i.jwksUri}
    audiences: [${IDP_RESOURCES.rs256}]
    clockToleranceSec: 5`;

before(async () => {
  [idp, up, echo] = await Promise.all([startIdp(), startUpstream(), startEchoServer()]);
  const s1 = pemOf(server1, 'server1');
  gw = await startGateway(`
server:
  http2: true
  clientCert: { header: x-forwarded-client-cert, trustedProxies: [127.0.0.1/32] }
  tls:
    certFile: ${s1.cert}
    keyFile: ${s1.key}
    clientCaFile: ${caFile}
    clientCertificate: request
${issuerYaml(idp)}
${routes(up.url, echo.address)}`);
  await gw.ready(15_000);
  base = `https://127.0.0.1:${portOf(gw)}`;
  [plain, boundA, boundRogue] = await Promise.all([
    idp.token({ resource: IDP_RESOURCES.rs256 }),
    idp.token({ resource: IDP_RESOURCES.rs256, clientCertPem: clientA.pem }),
    idp.token({ resource: IDP_RESOURCES.rs256, clientCertPem: rogue.pem }),
  ]);
});

after(async () => {
  await gw?.close();
  await Promise.all([up?.close(), echo?.close(), idp?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('TLS termination with real clients', () => {
  it('curl over HTTP/1.1 and over HTTP/2 (ALPN h2): a token from the IdP passes, the upstream hears X-Forwarded-Proto https', async () => {
    for (const version of ['--http1.1', '--http2']) {
      up.reset();
      const r = await curl([version, '-H', `authorization: Bearer ${plain}`, `${base}/api/x`]);
      assert.equal(r.exit, 0, r.stderr);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.version, version === '--http2' ? '2' : '1.1');
      assert.equal(up.requests[0].headers['x-forwarded-proto'], 'https');
      assert.equal(typeof up.requests[0].headers['x-auth-subject'], 'string');
      const none = await curl([version, `${base}/api/x`]);
      assert.equal(none.status, 401);
    }
  });

  it('an HTTP/1.1 request with an Upgrade the gateway does not take is served over TLS as the plain request it is', async () => {
    const r = await curl(['--http1.1', '-H', 'connection: upgrade', '-H', 'upgrade: foo/1', '-H', `authorization: Bearer ${plain}`, `${base}/api/up`]);
    assert.equal(r.exit, 0, r.stderr);
    assert.equal(r.status, 200, r.body);
  });

  it('grpc-js over TLS (createSsl with the CA) reaches the gRPC upstream through the gateway', async () => {
    const client = echoClient(`127.0.0.1:${portOf(gw)}`, grpc.credentials.createSsl(Buffer.from(ca.cert)), GRPC_TLS);
    try {
      const ok = await unary(client, { text: 'tls' }, bearerMetadata(plain));
      assert.equal(ok.err, null);
      assert.equal(ok.res?.text, 'echo:tls');
      const refused = await unary(client, { text: 'x' }, bearerMetadata());
      assert.equal(refused.err?.code, grpc.status.UNAUTHENTICATED);
      // A certificate-bound token over gRPC: the client certificate of the TLS handshake.
      const noCert = await unary(client, { text: 'x' }, bearerMetadata(boundA));
      assert.equal(noCert.err?.code, grpc.status.UNAUTHENTICATED);
    } finally {
      client.close();
    }
    const withCert = echoClient(`127.0.0.1:${portOf(gw)}`, grpc.credentials.createSsl(Buffer.from(ca.cert), Buffer.from(clientA.key), Buffer.from(clientA.pem)), GRPC_TLS);
    try {
      const ok = await unary(withCert, { text: 'bound' }, bearerMetadata(boundA));
      assert.equal(ok.err, null, ok.err?.details);
      assert.equal(ok.res?.text, 'echo:bound');
    } finally {
      withCert.close();
    }
  });

  // JDK 17 single-file launch compiles in memory: about 1.5 s here, 2-4 s on a loaded machine.
  it('the JDK HttpClient negotiates h2 by ALPN: 200 with the token, 401 without', { skip: JAVA ? false : 'java not installed' }, async () => {
    up.reset();
    const out = await new Promise<string>((resolve, reject) => {
      execFile('java', [join(FIXTURES, 'java', 'TlsAlpnClient.java'), caFile, `${base}/api/java`, plain], { timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
    });
    assert.deepEqual(out.trim().split('\n'), ['200 HTTP_2', '401 HTTP_2']);
    assert.equal(up.requests[0].headers['x-forwarded-proto'], 'https');
  });

  it('TLS 1.1 is refused by default (a client that speaks it reaches a TLS 1.1 server)', async () => {
    const old = { minVersion: 'TLSv1.1' as const, maxVersion: 'TLSv1.1' as const, ciphers: 'DEFAULT@SECLEVEL=0', ca: ca.cert };
    const handshake = (port: number) => new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, ...old }, () => { resolve(s.getProtocol() ?? '?'); s.end(); });
      s.on('error', (e) => resolve(`error: ${e.message}`));
    });
    // The control: this client does speak TLS 1.1 to a server that allows it.
    const allowing = tls.createServer({ cert: server1.pem, key: server1.key, minVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) => s.end());
    await new Promise<void>((r) => allowing.listen(0, '127.0.0.1', r));
    try {
      assert.equal(await handshake((allowing.address() as { port: number }).port), 'TLSv1.1');
    } finally {
      allowing.close();
    }
    assert.match(await handshake(portOf(gw)), /^error: .*(unsupported protocol|protocol version)/i);
  });
});

describe('mTLS from the handshake (clientCaFile, clientCertificate: request)', () => {
  const mtls = (args: string[], token = boundA) => curl(['-H', `authorization: Bearer ${token}`, ...args, `${base}/mtls/x`]);

  it('a bound token with the certificate it is bound to passes, over HTTP/1.1 and HTTP/2', async () => {
    for (const version of ['--http1.1', '--http2']) {
      const r = await mtls([version, '--cert', A.cert, '--key', A.key]);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.version, version === '--http2' ? '2' : '1.1');
    }
  });

  it('a bound token with another verified certificate is 401 (mismatch); without one, 401 (missing)', async () => {
    const other = await mtls(['--cert', B.cert, '--key', B.key]);
    assert.equal(other.status, 401);
    assert.equal(errorOf(other).error_description, 'The access token is bound to another client certificate');
    for (const version of ['--http1.1', '--http2']) {
      const none = await mtls([version]);
      assert.equal(none.status, 401);
      assert.equal(errorOf(none).error_description, 'The access token is bound to a client certificate that was not presented');
    }
  });

  it('no certificate under `request`: the client connects, unbound, and a require-mtls route refuses it', async () => {
    const r = await mtls([], plain);
    assert.equal(r.exit, 0, r.stderr);
    assert.equal(r.status, 401);
    assert.equal(errorOf(r).error_description, 'This resource requires a certificate-bound access token');
    const open = await curl(['-H', `authorization: Bearer ${plain}`, `${base}/api/x`]);
    assert.equal(open.status, 200, 'an unbound token passes where binding is allowed');
  });

  it('a certificate the CA did not verify connects under `request` but never binds (fail closed)', async () => {
    const r = await mtls(['--cert', R.cert, '--key', R.key], boundRogue);
    assert.equal(r.exit, 0, r.stderr);
    assert.equal(r.status, 401);
    assert.equal(errorOf(r).error_description, 'The access token is bound to a client certificate that was not presented');
  });

  it('a client-certificate header is ignored on this listener, even from a trusted proxy address, and not forwarded', async () => {
    const forged = await mtls(['-H', `x-forwarded-client-cert: ${xfcc(clientA)}`]);
    assert.equal(forged.status, 401, 'the header names the bound certificate: it is not believed');
    assert.equal(errorOf(forged).error_description, 'The access token is bound to a client certificate that was not presented');
    up.reset();
    const passed = await mtls(['--cert', A.cert, '--key', A.key, '-H', `x-forwarded-client-cert: Hash=${clientB.hashHex}`]);
    assert.equal(passed.status, 200, 'the handshake certificate decides, not the header');
    assert.equal(up.requests[0].headers['x-forwarded-client-cert'], undefined, 'the header is not forwarded');
  });
});

describe('clientCertificate: require', () => {
  let strict: TestGateway;
  before(async () => {
    const s1 = pemOf(server1, 'server1');
    strict = await startGateway(`
server:
  tls: { certFile: ${s1.cert}, keyFile: ${s1.key}, clientCaFile: ${caFile}, clientCertificate: require }
${issuerYaml(idp)}
${routes(up.url, echo.address)}`);
    await strict.ready(15_000);
  });
  after(() => strict?.close());

  it('the handshake fails without a certificate, and with one the CA does not verify; a verified one binds', async () => {
    const url = `https://127.0.0.1:${portOf(strict)}/mtls/x`;
    const none = await curl(['-H', `authorization: Bearer ${boundA}`, url]);
    assert.notEqual(none.exit, 0, 'no answer without a certificate');
    assert.equal(none.status, 0);
    const unverified = await curl(['--cert', R.cert, '--key', R.key, '-H', `authorization: Bearer ${boundRogue}`, url]);
    assert.notEqual(unverified.exit, 0);
    const ok = await curl(['--cert', A.cert, '--key', A.key, '-H', `authorization: Bearer ${boundA}`, url]);
    assert.equal(ok.status, 200, ok.body);
  });
});

describe('certificate rotation by symlink swap (Kubernetes Secret volume)', () => {
  const first = ca.issue('127.0.0.1');
  const second = ca.issue('127.0.0.1');
  const third = ca.issue('127.0.0.1');
  const logs: string[] = [];
  let rot: TestGateway; let vol: ReturnType<typeof secretVolume>; let port: number;

  before(async () => {
    vol = secretVolume('secret', { 'tls.crt': first.pem, 'tls.key': first.key });
    rot = await startGateway(`
server:
  http2: true
  tls: { certFile: ${vol.certFile}, keyFile: ${vol.keyFile}, minVersion: TLSv1.3 }
routes:
  - { id: open, match: { pathPrefix: /open }, upstream: "${up.url}", auth: { mode: none } }
`, { logs });
    port = portOf(rot);
  });
  after(() => rot?.close());

  it('open HTTP/1.1 and HTTP/2 connections survive; new ones get the new certificate; a bad pair is logged and the old one serves', async () => {
    assert.equal(await servedFingerprint(port), first.fingerprint256);
    // An HTTP/1.1 keep-alive connection and an HTTP/2 session, both opened on the first certificate.
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: ca.cert });
    const get = () => new Promise<{ status: number; reused: boolean; fp: string }>((resolve, reject) => {
      const req = https.get(`https://127.0.0.1:${port}/open/h1`, { agent }, (res) => {
        const fp = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, reused: req.reusedSocket, fp }));
      });
      req.on('error', reject);
    });
    const session = http2.connect(`https://127.0.0.1:${port}`, { ca: ca.cert });
    const h2get = () => new Promise<number>((resolve, reject) => {
      const s = session.request({ ':path': '/open/h2' });
      s.on('response', (h) => { s.resume(); s.on('end', () => resolve(Number(h[':status']))); });
      s.on('error', reject);
      s.end();
    });
    try {
      assert.deepEqual(await get(), { status: 200, reused: false, fp: first.fingerprint256 });
      assert.equal(await h2get(), 200);

      vol.rotate({ 'tls.crt': second.pem, 'tls.key': second.key });
      await until('the new certificate on new connections', async () => (await servedFingerprint(port)) === second.fingerprint256);
      assert.deepEqual(await get(), { status: 200, reused: true, fp: first.fingerprint256 }, 'the keep-alive connection was kept');
      assert.equal(await h2get(), 200, 'the HTTP/2 session was kept');
      assert.equal((session.socket as tls.TLSSocket).getPeerCertificate().fingerprint256, first.fingerprint256);
      const h2 = await curl(['--http2', `https://127.0.0.1:${port}/open/x`]);
      assert.deepEqual([h2.status, h2.version], [200, '2'], 'ALPN h2 on the new certificate');
      // The floor survives the rotation (Node's setSecureContext resets what it is not given).
      const tls12 = await curl(['--tls-max', '1.2', `https://127.0.0.1:${port}/open/x`]);
      assert.notEqual(tls12.exit, 0, 'TLS 1.2 refused by minVersion TLSv1.3 after the rotation');

      // A pair that does not match: logged, counted; the second certificate keeps serving.
      vol.rotate({ 'tls.crt': third.pem, 'tls.key': first.key });
      await until('the failed reload logged', () => logs.some((l) => l.includes('TLS certificate reload failed')));
      assert.equal(await servedFingerprint(port), second.fingerprint256);
      assert.deepEqual(await get(), { status: 200, reused: true, fp: first.fingerprint256 });
      assert.equal(await h2get(), 200);
      const warn = JSON.parse(logs.find((l) => l.includes('TLS certificate reload failed'))!) as { level: string; tls: Record<string, string> };
      assert.equal(warn.level, 'warn');
      assert.deepEqual(warn.tls['certFile/keyFile'], `${vol.certFile}, ${vol.keyFile}`);
      assert.match(warn.tls.reason, /key values mismatch/);
      assert.ok(!logs.join('\n').includes(first.key.split('\n')[1]), 'no key material in the logs');
      const metrics = await rot.gw.metrics.registry.metrics();
      assert.match(metrics, /tokengate_tls_reloads_total\{result="success"\} 1\n/);
      assert.match(metrics, /tokengate_tls_reloads_total\{result="failure"\} 1\n/);

      // Fixed: the next good pair is taken.
      vol.rotate({ 'tls.crt': third.pem, 'tls.key': third.key });
      await until('the third certificate', async () => (await servedFingerprint(port)) === third.fingerprint256);
    } finally {
      session.close();
      agent.destroy();
    }
  });

  it('TLS 1.2 is refused under minVersion TLSv1.3 (and accepted where the floor is 1.2)', async () => {
    const refused = await curl(['--tls-max', '1.2', `https://127.0.0.1:${port}/open/x`]);
    assert.notEqual(refused.exit, 0);
    const accepted = await curl(['--tls-max', '1.2', '-H', `authorization: Bearer ${plain}`, `${base}/api/x`]);
    assert.equal(accepted.status, 200, accepted.stderr);
  });

  it('a pair that does not load fails the start, naming the files', async () => {
    const bad = pemOf(second, 'bad');
    writeFileSync(bad.key, first.key);
    await assert.rejects(startGateway(`
server:
  tls: { certFile: ${bad.cert}, keyFile: ${bad.key} }
routes:
  - { id: open, match: { pathPrefix: /open }, upstream: "${up.url}", auth: { mode: none } }
`), new RegExp(`^Error: server\\.tls\\.certFile/keyFile ${bad.cert}, ${bad.key}: do not load as a certificate chain, its key \\(.*key values mismatch\\)$`));
  });
});
