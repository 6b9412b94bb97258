/**
 * A bug inside the decision (a throw that is not in the error catalogue) is the gateway's
 * fault, not the caller's: it is answered 500 `server_error` with nothing internal in the
 * body, logged at error level with its stack (token-like text scrubbed), and recorded as
 * `outcome="error", reason="internal"` — never turned into a 401 that would hide it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { issuerYaml, startFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
const logs: string[] = [];

before(async () => {
  f = await startFixture((iss, up) => `
${issuerYaml(iss)}routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
`, { logs });
});
after(() => f?.close());

test('a non-catalogue throw in the decision: 500, logged with its stack, recorded as an error, no token anywhere', async () => {
  const token = await f.iss.sign({});
  const jwt = f.gw.gw.verifiers.jwt as { verify(token: string): Promise<unknown> };
  const real = jwt.verify;
  jwt.verify = async (t: string) => {
    const broken: { claims?: { sub: string } } = {};
    // A bug that happens to quote its input, as JSON.parse and friends do.
    if (t) throw new TypeError(`cannot read ${t}: ${broken.claims!.sub}`);
    return null;
  };
  try {
    const r = await fetch(`${f.gw.url}/api/x`, { headers: { authorization: `Bearer ${token}` } });
    const body = await r.text();
    assert.equal(r.status, 500);
    assert.deepEqual(JSON.parse(body), { error: 'server_error', error_description: 'Internal error' });
    assert.equal(r.headers.get('www-authenticate'), null, 'not a token refusal');
    assert.equal(f.up.requests.length, 0);
    await new Promise((res) => setTimeout(res, 20));
    const lines = logs.map((l) => JSON.parse(l));
    const bug = lines.find((l) => l.level === 'error');
    assert.ok(bug, `an error line: ${logs.join('\n')}`);
    assert.equal(bug.route, 'api');
    assert.equal(bug.fault.type, 'TypeError');
    assert.match(bug.fault.stack, /TypeError[\s\S]*internal-error\.test\.ts/, 'the stack points at the bug');
    for (const l of logs) assert.ok(!l.includes(token) && !l.includes(token.split('.')[1]), 'no token in any log line');
    const access = lines.filter((l) => l.msg === 'access');
    assert.deepEqual(access.map((l) => [l.status, l.outcome, l.reason]), [[500, 'error', 'internal']]);
    const metrics = await f.gw.gw.metrics.registry.metrics();
    assert.match(metrics, /^tokengate_requests_total\{route="api",outcome="error",reason="internal",status_class="5xx"\} 1$/m);
  } finally {
    jwt.verify = real;
  }
});
