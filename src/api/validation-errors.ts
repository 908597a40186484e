/**
 * Ajv's validation errors as messages a person can act on, built from the route's own schema:
 * which field, where (body, query, path, header), and what is allowed — the enum's values, the
 * known field nearest to a misspelt one, the form a patterned string takes (its schema
 * `description`, whose first sentence names the form). One place for every route: the error
 * handler calls `validationMessage` for any request Fastify refused on validation.
 *
 * Values the client sent are never echoed (one might be a credential pasted into the wrong
 * field); field names are, trimmed and quoted when they are not plain identifiers.
 */

/** The subset of an Ajv ErrorObject used here. */
export interface AjvError {
  keyword: string;
  instancePath: string;
  schemaPath: string;
  params: Record<string, unknown>;
  message?: string;
}

type Context = 'body' | 'querystring' | 'params' | 'headers' | string;
type JsonSchema = Record<string, unknown>;

const WHERE: Record<string, string> = { body: 'field', querystring: 'query parameter', params: 'path parameter', headers: 'header' };
const WHOLE: Record<string, string> = { body: 'the body', querystring: 'the query string', params: 'the path parameters', headers: 'the headers' };

/**
 * One message for a failed validation (Fastify stops at the first error: `allErrors: false`).
 * `schema` is the route's schema for `context` (routeOptions.schema.body, .querystring, …);
 * `data` the request part as parsed (to suggest a present-but-misspelt field for a missing one).
 */
export function validationMessage(context: Context, errors: readonly AjvError[], schema: unknown, data: unknown): string {
  const err = errors[0];
  if (!err) return `${WHOLE[context] ?? context} is not valid`;
  const where = WHERE[context] ?? context;
  const parent = schemaAt(schema, err.schemaPath.split('/').slice(0, -1).join('/'));
  const path = pathOf(err.instancePath);
  const subject = path ? `${where} ${path}` : (WHOLE[context] ?? context);

  switch (err.keyword) {
    case 'additionalProperties': {
      const name = String(err.params.additionalProperty ?? '');
      const known = Object.keys(propertiesOf(parent));
      const full = joinPath(path, name);
      const best = closest(name, known);
      if (best) return `unknown ${where} ${full}; did you mean ${joinPath(path, best)}?`;
      if (known.length === 0) return `unknown ${where} ${full}: ${context === 'body' ? 'this request takes no fields (send no body, or {})' : `this request takes no ${where}s`}`;
      return `unknown ${where} ${full}; known ${where}s: ${known.join(', ')}`;
    }
    case 'required': {
      const name = String(err.params.missingProperty ?? '');
      const given = Object.keys(objectAt(data, err.instancePath));
      const known = new Set(Object.keys(propertiesOf(parent)));
      const misspelt = given.find((g) => !known.has(g) && closest(g, [name]));
      return `${where} ${joinPath(path, name)} is required${misspelt ? ` (did you mean it instead of ${joinPath(path, misspelt)}?)` : ''}`;
    }
    case 'enum':
      return `${subject} must be one of ${(Array.isArray(err.params.allowedValues) ? err.params.allowedValues : (parent?.enum as unknown[]) ?? []).map(String).join(', ')}`;
    case 'const':
      return `${subject} must be ${JSON.stringify(err.params.allowedValue)}`;
    case 'pattern':
      return `${subject} must be ${formOf(parent) ?? `a string matching ${String(err.params.pattern)}`}`;
    case 'type':
      return `${subject} must be ${typeNames(err.params.type, context === 'body' && !path)}`;
    case 'minLength':
    case 'maxLength':
      return `${subject} must be ${lengthRange(parent, err)}`;
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `${subject} must be ${numberRange(parent, err)}`;
    default:
      return `${subject} ${err.message ?? 'is not valid'}`;
  }
}

/**
 * The known name nearest to `name` by edit distance (case-insensitive, a transposition counts
 * one), when it is near enough to be a slip of the keyboard rather than another word: at most a
 * third of the longer name's length, and at least one edit allowed.
 */
export function closest(name: string, known: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(lower, k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  if (!best || name.length > 64) return undefined;
  return bestDistance <= Math.max(1, Math.floor(Math.max(name.length, best.length) / 3)) ? best : undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

/** The subschema at an Ajv schemaPath (`#/properties/status/enum`) of the route's schema. */
function schemaAt(schema: unknown, schemaPath: string): JsonSchema | undefined {
  let node: unknown = schema;
  for (const raw of schemaPath.replace(/^#\/?/, '').split('/').filter(Boolean)) {
    if (!node || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[raw.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return node && typeof node === 'object' ? (node as JsonSchema) : undefined;
}

function propertiesOf(schema: JsonSchema | undefined): Record<string, unknown> {
  const p = schema?.properties;
  return p && typeof p === 'object' ? (p as Record<string, unknown>) : {};
}

function objectAt(data: unknown, instancePath: string): Record<string, unknown> {
  let node = data;
  for (const raw of instancePath.split('/').filter(Boolean)) {
    if (!node || typeof node !== 'object') return {};
    node = (node as Record<string, unknown>)[raw.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return node && typeof node === 'object' && !Array.isArray(node) ? (node as Record<string, unknown>) : {};
}

/** `/a/0/b` → `a[0].b`, each name shown safely. */
function pathOf(instancePath: string): string {
  let out = '';
  for (const raw of instancePath.split('/').filter(Boolean)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out = /^\d+$/.test(seg) ? `${out}[${seg}]` : joinPath(out, seg);
  }
  return out;
}

function joinPath(base: string, name: string): string {
  const shown = /^[A-Za-z_$][\w$-]{0,63}$/.test(name) ? name : JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name);
  return base ? `${base}.${shown}` : shown;
}

/** A patterned string's expected form: the first sentence of its description. */
function formOf(schema: JsonSchema | undefined): string | undefined {
  const d = schema?.description;
  if (typeof d !== 'string' || !d) return undefined;
  const end = d.indexOf('. ');
  return end > 0 ? d.slice(0, end) : d.replace(/\.$/, '');
}

const TYPE_NAMES: Record<string, string> = { string: 'a string', integer: 'an integer', number: 'a number', boolean: 'true or false', object: 'a JSON object', array: 'an array', null: 'null' };

function typeNames(type: unknown, wholeBody: boolean): string {
  const types = (Array.isArray(type) ? type : String(type).split(',')).map(String);
  const names = types.map((t) => (t === 'null' && wholeBody ? 'empty' : (TYPE_NAMES[t] ?? t)));
  return names.join(' or ');
}

function lengthRange(schema: JsonSchema | undefined, err: AjvError): string {
  const min = typeof schema?.minLength === 'number' ? schema.minLength : undefined;
  const max = typeof schema?.maxLength === 'number' ? schema.maxLength : undefined;
  if (min !== undefined && max !== undefined) return `${min} to ${max} characters long`;
  return err.keyword === 'minLength' ? `at least ${String(err.params.limit)} characters long` : `at most ${String(err.params.limit)} characters long`;
}

function numberRange(schema: JsonSchema | undefined, err: AjvError): string {
  const kind = schema?.type === 'integer' ? 'an integer' : 'a number';
  const min = typeof schema?.minimum === 'number' ? schema.minimum : undefined;
  const max = typeof schema?.maximum === 'number' ? schema.maximum : undefined;
  if (min !== undefined && max !== undefined) return `${kind} from ${min} to ${max}`;
  return `${kind} ${String(err.params.comparison ?? '')} ${String(err.params.limit)}`.replace(/\s+/g, ' ');
}
