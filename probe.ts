import { startFixture, oneIssuer } from './test/helpers/fixture.js';
const f = await startFixture((iss, up) => oneIssuer(iss, `
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
  - id: open
    match: { pathPrefix: /open }
    upstream: ${up.url}
    auth: { mode: none }
`));
const t = await f.iss.sign();
for (const [p, tok] of [['/open/x', ''], ['/api/x', t], ['/api/x', 'garbage'], ['/nothing', '']]) {
  const s = performance.now();
  for (let i = 0; i < 20; i++) { const r = await f.bearer(p, tok); await r.text(); }
  console.log(p, tok.slice(0,5), ((performance.now() - s) / 20).toFixed(2), 'ms');
}
const s = performance.now();
await f.close();
console.log('close', performance.now() - s);
setTimeout(() => { console.log((process as any)._getActiveHandles().map((h: any) => h.constructor.name + ' ' + (h.remotePort ?? '') + ' ' + (h.localPort ?? ''))); }, 100).unref();
