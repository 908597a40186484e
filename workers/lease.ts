import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { runScript } from '../src/state/lua.ts';

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const EXTEND = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * This delivery no longer owns its rotation: its step lease expired (the process was starved, or
 * Redis restarted and the renewals did not reach it in time) or its job lock did, and another
 * worker may be running the rotation now. What this delivery recorded stands; it must not touch
 * Twilio, the store or the record again, and the other delivery continues from the record.
 */
export class LostJobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LostJobError';
  }
}

/** A step lease this worker holds. */
export interface HeldLease {
  /**
   * Resolves while this worker still holds the lease with at least half its time to run (renewing
   * it first when less is left); throws LostJobError once another worker may hold it. Called
   * before every call that changes Twilio or the store, and by every record write.
   */
  assertHeld(): Promise<void>;
  release(): Promise<void>;
}

/**
 * A per-rotation lease held while a step runs. BullMQ already gives a job to one worker at a time,
 * but a worker that stalls (a long GC, a frozen VM) or whose renewals do not reach Redis (Redis
 * restarting) loses its job lock and the job is handed to another; the lease makes sure the two
 * never run steps of one rotation at the same time.
 *
 * A lease is only as good as its holder's knowledge of it: the holder renews it every third of its
 * time, remembers until when Redis keeps it (measured from before each renewal was sent, so never
 * later than Redis's own expiry on this host), and `assertHeld` refuses to go on once a renewal
 * found another holder, or when it cannot renew a lease that is running out. Without that check a
 * worker that lost its lease mid-step went on: its orphan clean-up deleted the key that the new
 * holder had just created and then made current (found by the chaos run after a Redis restart).
 */
export class StepLease {
  constructor(
    private readonly redis: Redis,
    private readonly keyOf: (id: string) => string,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The lease, or undefined when another worker holds it. */
  async acquire(id: string): Promise<HeldLease | undefined> {
    const key = this.keyOf(id);
    const token = randomUUID();
    const ttl = this.ttlMs;
    const sent = this.now();
    const ok = await this.redis.set(key, token, 'PX', ttl, 'NX');
    if (ok !== 'OK') return undefined;
    let validUntil = sent + ttl;
    let lost: string | undefined;
    let released = false;
    const extend = async (): Promise<boolean> => {
      const at = this.now();
      const r = (await runScript(this.redis, EXTEND, 1, key, token, String(ttl))) as number;
      if (r === 1) validUntil = Math.max(validUntil, at + ttl);
      else lost ??= `the step lease of rotation ${id} passed to another worker`;
      return r === 1;
    };
    const timer = setInterval(() => {
      extend().catch(() => undefined);
    }, Math.max(100, Math.floor(ttl / 3)));
    timer.unref();
    return {
      assertHeld: async () => {
        if (released) throw new LostJobError(`the step lease of rotation ${id} was released`);
        if (lost) throw new LostJobError(lost);
        const now = this.now();
        if (now >= validUntil) lost = `the step lease of rotation ${id} ran out (${now - validUntil} ms ago) before it was renewed`;
        else if (validUntil - now < ttl / 2) {
          // Running out (the timer was starved, or renewals failed): renew now, or stop.
          const renewed = await extend().catch(() => false);
          if (!renewed) lost ??= `the step lease of rotation ${id} could not be renewed with ${validUntil - now} ms left`;
        }
        if (lost) throw new LostJobError(lost);
      },
      release: async () => {
        released = true;
        clearInterval(timer);
        await runScript(this.redis, RELEASE, 1, key, token).catch(() => undefined);
      },
    };
  }
}
