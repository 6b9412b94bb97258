/**
 * Peer-address allow-lists (`clientCert.trustedProxies`, `decision.trustedProxies`), compiled once into a
 * `net.BlockList`. IPv4-mapped IPv6 peers (`::ffff:127.0.0.1`, what a dual-stack socket
 * reports) are compared as the IPv4 address they carry.
 */
import { BlockList, isIP } from 'node:net';
import { parseCidr } from './cross-check.js';

const MEMO_MAX = 1024;

/** Whether a peer address is in the list. */
export type AddressMatcher = (address: string | undefined) => boolean;

/** Compiles CIDR blocks / addresses (already validated by cross-check) into a matcher. */
export function addressMatcher(cidrs: readonly string[]): AddressMatcher {
  const list = new BlockList();
  for (const c of cidrs) {
    const p = parseCidr(c);
    if (p) list.addSubnet(p.address, p.prefix, p.family);
  }
  // BlockList.check builds a SocketAddress per call (measurable on the request path, where
  // this runs for every request): remember recent answers, a few peers being the usual case.
  const memo = new Map<string, boolean>();
  return (address) => {
    if (!address) return false;
    const known = memo.get(address);
    if (known !== undefined) return known;
    const a = address.toLowerCase().startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
    const v = isIP(a);
    const ok = v !== 0 && list.check(a, v === 4 ? 'ipv4' : 'ipv6');
    if (memo.size >= MEMO_MAX) memo.clear();
    memo.set(address, ok);
    return ok;
  };
}
