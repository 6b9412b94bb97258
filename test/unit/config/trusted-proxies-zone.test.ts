/**
 * `decision.trustedProxies` / `server.clientCert.trustedProxies` with an IPv6 zone id.
 * `net.isIP` accepts `fe80::1%eth0`, so the config check took it; but a socket's
 * `remoteAddress` never carries a zone and `BlockList` ignores it, so the entry trusted
 * `fe80::1` on every link (another host on another interface has the same link-local
 * address). What the matcher cannot enforce must be refused at load (fail closed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, formatProblem, parseConfig } from '../../../src/config/load.js';
import { addressMatcher } from '../../../src/config/address-matcher.js';

const errors = (yaml: string): string[] => {
  try {
    parseConfig(yaml, 'gw.yaml', {});
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems.map(formatProblem);
  }
  return [];
};

const ROUTE = `routes:
  - { id: r, match: { pathPrefix: /r }, upstream: http://u, auth: { mode: none } }
`;

test('an IPv6 zone id in trustedProxies is a config error (the matcher cannot tell links apart)', () => {
  assert.equal(addressMatcher(['fe80::1%eth0'])('fe80::1'), false, 'a zoned entry trusted fe80::1 from any link');
  const e = errors(`server: { clientCert: { trustedProxies: ["fe80::1%eth0"] } }\ndecision: { trustedProxies: ["fe80::%eth1/64"] }\n${ROUTE}`);
  assert.ok(e.some((p) => p.includes('server.clientCert.trustedProxies[0] is not an IP address or CIDR block')), e.join('\n') || '(no errors)');
  assert.ok(e.some((p) => p.includes('decision.trustedProxies[0] is not an IP address or CIDR block')), e.join('\n') || '(no errors)');
  // Ordinary forms still load.
  assert.deepEqual(errors(`server: { clientCert: { trustedProxies: ["fe80::1", "10.0.0.0/8", "::ffff:10.0.0.0/104"] } }\n${ROUTE}`), []);
});
