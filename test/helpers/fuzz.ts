import fc from 'fast-check';
import type { InjectOptions } from 'fastify';

/**
 * What the API fuzz files (test/api/fuzz.test.ts, fuzz-fleet.test.ts) share: the requests' small
 * generators, turning a generated body into inject options, the property every answer must hold,
 * and the knobs to explore further than `npm test` does.
 */

/** How many requests a property sends: FUZZ_RUNS raises it to explore, else the file's own count. */
export function fuzzRuns(fileDefault: number): number {
  const n = Number(process.env.FUZZ_RUNS);
  return Number.isInteger(n) && n > 0 ? n : fileDefault;
}

/**
 * The seed: fixed, so a file passes or fails for the code and not the dice (FUZZ_SEED picks
 * another walk; a failure prints the seed and path fast-check needs to replay it).
 */
export function fuzzSeed(): number {
  const n = Number(process.env.FUZZ_SEED);
  return Number.isInteger(n) ? n : 20261207;
}

export const printable = (maxLength: number) => fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength });
export const hex = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
export const withQuery = (path: string, q: string): string => (q ? `${path}?${q}` : path);

/** A generated body: JSON to serialise, raw text with a content type, or none at all. */
export type FuzzBody = { json?: unknown; raw?: string; type?: string };

export function payloadOf(b: FuzzBody, hdrs: Record<string, string>): Partial<InjectOptions> {
  if ('raw' in b && b.raw !== undefined) return { payload: b.raw, headers: { ...hdrs, 'content-type': b.type ?? 'application/json' } };
  if ('json' in b) {
    const text = JSON.stringify(b.json);
    return text === undefined ? { headers: hdrs } : { payload: text, headers: { 'content-type': 'application/json', ...hdrs } };
  }
  return { headers: hdrs };
}

export interface Answer {
  statusCode: number;
  body: string;
}

/**
 * The property of every fuzzed answer: never a 5xx, and every 4xx carries `{error: {code,
 * message}}` with a non-empty message. Throws, naming the request, otherwise. `seen` counts the
 * status codes per test, so a file can check its generators reached the handlers.
 */
export class AnswerJudge {
  readonly seen = new Map<string, Map<number, number>>();
  served = 0;
  current = '';

  judge(what: string, a: Answer): void {
    this.served++;
    const counts = this.seen.get(this.current) ?? new Map<number, number>();
    counts.set(a.statusCode, (counts.get(a.statusCode) ?? 0) + 1);
    this.seen.set(this.current, counts);
    if (a.statusCode >= 500) throw new Error(`${what}: ${a.statusCode} ${a.body.slice(0, 300)}`);
    if (a.statusCode < 400) return;
    let parsed: { error?: { code?: unknown; message?: unknown } };
    try {
      parsed = JSON.parse(a.body);
    } catch {
      throw new Error(`${what}: ${a.statusCode} without a JSON body: ${a.body.slice(0, 200)}`);
    }
    if (typeof parsed.error?.code !== 'string' || typeof parsed.error?.message !== 'string' || !parsed.error.message) {
      throw new Error(`${what}: ${a.statusCode} without {error:{code,message}}: ${a.body.slice(0, 200)}`);
    }
  }
}
