/**
 * Worker-thread entry of {@link parseConfigOffThread} (src/config/parse-off-thread.ts):
 * parses and validates one config text with the same {@link parseConfig} a start uses,
 * and posts back the validated config or its problems (plain data, structured-cloned).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ConfigError, parseConfig } from './load.js';

const { text, file, env } = workerData as { text: string; file: string; env: NodeJS.ProcessEnv };
try {
  parentPort!.postMessage({ ok: true, config: parseConfig(text, file, env) });
} catch (e) {
  parentPort!.postMessage(e instanceof ConfigError
    ? { ok: false, problems: e.problems }
    : { ok: false, problems: [{ file, line: 0, path: '', message: `cannot be checked: ${(e as Error)?.message ?? 'error'}` }] });
}
