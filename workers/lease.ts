import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { runScript } from '../src/state/lua.ts';

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const EXTEND = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * A per-rotation lease held while a step runs. BullMQ already gives a job to one worker at a time,
 * but a worker that stalls (a long GC, a frozen VM) loses its job lock and the job is handed to
 * another; the lease makes sure the two never run steps of one rotation at the same time.
 */
export class StepLease {
  constructor(
    private readonly redis: Redis,
    private readonly keyOf: (id: string) => string,
    private readonly ttlMs: number,
  ) {}

  /** A release function, or undefined when another worker holds the lease. */
  async acquire(id: string): Promise<(() => Promise<void>) | undefined> {
    const key = this.keyOf(id);
    const token = randomUUID();
    const ok = await this.redis.set(key, token, 'PX', this.ttlMs, 'NX');
    if (ok !== 'OK') return undefined;
    const timer = setInterval(() => {
      runScript(this.redis, EXTEND, 1, key, token, String(this.ttlMs)).catch(() => undefined);
    }, Math.max(100, Math.floor(this.ttlMs / 3)));
    timer.unref();
    return async () => {
      clearInterval(timer);
      await runScript(this.redis, RELEASE, 1, key, token).catch(() => undefined);
    };
  }
}
