// ConfigError: one problem in one document of one manifest file, and the wording of validation
// messages. Users see the text form `file:line: field: message` in logs and in
// `ambit ctl analyze`, and tests check it exactly, so the wording lives here, in one place.
import type * as z from 'zod';

/** CONFIG_UNKNOWN_FIELD is a warning: a field the upstream API does not define (known-fields.ts). */
export type ConfigErrorCode = 'CONFIG_INVALID' | 'CONFIG_YAML' | 'CONFIG_UNKNOWN_FIELD';

export interface ConfigErrorInit {
  code?: ConfigErrorCode;
  file: string;
  /** 1-based index of the YAML document in the file; 0 for problems with the whole file. */
  document: number;
  /** Dotted field path such as `spec.ports[0].port`; empty when the whole document is at fault. */
  path?: string;
  message: string;
  /** 1-based line, when the problem could be placed in the text. */
  line?: number;
  column?: number;
  kind?: string;
  name?: string;
  namespace?: string;
}

/** A value, not an exception: loading collects these and carries on with the other documents. */
export class ConfigError {
  readonly code: ConfigErrorCode;
  readonly file: string;
  readonly document: number;
  readonly path: string;
  readonly message: string;
  readonly line?: number;
  readonly column?: number;
  readonly kind?: string;
  readonly name?: string;
  readonly namespace?: string;

  constructor(init: ConfigErrorInit) {
    this.code = init.code ?? 'CONFIG_INVALID';
    this.file = init.file;
    this.document = init.document;
    this.path = init.path ?? '';
    this.message = init.message;
    if (init.line !== undefined) this.line = init.line;
    if (init.column !== undefined) this.column = init.column;
    if (init.kind !== undefined) this.kind = init.kind;
    if (init.name !== undefined) this.name = init.name;
    if (init.namespace !== undefined) this.namespace = init.namespace;
  }

  /**
   * `file:line: field: message` — `file:N` is read as line N by every reader (and editors jump
   * there), so a document number is never printed that way: without a line it is
   * `file (document N)`. A syntax error has no field: `file:line:column: message`.
   */
  toString(): string {
    if (this.code === 'CONFIG_YAML' && this.line !== undefined && !this.path) {
      const col = this.column !== undefined ? `:${this.column}` : '';
      return `${this.file}:${this.line}${col}: ${this.message}`;
    }
    return `${locationOf(this)}: ${this.where()}: ${this.message}`;
  }

  private where(): string {
    if (this.path) return this.path;
    return this.document > 0 ? '(document)' : '(file)';
  }
}

/** Where in a file: `file:line` when the line is known, else `file (document N)`, else `file`. */
export function locationOf(p: { file: string; document?: number; line?: number }): string {
  if (p.line !== undefined) return `${p.file}:${p.line}`;
  return p.document ? `${p.file} (document ${p.document})` : p.file;
}

/** `['spec', 'ports', 0, 'port']` → `spec.ports[0].port`; odd keys are quoted: `labels["istio.io/rev"]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && /^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

/** How a YAML value reads to the person who wrote it: "the string "80"", "a list", "null". */
export function describeValue(v: unknown): string {
  if (v === null || v === undefined) return 'nothing (null)';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `the string ${quote(v)}`;
  if (typeof v === 'number') return `the number ${v}`;
  if (typeof v === 'boolean') return String(v);
  if (v instanceof Uint8Array) return 'binary data';
  if (typeof v === 'object') return 'a mapping';
  return typeof v;
}

/** JSON-quotes a value for a message, cut short so one bad field cannot flood a log line. */
export function quote(v: unknown): string {
  const s = typeof v === 'string' ? v : String(v);
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 61)}...` : s);
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
};

/**
 * The wording for zod's generic issues, passed as the per-parse error map. Schemas give their own
 * message where the rule needs explaining (names, ports, IPs); this covers types, enums and sizes.
 */
export function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
  const input = iss.input;
  switch (iss.code) {
    case 'invalid_type': {
      if (input === undefined) return 'required';
      const expected = EXPECTED[iss.expected] ?? iss.expected;
      if (typeof input === 'number' && !Number.isFinite(input)) return `expected ${expected}, got ${input}`;
      return `expected ${expected}, got ${describeValue(input)}${typeHint(iss.expected, input)}`;
    }
    case 'invalid_value': {
      const values = iss.values.map(String);
      // Enums are case-sensitive in Kubernetes; "strict" for STRICT is the usual slip.
      const near =
        typeof input === 'string' ? values.find((v) => v.toLowerCase() === input.toLowerCase()) : undefined;
      return `must be one of ${values.join(', ')} (got ${describeValue(input)}${near ? `; did you mean ${near}?` : ''})`;
    }
    case 'too_small':
      return sizeMessage('at least', iss.origin, Number(iss.minimum), input);
    case 'too_big':
      return sizeMessage('at most', iss.origin, Number(iss.maximum), input);
    case 'invalid_key': {
      // The path already ends in the key, so the rule's own message says enough.
      return iss.issues[0]?.message ?? `key ${quote(input)} is not allowed`;
    }
    case 'invalid_union':
      return `has the wrong type (got ${describeValue(input)})`;
    default:
      return undefined;
  }
}

// The commonest YAML slips: an unquoted number or boolean where Kubernetes wants a string,
// a quoted number where it wants a number, and a single value where it wants a list.
function typeHint(expected: string, input: unknown): string {
  if (expected === 'string' && (typeof input === 'number' || typeof input === 'boolean')) {
    return `; quote it: "${String(input)}"`;
  }
  if ((expected === 'number' || expected === 'int') && typeof input === 'string' && /^-?\d+$/.test(input)) {
    return '; remove the quotes';
  }
  if (expected === 'array' && (typeof input === 'string' || typeof input === 'number')) {
    return `; write a list: [${typeof input === 'string' ? quote(input) : input}]`;
  }
  return '';
}

function sizeMessage(bound: string, origin: string, n: number, input: unknown): string {
  switch (origin) {
    case 'string':
      return n === 1 && bound === 'at least' ? 'must not be empty' : `must be ${bound} ${n} characters long`;
    case 'array':
    case 'set':
      return n === 1 && bound === 'at least' ? 'must not be empty' : `must have ${bound} ${n} items`;
    default:
      return `must be ${bound} ${n} (got ${describeValue(input)})`;
  }
}
