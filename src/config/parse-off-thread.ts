/**
 * Parsing a large config takes seconds (10 000 routes: ~2 s in `yaml` alone here), and a
 * reload on the event loop would stall every request of the process for that long. Above
 * a size, a reload parses and validates on a worker thread instead: the same
 * {@link parseConfig}, so a text means the same thing wherever it is read; only
 * compiling the result (~0.1 s for 10 000 routes) is left to the event loop.
 */
import { Worker } from 'node:worker_threads';
import { ConfigError, type ConfigProblem } from './load.js';
import type { Config } from './schema.js';

/** Texts of at least this many characters are parsed off the event loop on reload (256 Ki: ~0.2 s of parsing). */
export const OFF_THREAD_CHARS = 256 * 1024;

type Answer = { ok: true; config: Config } | { ok: false; problems: ConfigProblem[] };

/** Run from source through tsx (tests, `npm run dev`) rather than from dist/. */
const FROM_SOURCE = import.meta.url.endsWith('.ts');
/** The thread's entry: parse-thread.js next to this file (parse-thread.ts when run from source). */
const ENTRY = new URL(`./parse-thread.${FROM_SOURCE ? 'ts' : 'js'}`, import.meta.url);

/** A worker thread running {@link ENTRY}. From source, tsx's loader is registered in it first: threads do not inherit it. */
function startThread(workerData: unknown): Worker {
  if (!FROM_SOURCE) return new Worker(ENTRY, { workerData });
  const boot = `import('tsx/esm/api').then((tsx) => tsx.register()).then(() => import(${JSON.stringify(ENTRY.href)}))`;
  return new Worker(boot, { eval: true, workerData });
}

/** A parse running on its own thread; `cancel()` stops it (the result then rejects). */
export interface OffThreadParse {
  result: Promise<Config>;
  cancel(): void;
}

/** Parses and validates `text` on a new worker thread. `result` rejects with a {@link ConfigError}. */
export function parseConfigOffThread(text: string, file: string, env: NodeJS.ProcessEnv): OffThreadParse {
  const worker = startThread({ text, file, env: { ...env } });
  const result = new Promise<Config>((resolve, reject) => {
    let answered = false;
    worker.once('message', (a: Answer) => {
      answered = true;
      if (a.ok) resolve(a.config);
      else reject(new ConfigError(a.problems));
    });
    worker.once('error', (e) => reject(new ConfigError([{ file, line: 0, path: '', message: `cannot be checked: ${e.message}` }])));
    worker.once('exit', () => {
      if (!answered) reject(new ConfigError([{ file, line: 0, path: '', message: 'cannot be checked: the parse was stopped' }]));
    });
  });
  return { result, cancel: () => void worker.terminate() };
}
