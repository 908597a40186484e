import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ConcurrencyGate } from './gate.ts';
import { runScript } from '../state/lua.ts';

// KEYS[1] slots zset, KEYS[2] wanting zset (process → until)
// ARGV: limit, ttlMs, process, id...  → the ids granted (up to the free slots).
// Scores are lease expiries on Redis's own clock, so hosts with skewed clocks agree. A process
// that got fewer slots than it asked for is recorded as wanting for a second, which tells the
// others to pass their slots on (see #release).
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local granted = {}
for i = 4, #ARGV do
  if free <= 0 then break end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[i])
  granted[#granted + 1] = ARGV[i]
  free = free - 1
end
if #granted < #ARGV - 3 then redis.call('ZADD', KEYS[2], now + 1000, ARGV[3]) end
return granted
`;

// KEYS[1] wanting zset   ARGV: process  → how many other processes wait for a slot
const OTHERS_WANTING = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then n = n - 1 end
return n
`;

const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return 1
`;

/** An unused slot goes back to Redis after this long (at once when another process waits). */
const IDLE_MS = 25;

export interface RedisGateOptions {
  key: string;
  limit: number;
  /** A slot of a process that died is reclaimed after this long. */
  leaseMs?: number;
  /** While another process waits, a slot handed from one local request to the next this many times goes back to Redis, so it gets its turn (default 8). */
  maxHandoffs?: number;
  /** How often a process holding slots asks whether others wait for one (default 200 ms). */
  contentionCheckMs?: number;
}

/**
 * One cap on concurrent Twilio requests across every worker process: Twilio counts concurrency
 * per account and answers 20429 past its limit. Slots are leases in a Redis sorted set; a
 * process that dies loses its slots after `leaseMs`.
 *
 * Local requests queue in-process, so only one Redis attempt per process is outstanding, and a
 * released slot passes straight to the next local request (no Redis round trip). While another
 * process is waiting for a slot, a slot goes back to Redis after a bounded number of handoffs so
 * that it gets its turn; while none is, slots stay where they are busy. (Returning them regardless
 * left ~10% of the cap idle in a fleet run: a returned slot waits for the next poll.)
 */
export class RedisConcurrencyGate implements ConcurrencyGate {
  readonly #redis: Redis;
  readonly #o: Required<RedisGateOptions>;
  readonly #waiters: Array<(slot: string) => void> = [];
  readonly #held = new Map<string, number>(); // slot id → handoffs so far
  #pumping = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #backoff = 1;
  readonly #renewTimer: NodeJS.Timeout;
  readonly #contentionTimer: NodeJS.Timeout;
  readonly #process = randomUUID();
  readonly #wantingKey: string;
  /** Another process waited for a slot when we last asked. */
  #othersWaiting = false;
  /** Slots held but unused, kept briefly for the next local request. */
  #idle: Array<{ slot: string; since: number }> = [];
  #idleTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(redis: Redis, opts: RedisGateOptions) {
    this.#redis = redis;
    this.#o = { leaseMs: 30_000, maxHandoffs: 8, contentionCheckMs: 200, ...opts };
    this.#wantingKey = `${this.#o.key}:wanting`;
    this.#renewTimer = setInterval(() => this.#renew(), Math.max(250, Math.floor(this.#o.leaseMs / 3)));
    this.#renewTimer.unref();
    this.#contentionTimer = setInterval(() => this.#checkContention(), this.#o.contentionCheckMs);
    this.#contentionTimer.unref();
  }

  #checkContention(): void {
    if (this.#held.size === 0) return;
    runScript(this.#redis, OTHERS_WANTING, 1, this.#wantingKey, this.#process).then(
      (n) => {
        this.#othersWaiting = Number(n) > 0;
        if (this.#othersWaiting) this.#returnIdle(true);
      },
      () => undefined,
    );
  }

  acquire(): Promise<() => void> {
    const idle = this.#idle.pop();
    if (idle) return Promise.resolve(this.#releaser(idle.slot));
    return new Promise((resolve) => {
      this.#waiters.push((slot) => resolve(this.#releaser(slot)));
      void this.#pump();
    });
  }

  #releaser(slot: string): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#release(slot);
    };
  }

  /** Give idle slots back to Redis: all of them, or those idle longer than IDLE_MS. */
  #returnIdle(all: boolean): void {
    const cutoff = performance.now() - IDLE_MS;
    const keep: Array<{ slot: string; since: number }> = [];
    for (const i of this.#idle) {
      if (all || i.since <= cutoff) this.#giveBack(i.slot);
      else keep.push(i);
    }
    this.#idle = keep;
    if (this.#idle.length && !this.#idleTimer) {
      this.#idleTimer = setTimeout(() => {
        this.#idleTimer = undefined;
        this.#returnIdle(false);
      }, IDLE_MS);
      this.#idleTimer.unref();
    }
  }

  #giveBack(slot: string): void {
    this.#held.delete(slot);
    // Not straight back into the pump: a process whose requests keep every slot busy would win
    // each race against the others' polls, and a second worker would add nothing. A short pause
    // lets any process take the slot.
    const later = (): void => void setTimeout(() => void this.#pump(), 2);
    this.#redis.zrem(this.#o.key, slot).then(later, later);
  }

  #release(slot: string): void {
    const handoffs = this.#held.get(slot) ?? 0;
    const next = this.#waiters.shift();
    if (next && (handoffs < this.#o.maxHandoffs || !this.#othersWaiting) && !this.#closed) {
      this.#held.set(slot, handoffs + 1);
      next(slot);
      return;
    }
    if (next) this.#waiters.unshift(next);
    if (!next && !this.#othersWaiting && !this.#closed) {
      // Nobody else wants it: keep it a moment for the next local request rather than a round
      // trip to Redis and back (a slot in transit is a slot Twilio's limit allows but nobody uses).
      this.#idle.push({ slot, since: performance.now() });
      this.#returnIdle(false);
      return;
    }
    this.#giveBack(slot);
  }

  async #pump(): Promise<void> {
    if (this.#pumping || this.#waiters.length === 0 || this.#closed) return;
    this.#pumping = true;
    try {
      const want = Math.min(this.#waiters.length, 32);
      const ids = Array.from({ length: want }, () => randomUUID());
      let granted: string[] = [];
      try {
        granted = (await runScript(this.#redis, ACQUIRE, 2, this.#o.key, this.#wantingKey, String(this.#o.limit), String(this.#o.leaseMs), this.#process, ...ids)) as string[];
      } catch {
        granted = [];
      }
      for (const slot of granted) {
        const waiter = this.#waiters.shift();
        this.#held.set(slot, 0);
        if (waiter) waiter(slot);
        else this.#release(slot);
      }
      if (granted.length > 0) this.#backoff = 1;
      else this.#backoff = Math.min(this.#backoff * 2, 4);
    } finally {
      this.#pumping = false;
    }
    if (this.#waiters.length > 0 && !this.#retryTimer) {
      // Nothing free: try again shortly (a release in this process also pumps at once).
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        void this.#pump();
      }, this.#backoff);
    }
  }

  #renew(): void {
    if (this.#held.size === 0) return;
    runScript(this.#redis, RENEW, 1, this.#o.key, String(this.#o.leaseMs), ...this.#held.keys()).catch(() => undefined);
  }

  /** Stop renewing and give back every slot this process holds. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#renewTimer);
    clearInterval(this.#contentionTimer);
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idle = [];
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    if (this.#held.size) await this.#redis.zrem(this.#o.key, ...this.#held.keys()).catch(() => undefined);
    this.#held.clear();
  }
}
