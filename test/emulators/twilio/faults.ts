/**
 * Injected failures and limits. Random choices come from a seeded PRNG so a failing run can be
 * replayed with the same seed.
 */

/** 429/500/503 answer Twilio-style JSON; 'reset' destroys the socket; 'timeout' never answers. */
/** 401 stands for a credential Twilio stops accepting for a moment (answered 20003 like a bad one). */
export type FaultKind = 401 | 429 | 500 | 503 | 'reset' | 'timeout';

/** Restricts a rule to some requests, e.g. `{method: 'POST', path: '/Keys\\.json$'}`. */
export interface FaultMatch {
  method?: string;
  /** Regular expression source, tested against the path (no query string). */
  path?: string;
}

export interface FailNextRule {
  count: number;
  status: FaultKind;
  match?: FaultMatch;
  /**
   * 'before' (default): the request has no effect, like Twilio rejecting it.
   * 'after': the request takes effect and then the answer is lost, which is how a client ends up
   * with a key it never saw the secret of.
   */
  phase?: 'before' | 'after';
}

export interface FailRate {
  /** Probability 0..1 that a matching request fails. */
  rate: number;
  kinds: FaultKind[];
  match?: FaultMatch;
}

export interface FaultUpdate {
  latencyMs?: number;
  /** Max in-flight REST requests per parent-account tree; null or Infinity for no limit. */
  concurrency?: number | null;
  /** Replaces all pending failNext rules; null clears them. */
  failNext?: FailNextRule | FailNextRule[] | null;
  failRate?: FailRate | null;
  /** Reseeds the PRNG. */
  seed?: number;
  /** How long a 'timeout' fault holds the request before dropping the connection. */
  timeoutMs?: number;
}

export interface FaultSnapshot {
  latencyMs: number;
  concurrency: number | null;
  failNext: FailNextRule[];
  failRate: FailRate | null;
  seed: number;
  timeoutMs: number;
}

export interface InjectedFault {
  kind: FaultKind;
  phase: 'before' | 'after';
}

const KINDS: readonly FaultKind[] = [401, 429, 500, 503, 'reset', 'timeout'];

interface CompiledRule {
  rule: FailNextRule;
  remaining: number;
  method: string | undefined;
  path: RegExp | undefined;
}

/** mulberry32: tiny, fast, and good enough to pick faults reproducibly. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Faults {
  latencyMs = 0;
  concurrency = Number.POSITIVE_INFINITY;
  timeoutMs = 30_000;
  private seed = 0x5eed;
  private random = mulberry32(this.seed);
  private failNext: CompiledRule[] = [];
  private failRate: { spec: FailRate; method: string | undefined; path: RegExp | undefined } | null = null;

  /** Validates everything before changing anything, so a bad update leaves the faults as they were. */
  update(u: FaultUpdate): void {
    if (u.latencyMs !== undefined) assertNumber('latencyMs', u.latencyMs, 0);
    if (u.timeoutMs !== undefined) assertNumber('timeoutMs', u.timeoutMs, 0);
    if (u.concurrency !== undefined && u.concurrency !== null && u.concurrency !== Number.POSITIVE_INFINITY) {
      assertNumber('concurrency', u.concurrency, 1);
    }
    if (u.seed !== undefined) assertNumber('seed', u.seed, Number.NEGATIVE_INFINITY);
    const nextRules =
      u.failNext === undefined ? undefined : u.failNext === null ? [] : Array.isArray(u.failNext) ? u.failNext : [u.failNext];
    const compiledRules = nextRules?.map((rule, i) => compileRule(rule, i));
    let compiledRate = this.failRate;
    if (u.failRate !== undefined) {
      if (u.failRate === null) compiledRate = null;
      else {
        const r = u.failRate;
        if (typeof r !== 'object') throw new Error('failRate must be an object or null');
        assertNumber('failRate.rate', r.rate, 0);
        if (r.rate > 1) throw new Error('failRate.rate must be between 0 and 1');
        if (!Array.isArray(r.kinds) || r.kinds.length === 0) throw new Error('failRate.kinds must be a non-empty array');
        for (const k of r.kinds) assertKind('failRate.kinds[]', k);
        compiledRate = { spec: r, ...compileMatch('failRate.match', r.match) };
      }
    }

    if (u.latencyMs !== undefined) this.latencyMs = u.latencyMs;
    if (u.timeoutMs !== undefined) this.timeoutMs = u.timeoutMs;
    if (u.concurrency !== undefined) this.concurrency = u.concurrency ?? Number.POSITIVE_INFINITY;
    if (u.seed !== undefined) {
      this.seed = u.seed;
      this.random = mulberry32(u.seed);
    }
    if (compiledRules) this.failNext = compiledRules;
    this.failRate = compiledRate;
  }

  /** Decides (and consumes) the fault for one REST request, if any. */
  pick(method: string, path: string): InjectedFault | null {
    for (let i = 0; i < this.failNext.length; i++) {
      const r = this.failNext[i];
      if (!r || !matches(r, method, path)) continue;
      r.remaining--;
      if (r.remaining <= 0) this.failNext.splice(i, 1);
      return { kind: r.rule.status, phase: r.rule.phase ?? 'before' };
    }
    const fr = this.failRate;
    if (fr && fr.spec.rate > 0 && matches(fr, method, path) && this.random() < fr.spec.rate) {
      const kinds = fr.spec.kinds;
      const kind = kinds[Math.floor(this.random() * kinds.length)] ?? 500;
      return { kind, phase: 'before' };
    }
    return null;
  }

  snapshot(): FaultSnapshot {
    return {
      latencyMs: this.latencyMs,
      concurrency: Number.isFinite(this.concurrency) ? this.concurrency : null,
      failNext: this.failNext.map((r) => ({ ...r.rule, count: r.remaining })),
      failRate: this.failRate ? this.failRate.spec : null,
      seed: this.seed,
      timeoutMs: this.timeoutMs,
    };
  }
}

function matches(m: { method: string | undefined; path: RegExp | undefined }, method: string, path: string): boolean {
  return (m.method === undefined || m.method === method) && (m.path === undefined || m.path.test(path));
}

function compileRule(rule: FailNextRule, i: number): CompiledRule {
  const name = `failNext[${i}]`;
  if (typeof rule !== 'object' || rule === null) throw new Error(`${name} must be an object`);
  assertNumber(`${name}.count`, rule.count, 1);
  assertKind(`${name}.status`, rule.status);
  if (rule.phase !== undefined && rule.phase !== 'before' && rule.phase !== 'after') {
    throw new Error(`${name}.phase must be 'before' or 'after'`);
  }
  return { rule, remaining: Math.floor(rule.count), ...compileMatch(`${name}.match`, rule.match) };
}

function compileMatch(name: string, m: FaultMatch | undefined): { method: string | undefined; path: RegExp | undefined } {
  if (m === undefined) return { method: undefined, path: undefined };
  if (typeof m !== 'object' || m === null) throw new Error(`${name} must be an object`);
  let path: RegExp | undefined;
  if (m.path !== undefined) {
    try {
      path = new RegExp(m.path);
    } catch {
      throw new Error(`${name}.path is not a valid regular expression`);
    }
  }
  return { method: m.method?.toUpperCase(), path };
}

function assertNumber(name: string, v: unknown, min: number): asserts v is number {
  if (typeof v !== 'number' || Number.isNaN(v) || v < min) throw new Error(`${name} must be a number >= ${min}`);
}

function assertKind(name: string, k: unknown): asserts k is FaultKind {
  if (!KINDS.includes(k as FaultKind)) throw new Error(`${name} must be one of 401, 429, 500, 503, 'reset', 'timeout'`);
}
