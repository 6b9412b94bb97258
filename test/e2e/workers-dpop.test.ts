/**
 * DPoP replay protection with the default `dpop.replayStore: memory` at `server.workers:
 * 1` and `2`. With two, connections are spread over the workers, so a store per worker
 * would accept one proof once per worker; the used proof ids live in the primary
 * (src/cluster/worker.ts PrimaryReplayStore): a proof sent on many fresh connections
 * passes exactly once at either count. Real CLI, real oidc-provider issuing a DPoP-bound
 * token, real upstream.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { IDP_RESOURCES, idpIssuerYaml, startIdp, type TestIdp } from '../helpers/idp.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { dpopClient, type DpopClient } from '../helpers/dpop.js';
import { startCliReplica, type CliReplica } from '../helpers/cli.js';

let idp: TestIdp; let up: EchoUpstream; let client: DpopClient;

before(async () => {
  [idp, up, client] = await Promise.all([startIdp(), startUpstream(), dpopClient()]);
});
after(async () => {
  await up?.close();
  await idp?.close();
});

for (const workers of [1, 2]) describe(`server.workers: ${workers}`, () => {
  let gw: CliReplica;
  let bound = '';

  before(async () => {
    gw = await startCliReplica(`
server:
  workers: ${workers}
  shutdownGraceSec: 1
issuers:
${idpIssuerYaml(idp)}
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
`);
    bound = await idp.token({ resource: IDP_RESOURCES.es256, dpop: (htm, htu) => client.proof({ htm, htu }) });
  });
  after(async () => {
    await gw?.stop();
  });

  /** One request on its own connection (the cluster hands connections to workers in turn). */
  function send(proof: string): Promise<{ status: number; www: string | undefined }> {
    return new Promise((resolve, reject) => {
      const req = http.get(`${gw.url}/api/orders`, { agent: false, headers: { authorization: `DPoP ${bound}`, dpop: proof } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, www: res.headers['www-authenticate'] }));
      });
      req.on('error', reject);
    });
  }

  const fresh = () => client.proof({ htm: 'GET', htu: `${gw.url}/api/orders`, token: bound });

  test('fresh proofs pass at every worker', { timeout: 30_000 }, async () => {
    for (let i = 0; i < 6; i++) assert.equal((await send(await fresh())).status, 200, `fresh proof ${i}`);
  });

  test('one proof passes once, whichever worker gets it', { timeout: 30_000 }, async () => {
    const proof = await fresh();
    const sequential = [];
    for (let i = 0; i < 6; i++) sequential.push(await send(proof));
    assert.deepEqual(sequential.map((r) => r.status), [200, 401, 401, 401, 401, 401]);
    assert.match(sequential[1]!.www ?? '', /error="invalid_dpop_proof"/);

    const other = await fresh();
    // 20 connections at once: the kernel hands them to both workers (a store per worker would pass 2).
    const concurrent = await Promise.all(Array.from({ length: 20 }, () => send(other)));
    assert.equal(concurrent.filter((r) => r.status === 200).length, 1, `statuses: ${concurrent.map((r) => r.status).join(',')}`);
  });
});
