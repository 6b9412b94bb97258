/**
 * `tokengate explain` never prints a token (SECURITY.md; src/explain.ts: "A token put in
 * the query string (refused: token_in_query) is not echoed either"). The gateway reads the
 * query with URLSearchParams, so `%61ccess_token=`, `access%5Ftoken=` and `access%5ftoken=`
 * are the `access_token` parameter and are refused as such, but explain's redaction looks
 * for the literal text `access_token=` only and prints the rest of the target verbatim.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCompiled } from '../../src/config/index.js';
import { explain } from '../../src/explain.js';

const SECRET = 'eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLWluLXF1ZXJ5.c2lnbmF0dXJl';

test('explain redacts an access_token query parameter however its name is percent-encoded', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'tokengate-explain-q-')), 'gateway.yaml');
  writeFileSync(file, `
routes:
  - id: pub
    match: { pathPrefix: /pub }
    upstream: http://127.0.0.1:9
    auth: { mode: none }
`);
  const config = loadCompiled(file, process.env);
  for (const name of ['access_token', '%61ccess_token', 'access%5Ftoken', 'access%5ftoken', '%61%63%63%65%73%73%5F%74%6F%6B%65%6E']) {
    const r = await explain(config, { method: 'GET', url: `/pub/x?a=1&${name}=${SECRET}` });
    const out = r.lines.join('\n');
    assert.equal(r.status, 400, `${name}: refused as a token in the query\n${out}`);
    assert.match(out, /reason token_in_query/);
    assert.ok(!out.includes(SECRET), `${name}: explain printed the token:\n${out}`);
  }
});
