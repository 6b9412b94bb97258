/**
 * A fast reader for the plain YAML that large configs are written in, beside the `yaml`
 * package. `yaml` builds a token stream, a CST and a Document with positions for every
 * node: ~1.8 s of CPU and ~200 MB for 10 000 routes (2.3 MB), most of a `tokengate check`.
 * This reader takes one pass over the text and builds the plain values directly, with the
 * line of every value for placing lint warnings (10 000 routes: ~0.1 s).
 *
 * It reads only a strict subset of YAML 1.2 and gives up (returns `null`) on anything
 * else, and the caller then reads the text with `yaml`, which also reports every error
 * with its position. What it reads, it reads as `yaml` does (core schema, unique keys);
 * a differential test holds the two to the same values and lines. The subset:
 *
 * - block mappings and sequences by indentation (spaces only), a mapping inside a sequence
 *   item (`- id: x`), a sequence under a key at the key's indentation;
 * - flow mappings and sequences closed on their own line (`{ a: b, c: [d, e] }`);
 * - single-line scalars: plain, `'single'` and `"double"` without escapes; plain scalars
 *   that could be anything but a string are read only when they are `true`, `false`,
 *   `null`, `~` or a plain decimal integer;
 * - `#` comments and blank lines.
 *
 * Not read (the caller falls back): anchors, aliases, tags, block scalars (`|`, `>`),
 * multi-line scalars or flow collections, explicit keys (`?`), directives, several
 * documents, tabs, CR, escapes, duplicate or non-string keys, and any `${VAR}` reference
 * that cannot be substituted (so that the caller reports it with its position).
 */

/** A key path: mapping keys and sequence indexes. */
export type Seg = string | number;

/** The plain values of a document and the line of each. */
export interface PlainYaml {
  data: unknown;
  /** The 1-based line of the deepest value along `path` that the document has. */
  lineAt(path: readonly Seg[]): number;
}

/**
 * The value of a scalar holding `${`: its text after substitution (`plain`: it was
 * unquoted), or {@link GIVE_UP} when it cannot be substituted.
 */
export type Substitute = (raw: string, plain: boolean) => unknown;

/** Returned by a {@link Substitute} that cannot substitute a reference. */
export const GIVE_UP: unique symbol = Symbol('give up');

/** Thrown inside the reader when the text leaves the subset. */
class Unsupported extends Error {}

// Tabs, CR, other controls, NEL, LS/PS and BOM: all are left to `yaml`.
const UNSUPPORTED_CHARS = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]/;
// Document markers and directives at the start of a line.
const DOCUMENT_MARKS = /^(?:---|\.\.\.|%)/m;
// A plain scalar starting with one of these is an indicator or may be one.
const INDICATOR_START = /^[-?:,[\]{}#&*!|>'"%@`]/;
// The core schema's plain scalars other than strings (yaml's schema/core and common/null):
// null and booleans in every spelling; numbers are read here only as plain decimal integers.
const CORE_NULL = /^(?:~|[Nn]ull|NULL)?$/;
const CORE_BOOL = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/;
const CORE_NUMBER = /^(?:0o[0-7]+|[-+]?[0-9]+|0x[0-9a-fA-F]+|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+|[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*))$/;
const DECIMAL = /^(?:0|[1-9][0-9]{0,14})$/;
/** `yaml` refuses implicit keys longer than 1024 characters; such keys are left to it. */
const MAX_KEY = 1000;
/** Deeper nesting is left to `yaml`, which is not recursive in the same way. */
const MAX_DEPTH = 100;

/**
 * Reads `text` if it lies in the subset (see the module comment); `null` otherwise.
 * `substitute` is called for every scalar value containing `${`.
 */
export function readPlainYaml(text: string, substitute: Substitute): PlainYaml | null {
  if (UNSUPPORTED_CHARS.test(text) || DOCUMENT_MARKS.test(text)) return null;
  try {
    return new Reader(text, substitute).document();
  } catch (e) {
    if (e instanceof Unsupported) return null;
    throw e;
  }
}

const unsupported = (): never => {
  throw new Unsupported();
};

/**
 * Lines of the values of one mapping (key, line, key, line, ...: searched only to place a
 * warning) or of one sequence (by index).
 */
type ChildLines = Array<string | number>;

const NL = 10;
const SPACE = 32;
const DQUOTE = 34;
const HASH = 35;
const SQUOTE = 39;
const COMMA = 44;
const COLON = 58;
const OPEN_SEQ = 91;
const CLOSE_SEQ = 93;
const OPEN_MAP = 123;
const CLOSE_MAP = 125;

class Reader {
  private readonly text: string;
  private readonly substitute: Substitute;
  /** Start of the current line. */
  private pos = 0;
  /** 1-based number of the current line. */
  private line = 1;
  /** Indentation of the current line (spaces). */
  private indent = 0;
  /** The lines of the values of each mapping and sequence, by the object built for it. */
  private readonly lines = new Map<object, ChildLines>();
  /** Where the last quoted scalar, flow item or flow collection read ends. */
  private end = 0;
  /** Whether the last flow item read was a plain scalar. */
  private plainKey = false;

  constructor(text: string, substitute: Substitute) {
    this.text = text;
    this.substitute = substitute;
  }

  document(): PlainYaml {
    if (!this.nextContent()) unsupported();
    const rootLine = this.line;
    const data = this.blockNode(this.indent, this.pos + this.indent, 0);
    if (this.nextContent()) unsupported(); // content left at a lesser indentation than where it ended
    const lines = this.lines;
    return {
      data,
      lineAt(path) {
        let node: unknown = data;
        let line = rootLine;
        for (const s of path) {
          const children = node !== null && typeof node === 'object' ? lines.get(node) : undefined;
          if (!children || Array.isArray(node) !== (typeof s === 'number')) break;
          const at = typeof s === 'number' ? s : children.findIndex((k, i) => i % 2 === 0 && k === s) + 1;
          if (at >= children.length || (typeof s === 'string' && at === 0)) break;
          line = children[at] as number;
          node = (node as Record<Seg, unknown>)[s];
        }
        return line;
      },
    };
  }

  /**
   * Moves to the next line with content (skipping blank and comment-only lines), setting
   * `line` and `indent`; false at the end of the text.
   */
  private nextContent(): boolean {
    const t = this.text;
    while (this.pos < t.length) {
      let i = this.pos;
      while (t.charCodeAt(i) === 32) i++;
      if (i < t.length && t[i] !== '\n' && t[i] !== '#') {
        this.indent = i - this.pos;
        return true;
      }
      const nl = t.indexOf('\n', i);
      if (nl === -1) {
        this.pos = t.length;
        break;
      }
      this.pos = nl + 1;
      this.line++;
    }
    return false;
  }

  /** Moves past the rest of the current line from `i`, which must hold only spaces and a comment. */
  private endLine(i: number): void {
    const t = this.text;
    while (t.charCodeAt(i) === 32) i++;
    if (i < t.length && t[i] !== '\n') {
      // A comment needs a space before it.
      if (t[i] !== '#' || t[i - 1] !== ' ') unsupported();
      i = t.indexOf('\n', i);
      if (i === -1) i = t.length;
    }
    this.pos = Math.min(i + 1, t.length);
    this.line++;
  }

  /**
   * The node starting at column `at` of a line of its own (at `start`): a block sequence or
   * mapping with its children below, or a value on that line alone.
   */
  private blockNode(at: number, start: number, depth: number): unknown {
    if (depth > MAX_DEPTH) unsupported();
    if (this.dashAt(start)) return this.blockSeq(at, depth);
    return this.keyAt(start) ? this.blockMap(at, start, depth) : this.inlineValue(start, depth);
  }

  /** Whether a sequence item's `-` stands at `i`. */
  private dashAt(i: number): boolean {
    const t = this.text;
    return t[i] === '-' && (i + 1 === t.length || t[i + 1] === ' ' || t[i + 1] === '\n');
  }

  /** A block sequence whose dashes stand at column `at`; the current line is its first item. */
  private blockSeq(at: number, depth: number): unknown[] {
    const t = this.text;
    const out: unknown[] = [];
    const lines: ChildLines = [];
    this.lines.set(out, lines);
    for (;;) {
      let i = this.pos + at + 1;
      while (t.charCodeAt(i) === 32) i++;
      if (i >= t.length || t[i] === '\n' || t[i] === '#') {
        // `-` alone: the item is the block node on the following lines.
        this.endLine(i);
        if (!this.nextContent() || this.indent <= at) unsupported(); // an empty item (null) is left to yaml
        lines.push(this.line);
        out.push(this.blockNode(this.indent, this.pos + this.indent, depth + 1));
      } else {
        lines.push(this.line);
        if (this.dashAt(i)) unsupported(); // `- - x`
        out.push(this.keyAt(i) ? this.blockMap(i - this.pos, i, depth + 1) : this.inlineValue(i, depth));
      }
      if (!this.nextContent() || this.indent < at) return out;
      if (this.indent > at) unsupported(); // more indented content after an item: a continued scalar
      // A key where the next item would be: the mapping the sequence stands in goes on.
      if (!this.dashAt(this.pos + at)) return out;
    }
  }

  /**
   * A block mapping whose keys stand at column `at`; the first key is at `start` on the
   * current line (after a `- ` when the mapping is a sequence item).
   */
  private blockMap(at: number, start: number, depth: number): Record<string, unknown> {
    const t = this.text;
    const out: Record<string, unknown> = {};
    const lines: ChildLines = [];
    this.lines.set(out, lines);
    let i = start;
    for (;;) {
      const key = this.keyAt(i);
      if (!key) unsupported();
      const { name, end } = key as { name: string; end: number };
      if (Object.hasOwn(out, name)) unsupported(); // yaml reports the duplicate
      let j = end;
      while (t.charCodeAt(j) === 32) j++;
      if (j >= t.length || t[j] === '\n' || t[j] === '#') {
        // `key:` then the value on the following lines, or nothing (null).
        const keyLine = this.line;
        this.endLine(j);
        const more = this.nextContent();
        if (more && (this.indent > at || (this.indent === at && this.dashAt(this.pos + at)))) {
          lines.push(name, this.line);
          out[name] = this.blockNode(this.indent, this.pos + this.indent, depth + 1);
          if (!this.nextContent() || this.indent < at) return out;
        } else {
          lines.push(name, keyLine);
          out[name] = null;
          if (!more || this.indent < at) return out;
        }
      } else {
        if (j === end) unsupported(); // `key:value` is not a key
        lines.push(name, this.line);
        out[name] = this.inlineValue(j, depth);
        if (!this.nextContent() || this.indent < at) return out;
      }
      if (this.indent > at) unsupported(); // a continued scalar, or a misplaced key
      i = this.pos + at;
    }
  }

  /**
   * The key of a block mapping entry at `i` (plain or quoted, then `:` and a space or the
   * end of the line): its name and where the `:` ends; `null` if the line holds no key there.
   */
  private keyAt(i: number): { name: string; end: number } | null {
    const t = this.text;
    const c = t[i];
    if (c === '[' || c === '{') return null; // a flow collection (as a key, it is left to yaml)
    if (c === '"' || c === "'") {
      const value = this.quoted(i);
      const after = this.end;
      if (t[after] !== ':' || !(after + 1 >= t.length || t[after + 1] === ' ' || t[after + 1] === '\n')) return null;
      return { name: this.key(value, false), end: after + 1 };
    }
    let j = i;
    for (;;) {
      const nl = t[j];
      if (j >= t.length || nl === '\n') return null;
      if (nl === '#' && t[j - 1] === ' ') return null;
      if (nl === ':' && (j + 1 >= t.length || t[j + 1] === ' ' || t[j + 1] === '\n')) break;
      j++;
    }
    return { name: this.key(t.slice(i, j).trimEnd(), true), end: j + 1 };
  }

  /** A mapping key's text, refused (falling back) unless it is surely the string it reads. */
  private key(name: string, plain: boolean): string {
    if (name.length > MAX_KEY || name === '__proto__' || name.includes('${')) unsupported();
    if (plain && (INDICATOR_START.test(name) || CORE_NULL.test(name) || CORE_BOOL.test(name) || CORE_NUMBER.test(name))) unsupported();
    return name;
  }

  /** A value on the rest of the line from `i`: a flow collection or a scalar; moves to the next line. */
  private inlineValue(i: number, depth: number): unknown {
    const t = this.text;
    const c = t.charCodeAt(i);
    if (c === OPEN_SEQ || c === OPEN_MAP) {
      const value = this.flow(i, depth + 1);
      this.endLine(this.end);
      return value;
    }
    if (c === DQUOTE || c === SQUOTE) {
      const value = this.quoted(i);
      this.endLine(this.end);
      return this.scalar(value, false);
    }
    // A plain scalar: to the end of the line or a comment.
    let j = i;
    while (j < t.length && t.charCodeAt(j) !== NL && !(t.charCodeAt(j) === HASH && t.charCodeAt(j - 1) === SPACE)) j++;
    const raw = t.slice(i, j).trimEnd();
    // `a: b` inside a value is a nested mapping (an error in yaml); a trailing `:` a key.
    if (raw.includes(': ') || raw.endsWith(':')) unsupported();
    this.endLine(j);
    return this.plain(raw);
  }

  /** A single-line quoted scalar at `i`: its text; {@link end} is set after the closing quote. */
  private quoted(i: number): string {
    const t = this.text;
    const q = t[i];
    const nl = t.indexOf('\n', i);
    let value = '';
    let j = i + 1;
    for (;;) {
      const k = t.indexOf(q, j);
      if (k === -1 || (nl !== -1 && nl < k)) unsupported(); // unclosed, or folded over lines
      value += t.slice(j, k);
      if (q === "'" && t[k + 1] === "'") {
        value += "'";
        j = k + 2;
        continue;
      }
      j = k + 1;
      break;
    }
    if (q === '"' && value.includes('\\')) unsupported();
    this.end = j;
    return value;
  }

  /** A flow collection at `i`, closed on the same line; {@link end} is set after it. */
  private flow(i: number, depth: number): unknown {
    if (depth > MAX_DEPTH) unsupported();
    const t = this.text;
    const isMap = t.charCodeAt(i) === OPEN_MAP;
    const close = isMap ? CLOSE_MAP : CLOSE_SEQ;
    const out: Record<string, unknown> | unknown[] = isMap ? {} : [];
    const lines: ChildLines = [];
    this.lines.set(out, lines);
    let j = this.skipSpaces(i + 1);
    if (t.charCodeAt(j) === close) {
      this.end = j + 1;
      return out;
    }
    for (;;) {
      if (isMap) {
        const raw = this.flowItem(j, depth, true) as string;
        j = this.end;
        if (t.charCodeAt(j) !== COLON || t.charCodeAt(j + 1) !== SPACE) unsupported();
        const name = this.key(raw, this.plainKey);
        if (Object.hasOwn(out, name)) unsupported();
        const value = this.flowItem(this.skipSpaces(j + 1), depth, false);
        lines.push(name, this.line);
        (out as Record<string, unknown>)[name] = value;
      } else {
        const value = this.flowItem(j, depth, false);
        if (t.charCodeAt(this.end) === COLON) unsupported(); // an implicit key in a flow sequence
        lines.push(this.line);
        (out as unknown[]).push(value);
      }
      j = this.skipSpaces(this.end);
      const c = t.charCodeAt(j);
      if (c === close) {
        this.end = j + 1;
        return out;
      }
      if (c !== COMMA) unsupported();
      j = this.skipSpaces(j + 1);
      if (t.charCodeAt(j) === close) unsupported(); // a trailing comma
    }
  }

  private skipSpaces(i: number): number {
    while (this.text.charCodeAt(i) === SPACE) i++;
    return i;
  }

  /**
   * One item of a flow collection at `i`: a nested collection, a quoted or a plain scalar;
   * {@link end} is set after it. `key`: the item is a mapping key, and its raw text is
   * returned (to be checked as a key; {@link plainKey} tells whether it was quoted).
   */
  private flowItem(i: number, depth: number, key: boolean): unknown {
    const t = this.text;
    const c = t.charCodeAt(i);
    if (c === OPEN_SEQ || c === OPEN_MAP) {
      if (key) unsupported();
      return this.flow(i, depth + 1);
    }
    if (c === DQUOTE || c === SQUOTE) {
      const value = this.quoted(i);
      this.end = this.skipSpaces(this.end);
      this.plainKey = false;
      return key ? value : this.scalar(value, false);
    }
    // A plain scalar in flow context ends at a flow indicator, a `:` before a space or
    // indicator, a comment, or the end of the line (which leaves the collection open).
    let j = i;
    for (;; j++) {
      const ch = t.charCodeAt(j);
      if (ch === NL || j >= t.length) unsupported();
      if (ch === COMMA || ch === OPEN_SEQ || ch === CLOSE_SEQ || ch === OPEN_MAP || ch === CLOSE_MAP) break;
      if (ch === COLON) {
        const next = t.charCodeAt(j + 1);
        if (next === SPACE || next === COMMA || next === OPEN_SEQ || next === CLOSE_SEQ || next === OPEN_MAP || next === CLOSE_MAP || next === NL || j + 1 >= t.length) break;
      }
      if (ch === HASH && t.charCodeAt(j - 1) === SPACE) unsupported();
    }
    this.end = j;
    this.plainKey = true;
    const raw = t.slice(i, j).trimEnd();
    return key ? raw : this.plain(raw);
  }

  /** A plain scalar's value (core schema), in the forms read here. */
  private plain(raw: string): unknown {
    if (raw === '' || INDICATOR_START.test(raw)) unsupported();
    if (raw.includes('${')) return this.scalar(raw, true);
    if (CORE_NULL.test(raw)) return null;
    if (CORE_BOOL.test(raw)) return raw[0] === 't' || raw[0] === 'T';
    if (CORE_NUMBER.test(raw)) return DECIMAL.test(raw) ? Number(raw) : unsupported();
    return raw;
  }

  /** A string scalar's value, after `${VAR}` substitution. */
  private scalar(text: string, plain: boolean): unknown {
    if (!text.includes('${')) return text;
    const v = this.substitute(text, plain);
    if (v === GIVE_UP) unsupported();
    return v;
  }
}
