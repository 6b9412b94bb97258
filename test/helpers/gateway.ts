/**
 * Starts a real gateway in-process on 127.0.0.1 (ephemeral ports) from YAML text, the
 * way `tokengate --config` would, and gives its URLs. Logs are silenced unless
 * TOKENGATE_TEST_LOGS=1.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadCompiled } from '../../src/config/index.js';
import { Gateway } from '../../src/gateway.js';
import { loggerOptions } from '../../src/logger.js';

/** A running test gateway. */
export interface TestGateway {
  gw: Gateway;
  url: string;
  adminUrl: string;
  /** The decision (forward-auth) listener, when the config has a `decision:` block. */
  decisionUrl?: string;
  /** The gRPC ext_authz listener's `host:port`, when the config has an `extAuthz:` block. */
  extAuthzAddress?: string;
  file: string;
  /** Resolves once /readyz would answer 200 (keys fetched), or rejects after `ms`. */
  ready(ms?: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Writes `yaml` to a temp file and starts a gateway on it (server/admin/decision on
 * 127.0.0.1, port 0). `logs`: every log line (JSON text, level `trace`) is pushed there,
 * to assert what is (not) logged.
 */
export async function startGateway(yaml: string, opts: { env?: NodeJS.ProcessEnv; now?: () => number; logs?: string[] } = {}): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-test-'));
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, yaml);
  const config = loadCompiled(file, { ...process.env, ...opts.env });
  const forced = {
    ...config,
    server: { ...config.server, host: '127.0.0.1', port: 0 },
    admin: { ...config.admin, host: '127.0.0.1', port: 0 },
    decision: config.decision ? { ...config.decision, host: '127.0.0.1', port: 0 } : null,
    extAuthz: config.extAuthz ? { ...config.extAuthz, host: '127.0.0.1', port: 0 } : null,
  };
  const logs = opts.logs;
  const logger = logs
    ? pino(loggerOptions('trace'), { write: (line: string) => void logs.push(line) })
    : pino(loggerOptions(process.env.TOKENGATE_TEST_LOGS ? 'debug' : 'silent'));
  const gw = new Gateway(forced, { logger, now: opts.now });
  const { proxy, admin, decision, extAuthz } = await gw.start();
  return {
    gw,
    url: proxy,
    adminUrl: admin,
    decisionUrl: decision,
    extAuthzAddress: extAuthz,
    file,
    async ready(ms = 5000) {
      const until = Date.now() + ms;
      while (!gw.readiness().ready) {
        if (Date.now() > until) throw new Error(`gateway not ready: ${gw.readiness().reason}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () => gw.close(0),
  };
}
