import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ConcurrencyGate } from './gate.ts';
import { runScript } from '../state/lua.ts';

// KEYS[1] slots zset; ARGV: limit, ttlMs, id...  → the ids granted (up to the free slots).
// Scores are lease expiries on Redis's own clock, so hosts with skewed clocks agree.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local granted = {}
for i = 3, #ARGV do
  if free <= 0 then break end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[i])
  granted[#granted + 1] = ARGV[i]
  free = free - 1
end
return granted
`;

const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return 1
`;

export interface RedisGateOptions {
  key: string;
  limit: number;
  /** A slot of a process that died is reclaimed after this long. */
  leaseMs?: number;
  /** A slot handed from one local request to the next this many times goes back to Redis, so other processes get their turn (default 8). */
  maxHandoffs?: number;
}

/**
 * One cap on concurrent Twilio requests across every worker process: Twilio counts concurrency
 * per account and answers 20429 past its limit. Slots are leases in a Redis sorted set; a
 * process that dies loses its slots after `leaseMs`.
 *
 * Local requests queue in-process, so only one Redis attempt per process is outstanding, and a
 * released slot passes straight to the next local request (no Redis round trip) a bounded number
 * of times before it is returned for other processes.
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
  #closed = false;

  constructor(redis: Redis, opts: RedisGateOptions) {
    this.#redis = redis;
    this.#o = { leaseMs: 30_000, maxHandoffs: 8, ...opts };
    this.#renewTimer = setInterval(() => this.#renew(), Math.max(250, Math.floor(this.#o.leaseMs / 3)));
    this.#renewTimer.unref();
  }

  acquire(): Promise<() => void> {
    return new Promise((resolve) => {
      this.#waiters.push((slot) => {
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.#release(slot);
        });
      });
      void this.#pump();
    });
  }

  #release(slot: string): void {
    const handoffs = this.#held.get(slot) ?? 0;
    const next = this.#waiters.shift();
    if (next && handoffs < this.#o.maxHandoffs && !this.#closed) {
      this.#held.set(slot, handoffs + 1);
      next(slot);
      return;
    }
    if (next) this.#waiters.unshift(next);
    this.#held.delete(slot);
    // Not straight back into the pump: a process whose requests keep every slot busy would win
    // each race against the others' polls, and a second worker would add nothing. A short pause
    // lets any process take the slot.
    const later = (): void => void setTimeout(() => void this.#pump(), 2);
    this.#redis.zrem(this.#o.key, slot).then(later, later);
  }

  async #pump(): Promise<void> {
    if (this.#pumping || this.#waiters.length === 0 || this.#closed) return;
    this.#pumping = true;
    try {
      const want = Math.min(this.#waiters.length, 32);
      const ids = Array.from({ length: want }, () => randomUUID());
      let granted: string[] = [];
      try {
        granted = (await runScript(this.#redis, ACQUIRE, 1, this.#o.key, String(this.#o.limit), String(this.#o.leaseMs), ...ids)) as string[];
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
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    if (this.#held.size) await this.#redis.zrem(this.#o.key, ...this.#held.keys()).catch(() => undefined);
    this.#held.clear();
  }
}
