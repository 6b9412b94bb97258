/**
 * `npm run dev`: the embedded development issuer, the echo upstream and the gateway on
 * `config/dev.yaml`, then ready-to-paste curl lines with the outcome each should have.
 */
import { fileURLToPath } from 'node:url';
import { ConfigError, formatProblem, loadCompiled } from '../config/index.js';
import { Gateway } from '../gateway.js';
import { startDevIssuer } from './dev-issuer.js';
import { startEchoUpstream } from './echo-upstream.js';

/** Runs dev mode until SIGINT/SIGTERM; resolves to the exit code. */
export async function runDev(): Promise<number> {
  const file = process.env.TOKENGATE_CONFIG ?? fileURLToPath(new URL('../../config/dev.yaml', import.meta.url));
  const idp = await startDevIssuer({ port: Number(process.env.DEV_ISSUER_PORT ?? 0) });
  const upstream = await startEchoUpstream();
  let config;
  try {
    config = loadCompiled(file, { ...process.env, DEV_ISSUER: idp.issuer, DEV_UPSTREAM: upstream.url });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const p of e.problems) console.error(formatProblem(p));
    await Promise.all([idp.close(), upstream.close()]);
    return 1;
  }
  const gw = new Gateway(config);
  let proxy: string;
  let admin: string;
  try {
    ({ proxy, admin } = await gw.start());
  } catch (e) {
    // Close what did start (the issuer, the upstream, key fetches): left open, they would
    // keep the process running without a gateway.
    await gw.close(0).catch(() => undefined);
    await Promise.all([idp.close(), upstream.close()]);
    console.error(`tokengate dev: ${startFailure(e)}`);
    return 1;
  }
  for (let i = 0; i < 50 && !gw.readiness().ready; i++) await new Promise((r) => setTimeout(r, 100));

  const good = await idp.issue({ scope: 'orders:read orders:write', audience: 'demo-api' });
  const readOnly = await idp.issue({ scope: 'orders:read', audience: 'demo-api', alg: 'ES256' });
  const noScope = await idp.issue({ scope: 'profile', audience: 'demo-api', alg: 'EdDSA' });
  const base = proxy.replace('0.0.0.0', '127.0.0.1');
  const lines = [
    '',
    `tokengate dev: proxy ${base}, admin ${admin}, dev issuer ${idp.issuer}, echo upstream ${upstream.url}`,
    '',
    '# 200: valid RS256 token with orders:read (the echo shows x-auth-subject, x-auth-scopes)',
    `curl -i ${base}/orders/42 -H 'Authorization: Bearer ${good}'`,
    '',
    '# 403 insufficient_scope: valid EdDSA token without orders:read',
    `curl -i ${base}/orders/42 -H 'Authorization: Bearer ${noScope}'`,
    '',
    '# 403 insufficient_scope: ES256 token with orders:read only, on a write',
    `curl -i -X POST ${base}/orders -H 'Authorization: Bearer ${readOnly}'`,
    '',
    '# 401 (WWW-Authenticate: Bearer realm="tokengate"): no token',
    `curl -i ${base}/orders/42`,
    '',
    '# 200 without a token: the public route',
    `curl -i ${base}/health`,
    '',
    '# a token of your own (client credentials; scope and alg as you like):',
    `curl -s ${idp.tokenEndpoint} -d grant_type=client_credentials -d 'scope=orders:read' -d alg=ES256`,
    '',
    `# metrics: curl -s ${admin.replace('0.0.0.0', '127.0.0.1')}/metrics | grep tokengate_`,
    '',
  ];
  process.stderr.write(lines.join('\n') + '\n');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await gw.close(1);
  await Promise.all([idp.close(), upstream.close()]);
  return 0;
}

/** What to tell the user when a listener could not start. */
function startFailure(e: unknown): string {
  const err = e as NodeJS.ErrnoException & { address?: string; port?: number };
  if (err.code === 'EADDRINUSE') {
    return `port ${err.port} on ${err.address} is already in use (another tokengate dev?); set PORT (proxy) or ADMIN_PORT (admin) to a free port`;
  }
  if (err.code === 'EACCES') return `not allowed to listen on port ${err.port} on ${err.address}; set PORT (proxy) or ADMIN_PORT (admin) to a port above 1023`;
  return `cannot start the gateway: ${err.message}`;
}
