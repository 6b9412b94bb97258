/**
 * TLS on the proxy port (`server.tls`): the certificate pair, the client CAs and the
 * protocol floor as Node's https options.
 */
import { readFileSync } from 'node:fs';
import type { ServerOptions } from 'node:https';
import type { GatewayCore } from './core.js';

/** The https options for `server.tls`, read from its files now; null without `server.tls`. */
export function tlsOptions(core: GatewayCore): ServerOptions | null {
  const t = core.config.server.tls;
  if (!t) return null;
  return {
    cert: readFileSync(t.certFile),
    key: readFileSync(t.keyFile),
    minVersion: t.minVersion,
    ...(t.clientCaFile
      ? { ca: readFileSync(t.clientCaFile), requestCert: true, rejectUnauthorized: t.clientCertificate === 'require' }
      : {}),
  };
}
