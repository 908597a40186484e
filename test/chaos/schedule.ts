import { mulberry32 } from '../emulators/twilio/faults.ts';

/** A seeded source of choices: the same seed gives the same sequence, on every machine. */
export class Rng {
  readonly #next: () => number;
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }
  float(): number {
    return this.#next();
  }
  between(min: number, max: number): number {
    return min + (max - min) * this.#next();
  }
  int(min: number, maxInclusive: number): number {
    return Math.floor(this.between(min, maxInclusive + 1));
  }
  chance(p: number): boolean {
    return this.#next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.#next() * items.length)] as T;
  }
  /** A derived, independent stream (e.g. one per driver lane). */
  fork(salt: number): Rng {
    return new Rng((Math.floor(this.#next() * 0xffffffff) ^ Math.imul(salt + 1, 0x9e3779b1)) >>> 0);
  }
}

export type FaultEvent =
  /** SIGKILL worker `index`; start it again `restartAfterMs` later. */
  | { at: number; kind: 'kill-worker'; index: number; restartAfterMs: number }
  | { at: number; kind: 'kill-api'; restartAfterMs: number }
  /** SIGKILL redis-server itself; start it again on the same port and AOF. Exactly once per run. */
  | { at: number; kind: 'restart-redis'; restartAfterMs: number }
  /** Twilio answers 429/500/timeouts/resets on `rate` of calls. */
  | { at: number; kind: 'twilio-faults'; durationMs: number; rate: number }
  /** The store refuses writes (AWS/Vault: access denied; file: the directory made immutable). */
  | { at: number; kind: 'store-deny-writes'; durationMs: number }
  /** The store is unreachable for reads and writes (AWS 503 / Vault sealed). Not for the file store. */
  | { at: number; kind: 'store-down'; durationMs: number }
  /** The parent's admin credential is refused on one subaccount (by index among the initial ones). */
  | { at: number; kind: 'deny-parent'; durationMs: number; account: number }
  /** A new, empty subaccount appears: its first rotation is a bootstrap. */
  | { at: number; kind: 'add-subaccount' };

export interface ScheduleOptions {
  seed: number;
  durationMs: number;
  workers: number;
  accounts: number;
  /** Whether the store can be taken down as a whole (AWS, Vault). */
  storeCanGoDown: boolean;
}

/**
 * The whole fault schedule, decided up front from the seed: the same seed and duration give the
 * same faults at the same offsets. Each kind is its own stream of events, so the mix is the same
 * whatever the store.
 */
export function buildSchedule(o: ScheduleOptions): FaultEvent[] {
  const root = new Rng(o.seed);
  const events: FaultEvent[] = [];
  const warmup = Math.min(3_000, o.durationMs / 10);
  const end = o.durationMs;

  const stream = (salt: number, gap: [number, number], make: (r: Rng, at: number) => FaultEvent & { durationMs?: number }): void => {
    const r = root.fork(salt);
    let t = warmup + r.between(0, gap[1]);
    while (t < end) {
      const e = make(r, Math.round(t));
      events.push(e);
      t += (e.durationMs ?? 0) + r.between(gap[0], gap[1]);
    }
  };

  stream(1, [5_000, 12_000], (r, at) => ({ at, kind: 'kill-worker', index: r.int(0, o.workers - 1), restartAfterMs: Math.round(r.between(300, 1_500)) }));
  stream(2, [12_000, 25_000], (r, at) => ({ at, kind: 'kill-api', restartAfterMs: Math.round(r.between(300, 1_500)) }));
  stream(3, [8_000, 20_000], (r, at) => ({ at, kind: 'twilio-faults', durationMs: Math.round(r.between(3_000, 8_000)), rate: Math.round(r.between(5, 10)) / 100 }));
  stream(4, [10_000, 25_000], (r, at) => ({ at, kind: 'store-deny-writes', durationMs: Math.round(r.between(1_500, 4_000)) }));
  stream(5, [10_000, 25_000], (r, at) => ({ at, kind: 'deny-parent', durationMs: Math.round(r.between(2_000, 6_000)), account: r.int(0, o.accounts - 1) }));
  if (o.storeCanGoDown) stream(6, [15_000, 30_000], (r, at) => ({ at, kind: 'store-down', durationMs: Math.round(r.between(500, 2_000)) }));

  const once = root.fork(7);
  events.push({ at: Math.round(end * once.between(0.3, 0.6)), kind: 'restart-redis', restartAfterMs: Math.round(once.between(300, 1_500)) });
  events.push({ at: Math.round(end * once.between(0.25, 0.5)), kind: 'add-subaccount' });
  return events.sort((a, b) => a.at - b.at);
}

export function describeFault(e: FaultEvent): string {
  switch (e.kind) {
    case 'kill-worker':
      return `SIGKILL worker ${e.index} (restart after ${e.restartAfterMs} ms)`;
    case 'kill-api':
      return `SIGKILL api (restart after ${e.restartAfterMs} ms)`;
    case 'restart-redis':
      return `SIGKILL redis-server (restart after ${e.restartAfterMs} ms)`;
    case 'twilio-faults':
      return `Twilio fails ${Math.round(e.rate * 100)}% of calls for ${e.durationMs} ms`;
    case 'store-deny-writes':
      return `store refuses writes for ${e.durationMs} ms`;
    case 'store-down':
      return `store down for ${e.durationMs} ms`;
    case 'deny-parent':
      return `admin credential refused on subaccount #${e.account} for ${e.durationMs} ms`;
    case 'add-subaccount':
      return 'new empty subaccount';
  }
}
