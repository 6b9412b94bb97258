/**
 * GatewayError: a refusal (4xx) captures no stack trace (it is an answer, and capturing one
 * would cost every forged or expired token more than its parse), a 5xx keeps its stack, and
 * the process-wide stack limit is left as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError } from '../../src/errors.js';

const frames = (e: Error) => (e.stack ?? '').split('\n').filter((l) => l.trimStart().startsWith('at ')).length;

test('a 4xx GatewayError has no stack frames; a 5xx one has; Error.stackTraceLimit is restored', () => {
  const before = Error.stackTraceLimit;
  for (const reason of ['expired', 'bad_signature', 'malformed', 'no_route', 'scope'] as const) {
    const e = new GatewayError(reason);
    assert.equal(frames(e), 0, reason);
    assert.equal(e.message, new GatewayError(reason).message);
  }
  assert.ok(frames(new GatewayError('internal')) > 0, 'internal keeps its stack');
  assert.ok(frames(new GatewayError('jwks_unavailable', { retryAfterSec: 1 })) > 0, '503 keeps its stack');
  assert.equal(Error.stackTraceLimit, before);
  assert.ok(frames(new Error('x')) > 0, 'ordinary errors still get stacks');
});
