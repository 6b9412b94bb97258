/**
 * RFC 9449 §11.1 across a reload, through the issuer's clock tolerance. A proof is
 * accepted while `iat >= now - proofMaxAgeSec - clockToleranceSec`, and its `jti` is
 * remembered for `proofMaxAgeSec + 2 × clockToleranceSec + 1 s`, with the tolerance in
 * force when it was seen. `keepReplayProtection` holds a longer `proofMaxAgeSec` until a
 * restart, but a reload that raises the issuer's `clockToleranceSec` widens the same
 * window: once the id stored under the old tolerance has expired, the captured token and
 * proof, replayed byte for byte, pass again. Fail closed: the window a proof was
 * remembered for must not grow by a reload — nor by two, the first removing the `iss` and
 * the second bringing it back.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { keepReplayProtection, reloadOnce } from '../../src/reload.js';
import { compileConfig } from '../../src/config/compile.js';
import { parseConfig } from '../../src/config/load.js';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { dpopClient, type DpopClient } from '../helpers/dpop.js';

let iss: MockIssuer; let up: EchoUpstream; let client: DpopClient;
const gws: TestGateway[] = [];

/** `extra`: a second issuer entry (same `iss`) and the route's issuer ids; `iss`: another `iss` for entry `a`. */
function yaml(tolerance: number, opts: { secondId?: string; routeIssuer?: string; iss?: string } = {}): string {
  return `
server:
  dpop: { proofMaxAgeSec: 5 }
issuers:
  - { id: a, issuer: ${opts.iss ?? iss.issuer}, jwksUri: ${iss.jwksUri}, audiences: [api], clockToleranceSec: ${opts.secondId ? 0 : tolerance} }
${opts.secondId ? `  - { id: ${opts.secondId}, issuer: ${iss.issuer}, jwksUri: ${iss.jwksUri}, audiences: [api], clockToleranceSec: ${tolerance} }\n` : ''}routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt${opts.routeIssuer ? `, issuers: [${opts.routeIssuer}]` : ''} }
`;
}

before(async () => {
  [iss, up, client] = await Promise.all([startMockIssuer({ algs: ['ES256'] }), startUpstream(), dpopClient()]);
});
after(async () => {
  for (const g of gws) await g.close();
  await up?.close();
  await iss?.close();
});

async function replay(g: TestGateway, token: string, proof: string) {
  const r = await fetch(g.url + '/api/x', { headers: { authorization: `DPoP ${token}`, dpop: proof } });
  const body = r.status === 200 ? null : (await r.json() as { error_description: string }).error_description;
  return { status: r.status, body };
}

for (const [name, steps] of [
  ['the same issuer raises clockToleranceSec', () => [yaml(300)]],
  ['the route moves to another issuer entry for the same iss with a larger clockToleranceSec', () => [yaml(300, { secondId: 'b', routeIssuer: 'b' })]],
  // The first reload drops the iss (its entry now names another), the second brings it back
  // with a larger tolerance: what that iss had before the first must still bound it.
  ['an earlier reload removed the iss and this one brings it back with a larger clockToleranceSec', () => [yaml(0, { iss: 'https://other.test/' }), yaml(300)]],
] as const) {
  test(`a reload where ${name} does not let a proof seen before it pass again`, async () => {
    // The gateway's clock: real time plus an offset the test advances (no sleeping).
    let offsetMs = 0;
    const g = await startGateway(yaml(0), { now: () => Date.now() + offsetMs });
    gws.push(g);
    await g.ready();
    const token = await iss.sign({ claims: { cnf: { jkt: client.jkt }, sub: name } });
    const proof = await client.proof({ htm: 'GET', htu: `${g.url}/api/x`, token });
    assert.equal((await replay(g, token, proof)).status, 200);
    assert.equal((await replay(g, token, proof)).status, 401, 'control: replay refused before the reload');

    for (const step of steps()) {
      writeFileSync(g.file, step);
      assert.equal(await reloadOnce(g.gw, g.file), true, 'reload taken');
    }
    // The id was kept for 5 s + 2 × 0 s + 1 s; 8 s later only the iat window stands, and
    // under a 300 s tolerance the proof (5 s max age) would still be in it. (5 s, not 1 s:
    // the first use must pass however the second boundary falls on a loaded machine.)
    offsetMs = 8000;
    up.reset();
    const r = await replay(g, token, proof);
    assert.equal(r.status, 401, `the captured proof passed again after the reload: ${JSON.stringify(r)}`);
    assert.equal(up.requests.length, 0, 'nothing reached the upstream');
    // A fresh proof still passes: the rest of the reload applied.
    const fresh = await client.proof({ htm: 'GET', htu: `${g.url}/api/x`, token, iat: Math.floor((Date.now() + offsetMs) / 1000) });
    assert.equal((await replay(g, token, fresh)).status, 200);
  });
}

test('keepReplayProtection names a larger clockToleranceSec (by iss) as kept; a smaller one applies', () => {
  const cfg = (issuers: string) => compileConfig(parseConfig(`
issuers:
${issuers}
routes:
  - { id: api, match: { pathPrefix: /api }, upstream: http://127.0.0.1:1, auth: { mode: jwt } }
`, 'c.yaml', {}));
  const a = (tol: number, id = 'a') => `  - { id: ${id}, issuer: https://i.test/, jwksUri: https://i.test/jwks, audiences: [api], clockToleranceSec: ${tol} }`;
  let r = keepReplayProtection(cfg(a(10)), cfg(a(120)), new Map());
  assert.deepEqual(r.kept, ['issuers.a.clockToleranceSec (longer)']);
  assert.equal(r.config.issuers.get('a')?.clockToleranceSec, 10);
  r = keepReplayProtection(cfg(a(10)), cfg(`${a(0)}\n${a(300, 'b')}`), new Map());
  assert.deepEqual(r.kept, ['issuers.b.clockToleranceSec (longer)']);
  assert.equal(r.config.issuers.get('b')?.clockToleranceSec, 10, 'a new id for a known iss keeps the smallest tolerance that iss had');
  assert.equal(r.config.issuers.get('a')?.clockToleranceSec, 0, 'a shorter tolerance applies');
  r = keepReplayProtection(cfg(a(10)), cfg(a(10).replace('https://i.test/', 'https://other.test/')), new Map());
  assert.deepEqual(r.kept, [], 'a new iss never had a proof accepted: its tolerance applies');
  // Across reloads: the smallest tolerance an iss has had since the start bounds it, even
  // after a reload in which it was absent.
  const seen = new Map<string, number>();
  r = keepReplayProtection(cfg(a(10)), cfg(a(10).replace('https://i.test/', 'https://other.test/')), seen);
  assert.deepEqual(r.kept, []);
  r = keepReplayProtection(r.config, cfg(a(300)), seen);
  assert.deepEqual(r.kept, ['issuers.a.clockToleranceSec (longer)']);
  assert.equal(r.config.issuers.get('a')?.clockToleranceSec, 10);
});
