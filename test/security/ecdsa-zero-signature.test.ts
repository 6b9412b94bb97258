/**
 * "Psychic signatures" (CVE-2022-21449): an ECDSA signature with r = s = 0 must never
 * verify; nor may other degenerate signatures (r = s = n, truncated, DER-encoded).
 */
import { after, before, test } from 'node:test';
import { assertDenied, CHALLENGE, DESC, startApiFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startApiFixture({ issuerExtra: '\n    algorithms: [ES256]', algs: ['ES256'] });
});
after(() => f?.close());

test('ES256 with all-zero and other degenerate signatures: 401 bad_signature', async () => {
  const good = await f.iss.sign({ claims: { sub: 'attacker' } });
  const [h, p] = good.split('.');
  const n = Buffer.from('FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551', 'hex');
  const sigs: Array<[string, Buffer]> = [
    ['r=s=0 (64 zero bytes)', Buffer.alloc(64)],
    ['r=s=n', Buffer.concat([n, n])],
    ['r=0, s=real', Buffer.concat([Buffer.alloc(32), Buffer.from(good.split('.')[2], 'base64url').subarray(32)])],
    ['DER r=s=0', Buffer.from('3006020100020100', 'hex')],
    ['32 zero bytes', Buffer.alloc(32)],
    ['one zero byte', Buffer.alloc(1)],
  ];
  for (const [what, sig] of sigs) {
    await assertDenied(await f.bearer('/api/x', `${h}.${p}.${sig.toString('base64url')}`), f.up, 401, CHALLENGE.invalid(DESC.bad_signature), 'invalid_token', what);
  }
});
