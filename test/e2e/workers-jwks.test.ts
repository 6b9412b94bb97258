/**
 * JWKS lifecycle at `server.workers: 1` and `2`, with the real CLI and the real
 * oidc-provider: the scheduled refresh happens when the key set expires (`cacheTtlSec:
 * 2`), not when the much longer `cooldownSec` (30) allows an unknown-kid fetch, so a key
 * the IdP no longer publishes stops validating within about one key-set lifetime on every
 * worker — cached verifications included. The IdP rotates its keys by restarting on the
 * same port (oidc-provider generates fresh keys each start, under the same kids).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { IDP_RESOURCES, idpIssuerYaml, startIdp, type TestIdp } from '../helpers/idp.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startCliReplica, type CliReplica } from '../helpers/cli.js';

let up: EchoUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up?.close();
});

/** One request on its own connection (the kernel hands each connection to one worker). */
function send(g: CliReplica, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(`${g.url}/api/x`, { agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject);
  });
}

for (const workers of [1, 2]) {
  describe(`server.workers: ${workers}`, () => {
    let idp: TestIdp;
    let g: CliReplica;
    before(async () => {
      idp = await startIdp();
      g = await startCliReplica(`
server:
  workers: ${workers}
  shutdownGraceSec: 1
issuers:
${idpIssuerYaml(idp)}
    jwks: { cacheTtlSec: 2, cooldownSec: 30 }
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
`);
    });
    after(async () => {
      await g?.stop();
      await idp?.close();
    });

    test('a key the IdP stopped publishing stops validating within ~one cacheTtlSec, though cooldownSec is 30', { timeout: 60_000 }, async () => {
      const old = await idp.token({ resource: IDP_RESOURCES.es256 });
      // Warm every worker's key set and verified-token cache.
      assert.deepEqual(await Promise.all(Array.from({ length: 8 }, () => send(g, old))), Array(8).fill(200));
      const port = Number(new URL(idp.issuer).port);
      await idp.close();
      idp = await startIdp({ port }); // same issuer and kids, new keys
      const rotatedAt = Date.now();
      const fresh = await idp.token({ resource: IDP_RESOURCES.es256 });
      // Within one key-set lifetime (2 s) plus the refresh: the old key is gone everywhere.
      let statuses: number[] = [];
      while (Date.now() - rotatedAt < 6000) {
        statuses = await Promise.all(Array.from({ length: 8 }, () => send(g, old)));
        if (statuses.every((s) => s === 401)) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      const took = Date.now() - rotatedAt;
      assert.deepEqual(statuses, Array(8).fill(401), `still accepted ${took} ms after the rotation`);
      assert.ok(took < 4500, `refused after ${took} ms (cacheTtlSec 2)`);
      assert.deepEqual(await Promise.all(Array.from({ length: 8 }, () => send(g, fresh))), Array(8).fill(200), 'the new key validates');
    });
  });
}
