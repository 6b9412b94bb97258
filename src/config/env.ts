/**
 * `${VAR}` and `${VAR:-default}` substitution on the YAML document, in place, so that
 * every value keeps its source position for error messages.
 */
import { parseDocument, visit, type Document, type Scalar } from 'yaml';

const REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const WHOLE_REF = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}$/;

/** A substitution failure: the variable and the node it stands in. */
export interface EnvProblem {
  node: Scalar;
  message: string;
}

/**
 * Replaces references in every string scalar of `doc`. A plain (unquoted) scalar that is
 * exactly one reference is re-read as a YAML scalar, so `port: ${PORT:-8080}` is a number
 * as if typed there; a quoted one stays a string. A missing variable with no default is
 * a problem reported at its node (nothing is substituted for it).
 */
export function substituteEnv(doc: Document, env: NodeJS.ProcessEnv): EnvProblem[] {
  const problems: EnvProblem[] = [];
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      const result = substituteScalar(node.value, node.type === 'PLAIN', env);
      if ('problems' in result) {
        for (const message of result.problems) problems.push({ node, message });
      } else {
        node.value = result.value;
      }
    },
  });
  return problems;
}

/** The value of one string scalar `raw` after substitution (`plain`: it was unquoted), or why it cannot be substituted. */
function substituteScalar(raw: string, plain: boolean, env: NodeJS.ProcessEnv): { value: unknown } | { problems: string[] } {
  const missing: string[] = [];
  const replaced = raw.replace(REF, (_m, name: string, dflt: string | undefined) => {
    const v = env[name];
    if (v !== undefined) return v;
    if (dflt !== undefined) return dflt;
    missing.push(name);
    return '';
  });
  if (missing.length) return { problems: missing.map((name) => `environment variable ${name} is not set and has no default`) };
  if (!plain || !WHOLE_REF.test(raw)) return { value: replaced };
  const reread = rereadScalar(replaced);
  if (reread === INVALID) {
    // Never YAML's own error: its message quotes the value (often a secret) with a caret.
    return { problems: [`environment variable ${WHOLE_REF.exec(raw)?.[1]} does not read as a YAML value here; quote the reference ("\${...}") to take it as a string`] };
  }
  if (typeof reread === 'string' && reread !== replaced) {
    // A `#` comment, quotes or surrounding spaces in the value: read unquoted it would be
    // other text than the variable holds (a secret silently cut at ` #`).
    return { problems: [`environment variable ${WHOLE_REF.exec(raw)?.[1]} does not read as the same text unquoted (a " #", quotes or surrounding spaces); quote the reference ("\${...}") to take it verbatim`] };
  }
  return { value: isScalarValue(reread) ? reread : replaced };
}

const INVALID = Symbol('invalid');

/**
 * `text` read as a YAML value, or {@link INVALID} when it does not parse. Errors and warnings
 * are kept from the caller and the process: their messages quote `text`.
 */
function rereadScalar(text: string): unknown {
  try {
    const doc = parseDocument(text === '' ? '""' : text, { prettyErrors: false, logLevel: 'silent' });
    if (doc.errors.length || doc.warnings.length) return INVALID;
    return doc.toJS();
  } catch {
    return INVALID; // e.g. an unresolved alias (`*x`)
  }
}

function isScalarValue(v: unknown): v is string | number | boolean {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

