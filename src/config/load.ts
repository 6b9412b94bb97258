/**
 * Reads a config file into a validated {@link Config}: YAML with positions, `${VAR}`
 * substitution, schema validation (Ajv, defaults applied) and cross-reference checks.
 * Every problem is reported as `file:line key.path why`, all at once.
 */
import { readFileSync, statSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { isMap, isNode, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { ConfigSchema, REDIS_URL_DEFAULT, type Config } from './schema.js';
import { substituteEnv } from './env.js';
import { crossCheck, type CrossProblem } from './cross-check.js';

/** One config problem, with where it is. */
export interface ConfigProblem {
  file: string;
  line: number;
  /** Dotted key path, e.g. `routes[0].auth.mode`. */
  path: string;
  message: string;
}

/** The config cannot be used; `problems` lists every reason. */
export class ConfigError extends Error {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** `file:line key.path why`. */
export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line} ${p.path || '(root)'} ${p.message}`;
}

/**
 * The largest config file read, in bytes (10 MiB). Tens of thousands of routes fit well
 * below it; a larger file is refused before it is parsed, so that a wrong path (a log, an
 * image) or a runaway generator costs neither minutes nor gigabytes at start or reload.
 */
export const MAX_CONFIG_BYTES = 10 * 1024 * 1024;

/** The problem of a config of `bytes` bytes: over {@link MAX_CONFIG_BYTES}. */
function tooLarge(file: string, bytes: number): ConfigError {
  const mib = (n: number) => `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  return new ConfigError([{ file, line: 0, path: '', message: `is ${mib(bytes)}, more than the ${mib(MAX_CONFIG_BYTES)} a config file may have` }]);
}

let validator: ValidateFunction<Config> | null = null;

/**
 * The schema's validator, compiled on first use (~0.2 s of CPU): a cluster worker, which
 * starts on its primary's validated config, never needs it until a reload.
 */
function schemaValidator(): ValidateFunction<Config> {
  validator ??= new Ajv({ allErrors: true, useDefaults: true, strict: false, coerceTypes: false, verbose: true }).compile<Config>(ConfigSchema);
  return validator;
}

/** Reads and validates the file at `file`. Throws {@link ConfigError}. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  return parseConfigLocated(readConfigText(file), file, env).config;
}

/** Reads the file at `file` (at most {@link MAX_CONFIG_BYTES}), for {@link parseConfigLocated}. Throws {@link ConfigError}. */
export function readConfigText(file: string): string {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > MAX_CONFIG_BYTES) throw tooLarge(file, size);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError([{ file, line: 0, path: '', message: `cannot be read: ${(e as NodeJS.ErrnoException).code ?? 'error'}` }]);
  }
  return text;
}

/** Validates config text; `file` is only used in messages. Throws {@link ConfigError}. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  return parseConfigLocated(text, file, env).config;
}

/** A validated config and a way to place more problems (lint warnings) at their lines. */
export interface LocatedConfig {
  config: Config;
  /** Places problems found on `config` in the text it was read from, without parsing it again. */
  locate(found: readonly CrossProblem[]): ConfigProblem[];
}

/** Like {@link parseConfig}, keeping the parsed document for {@link LocatedConfig.locate}. */
export function parseConfigLocated(text: string, file: string, env: NodeJS.ProcessEnv = process.env): LocatedConfig {
  // UTF-16 length is at most the UTF-8 byte count: only texts that may be too large are measured.
  if (text.length > MAX_CONFIG_BYTES / 3) {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > MAX_CONFIG_BYTES) throw tooLarge(file, bytes);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const lineOf = (node: { range?: [number, number, number?] | null } | null | undefined): number =>
    node?.range ? lines.linePos(node.range[0]).line : 0;

  if (doc.errors.length) {
    throw new ConfigError(doc.errors.map((e) => ({
      file, line: e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line, path: '', message: `YAML: ${e.message.split('\n')[0]}`,
    })));
  }
  const envProblems = substituteEnv(doc, env);
  const pathOf = envProblems.length ? nodePaths(doc) : new Map<Node, string>();
  const problems: ConfigProblem[] = envProblems.map((p) => ({
    file, line: lineOf(p.node), path: pathOf.get(p.node) ?? '', message: p.message,
  }));

  const envPaths = new Set(problems.map((p) => p.path));
  const data: unknown = doc.toJS() ?? {};
  const validate = schemaValidator();
  if (!validate(data)) {
    for (const err of dedupe(validate.errors ?? [])) {
      const problem = describeAjvError(err, doc, file, lineOf);
      if (!envPaths.has(problem.path)) problems.push(problem); // already reported as a missing variable
    }
  }
  // Cross-references are checked even when the schema failed, so that one run reports every
  // error; on data too broken to walk, the schema errors alone are reported.
  const config = data as Config;
  let cross: ReturnType<typeof crossCheck> = [];
  try {
    cross = resolveAndCrossCheck(config, env);
  } catch {
    if (!problems.length) throw new ConfigError([{ file, line: 0, path: '', message: 'cannot be checked' }]);
  }
  const seen = new Set(problems.map((p) => p.path));
  for (const c of cross) {
    const path = formatPath(c.path);
    if (!seen.has(path)) problems.push({ file, line: lineOf(nodeAt(doc, c.path)), path, message: c.message });
  }
  if (problems.length) throw new ConfigError(problems);
  return {
    config,
    // `${VAR}` substitution never changes the document's shape: paths of the config are paths of the document.
    locate: (found) => found.map((c) => ({ file, line: lineOf(nodeAt(doc, c.path)), path: formatPath(c.path), message: c.message })),
  };
}

/** Resolves what the schema's defaults leave as references, then checks cross-references. */
function resolveAndCrossCheck(config: Config, env: NodeJS.ProcessEnv): CrossProblem[] {
  // The schema default of server.redis.url is itself a `${VAR:-default}` reference: resolve it like one.
  if (config.server.redis.url === REDIS_URL_DEFAULT) config.server.redis.url = env.REDIS_URL || 'redis://127.0.0.1:6379';
  return crossCheck(config);
}

/**
 * Places problems found on an already validated config (lint warnings) at their line
 * in `file`: `${VAR}` substitution never changes the document's shape.
 */
export function locateProblems(file: string, found: readonly CrossProblem[]): ConfigProblem[] {
  if (!found.length) return [];
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // unreadable now: report without lines
  }
  return locateInText(text, file, found);
}

/** Places `found` at their lines in `text` (read with `yaml`), reported as `file`. */
function locateInText(text: string, file: string, found: readonly CrossProblem[]): ConfigProblem[] {
  if (!found.length) return [];
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  return found.map((c) => {
    const node = nodeAt(doc, c.path);
    return { file, line: node?.range ? lines.linePos(node.range[0]).line : 0, path: formatPath(c.path), message: c.message };
  });
}

type Seg = string | number;

function formatPath(segs: readonly Seg[]): string {
  let out = '';
  for (const s of segs) out += typeof s === 'number' ? `[${s}]` : out ? `.${s}` : s;
  return out;
}

function pointerToSegs(pointer: string): Seg[] {
  if (!pointer) return [];
  return pointer.slice(1).split('/').map((s) => {
    const k = s.replace(/~1/g, '/').replace(/~0/g, '~');
    return /^\d+$/.test(k) ? Number(k) : k;
  });
}

/** The deepest YAML node that exists along `segs` (so a missing key points at its parent). */
function nodeAt(doc: Document, segs: readonly Seg[]): Node | null {
  let node: unknown = doc.contents;
  for (const s of segs) {
    if (!isNode(node)) break;
    const next: unknown = (node as unknown as { get(k: Seg, keep: true): unknown }).get?.(s, true);
    if (!isNode(next)) break;
    node = next;
  }
  return isNode(node) ? node : null;
}

/** The key path of every node, from one walk of the document (used for env problems). */
function nodePaths(doc: Document): Map<Node, string> {
  const paths = new Map<Node, string>();
  const walk = (node: unknown, segs: Seg[]): void => {
    if (isNode(node) && !paths.has(node)) paths.set(node, formatPath(segs));
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = isNode(pair.key) ? String((pair.key as { value?: unknown }).value) : String(pair.key);
        walk(pair.value, [...segs, key]);
      }
    } else if (isNode(node) && 'items' in node) {
      const items = (node as { items: unknown[] }).items;
      for (let i = 0; i < items.length; i++) walk(items[i], [...segs, i]);
    }
  };
  walk(doc.contents, []);
  return paths;
}

/** Ajv reports each failing branch of a union; keep one line per location and keyword family. */
function dedupe(errors: ErrorObject[]): ErrorObject[] {
  const seen = new Set<string>();
  const out: ErrorObject[] = [];
  // A union failure reports its branches' `const`/`type` errors then `anyOf`; prefer `anyOf`.
  const unionPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  for (const e of errors) {
    if (unionPaths.has(e.instancePath) && e.keyword !== 'anyOf') continue;
    const key = `${e.instancePath}|${e.keyword}|${JSON.stringify(e.params)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(e);
  }
  return out;
}

/** Keys whose values are never echoed in a config error: secrets, and URLs (they can carry a password). */
const SECRET_KEY = /secret|password|passwd|^(url|endpoint|jwksUri|issuer|upstream)$/i;

function describeAjvError(
  err: ErrorObject,
  doc: Document,
  file: string,
  lineOf: (n: Node | null) => number,
): ConfigProblem {
  const segs = pointerToSegs(err.instancePath);
  // Echo the offending value, except where it may be a credential (a secret, or a URL that
  // can carry a password): config errors are printed and logged.
  const last = segs.length ? String(segs[segs.length - 1]) : '';
  const secret = SECRET_KEY.test(last) || (segs[0] === 'tracing' && segs[1] === 'headers'); // a collector's credentials
  const got = secret ? () => '' : (v: unknown) => ` (got ${JSON.stringify(v)?.slice(0, 80)})`;
  let message: string;
  let at = segs;
  switch (err.keyword) {
    case 'additionalProperties': {
      const key = String((err.params as { additionalProperty: string }).additionalProperty);
      at = [...segs, key];
      message = 'is not a known key';
      break;
    }
    case 'required':
      at = [...segs, (err.params as { missingProperty: string }).missingProperty];
      message = 'is required';
      break;
    case 'anyOf': {
      const schema = err.parentSchema as { anyOf?: Array<{ const?: unknown }>; description?: string } | undefined;
      const consts = schema?.anyOf?.map((b) => b.const).filter((c) => c !== undefined);
      message = consts?.length
        ? `must be one of ${consts.join(', ')}${got(err.data)}`
        : `must be ${schema?.description ?? 'a valid value'}${got(err.data)}`;
      break;
    }
    case 'pattern': {
      const hint = (err.parentSchema as { hint?: string } | undefined)?.hint;
      message = `must be ${hint ?? `a string matching ${String(err.params.pattern)}`}${got(err.data)}`;
      break;
    }
    default: {
      // A bound with a reason (`why` in the schema) says it, so the fix is clear.
      const why = (err.parentSchema as { why?: string } | undefined)?.why;
      message = `${err.message ?? 'is invalid'}${got(err.data)}${why ? `: ${why}` : ''}`;
    }
  }
  return { file, line: lineOf(nodeAt(doc, at)), path: formatPath(at), message };
}
