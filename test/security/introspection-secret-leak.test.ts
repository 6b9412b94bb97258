/**
 * Token and client-secret leakage through introspection: neither may appear in a log line
 * (captured at level trace), a metric, or a response (status line, headers, body), on the
 * happy path, on inactive tokens, or on any failure, including an endpoint that echoes
 * the request it got in its error body.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { IDP_CLIENT, IDP_RESOURCES, startIdp, type TestIdp } from '../helpers/idp.js';
import { startMockIntrospection, type MockIntrospection } from '../helpers/mock-introspection.js';
import { startRelay, type Relay } from '../helpers/relay.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway } from '../helpers/gateway.js';

let idp: TestIdp; let relay: Relay; let echo: MockIntrospection; let up: EchoUpstream;
before(async () => {
  idp = await startIdp();
  relay = await startRelay(idp.issuer);
  echo = await startMockIntrospection();
  up = await startUpstream();
});
after(async () => {
  await up?.close(); await echo?.close(); await relay?.close(); await idp?.close();
});

test('introspection never puts the token or the client secret in logs, metrics or responses', async () => {
  const logs: string[] = [];
  const ECHO_SECRET = 'echo-secret-DO-NOT-LEAK-42';
  const gw = await startGateway(`
issuers:
  - id: real
    issuer: ${idp.issuer}
    introspection:
      endpoint: ${relay.url}/token/introspection
      clientId: ${IDP_CLIENT.clientId}
      clientSecret: \${REAL_SECRET}
  - id: wrong
    issuer: ${idp.issuer}/wrong
    introspection:
      endpoint: ${relay.url}/token/introspection
      clientId: ${IDP_CLIENT.clientId}
      clientSecret: \${WRONG_SECRET}
  - id: echo
    issuer: https://echo.example
    introspection:
      endpoint: ${echo.endpoint}
      clientId: gw
      clientSecret: \${ECHO_SECRET}
      authMethod: client_secret_post
routes:
  - { id: real, match: { pathPrefix: /real }, upstream: "${up.url}", auth: { mode: introspection, issuers: [real] }, forward: { headers: { x-auth-client: client_id } } }
  - { id: wrong, match: { pathPrefix: /wrong }, upstream: "${up.url}", auth: { mode: introspection, issuers: [wrong] } }
  - { id: echo, match: { pathPrefix: /echo }, upstream: "${up.url}", auth: { mode: introspection, issuers: [echo] } }
`, { logs, env: { REAL_SECRET: IDP_CLIENT.clientSecret, WRONG_SECRET: 'wrong-secret-DO-NOT-LEAK-17', ECHO_SECRET } });
  try {
    const secrets = [IDP_CLIENT.clientSecret, 'wrong-secret-DO-NOT-LEAK-17', ECHO_SECRET];
    const token = await idp.token({ resource: IDP_RESOURCES.opaque });
    const tokens = [token, 'inactive-token-DO-NOT-LEAK-0001', 'echoed-token-DO-NOT-LEAK-0002'];
    const responses: string[] = [];
    const call = async (path: string, t: string, status: number) => {
      const r = await fetch(gw.url + path, { headers: { authorization: `Bearer ${t}` } });
      responses.push(`${r.status} ${r.statusText}\n${[...r.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n${await r.text()}`);
      assert.equal(r.status, status, path);
    };
    await call('/real', token, 200);
    await call('/real', tokens[1], 401);
    await call('/wrong', token, 503); // the provider refuses the client
    echo.answer = (req) => ({ status: 500, body: JSON.stringify(req) }); // echoes token and secret back
    await call('/echo', tokens[2], 503);
    echo.answer = (req) => ({ body: `not json ${JSON.stringify(req)}` });
    await call('/echo', tokens[2], 503);
    relay.down = true;
    try {
      await call('/real', 'another-token-DO-NOT-LEAK-0003', 503);
    } finally {
      relay.down = false;
    }
    tokens.push('another-token-DO-NOT-LEAK-0003');
    const metrics = await (await fetch(gw.adminUrl + '/metrics')).text();

    // The capture works: access lines and the failure warnings are there.
    assert.ok(logs.filter((l) => l.includes('"msg":"access"')).length >= 6);
    assert.ok(logs.filter((l) => l.includes('introspection failed')).length >= 4);
    assert.ok(echo.requests.some((q) => q.form.client_secret === ECHO_SECRET), 'the secret did go to the endpoint');
    for (const s of [...secrets, ...tokens]) {
      for (const l of logs) assert.ok(!l.includes(s), `log line leaks ${s.slice(0, 6)}…: ${l.slice(0, 200)}`);
      assert.ok(!metrics.includes(s), 'metrics leak');
      for (const r of responses) assert.ok(!r.includes(s), `response leaks: ${r}`);
    }
    // Nor any recognisable part of the Basic credential.
    const basic = Buffer.from(`${IDP_CLIENT.clientId}:${IDP_CLIENT.clientSecret}`).toString('base64');
    for (const l of logs) assert.ok(!l.includes(basic));
  } finally {
    await gw.close();
  }
});
