/**
 * The cause a 502/504 is logged with comes from the connection error's code (undici's or
 * Node's, directly or as its `cause`): an operator reads refused, reset, DNS, TLS or
 * timeout instead of a bare 502.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { upstreamCause } from '../../../src/server/forward.js';

const err = (code: string) => Object.assign(new Error('x'), { code });

describe('upstreamCause', () => {
  it('maps connection error codes to causes', () => {
    const cases: Array<[string, string]> = [
      ['ECONNREFUSED', 'refused'], ['ECONNRESET', 'reset'], ['UND_ERR_SOCKET', 'reset'], ['EPIPE', 'reset'],
      ['ENOTFOUND', 'dns'], ['EAI_AGAIN', 'dns'], ['UND_ERR_HEADERS_TIMEOUT', 'timeout'], ['UND_ERR_CONNECT_TIMEOUT', 'timeout'],
      ['ETIMEDOUT', 'timeout'], ['ERR_TLS_CERT_ALTNAME_INVALID', 'tls'], ['ERR_SSL_WRONG_VERSION_NUMBER', 'tls'],
      ['DEPTH_ZERO_SELF_SIGNED_CERT', 'tls'], ['CERT_HAS_EXPIRED', 'tls'], ['EHOSTUNREACH', 'unreachable'], ['HPE_INVALID_CONSTANT', 'other'],
    ];
    for (const [code, cause] of cases) assert.deepEqual(upstreamCause(err(code)), { cause, code }, code);
  });

  it('reads a wrapped error\'s cause, and has no code for an error without one', () => {
    assert.deepEqual(upstreamCause(Object.assign(new Error('fetch failed'), { cause: err('ECONNREFUSED') })), { cause: 'refused', code: 'ECONNREFUSED' });
    assert.deepEqual(upstreamCause(new Error('x')), { cause: 'other', code: undefined });
    assert.deepEqual(upstreamCause(null), { cause: 'other', code: undefined });
  });
});
