import { runPeriodically, type Periodic } from './periodic.ts';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { batchHaltedNotification, overdueNotification, plannerStalledNotification, rotationNotification, type Notification } from '../domain/notification.ts';
import { plannerStalled } from '../domain/schedule.ts';
import { redisKeys } from '../state/keys.ts';
import { runScript } from '../state/lua.ts';
import type { RotationEvent } from '../state/rotations.ts';
import type { BatchStreamEvent } from '../state/batches.ts';

/**
 * Where notifications come from: the events stream (a rotation failed or held, a batch halted)
 * and two watches on the planner's state (a credential's deadline passed; no tick for three
 * intervals). Nothing elsewhere calls "notify": the stream already carries every transition,
 * written atomically with its record, so a notification cannot be missed by a process dying
 * between the write and a call.
 *
 * One relay works at a time (a lease), from a cursor kept in Redis. Each event's notification
 * has a stable id and the queue de-duplicates on it, so re-reading after a crash between the
 * enqueue and the cursor update sends nothing twice.
 */
export interface NotifyRelayOptions {
  redis: Redis;
  prefix: string;
  /** Enqueue a notification's deliveries (workers/notify-worker.ts enqueueNotification). */
  enqueue: (n: Notification) => Promise<unknown>;
  log: Logger;
  /** The planner's tick interval when this deployment runs the planner; undefined: not watched. */
  plannerTickMs?: number;
  lastTickMs?: () => Promise<number | null>;
  intervalMs?: number;
  leaseMs?: number;
  now?: () => number;
}

const EXTEND = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const BATCH = 200;

type Row = [string, string[]];

export class NotifyRelay {
  readonly #o: Required<Omit<NotifyRelayOptions, 'plannerTickMs' | 'lastTickMs'>> & Pick<NotifyRelayOptions, 'plannerTickMs' | 'lastTickMs'>;
  readonly #k: ReturnType<typeof redisKeys>;
  readonly #cursorKey: string;
  readonly #overdueKey: string;
  readonly #leaseKey: string;
  readonly #token = randomUUID();
  readonly #startedAt: number;
  #loop: Periodic | undefined;
  #leader = false;
  /** Notifications this relay enqueued (tests). */
  enqueued = 0;

  constructor(opts: NotifyRelayOptions) {
    this.#o = { intervalMs: 1_000, leaseMs: 10_000, now: Date.now, ...opts };
    this.#k = redisKeys(opts.prefix);
    this.#cursorKey = `${opts.prefix}:notify:cursor`;
    this.#overdueKey = `${opts.prefix}:notify:overdue-since`;
    this.#leaseKey = `${opts.prefix}:notify:lease`;
    this.#startedAt = this.#o.now();
  }

  start(): void {
    this.#loop = runPeriodically(() => this.pump(), {
      firstMs: 0,
      everyMs: this.#o.intervalMs,
      onError: (err) => this.#o.log.warn({ err: { message: err.message } }, 'notify relay: will try again'),
    });
  }

  async stop(): Promise<void> {
    await this.#loop?.stop();
    this.#loop = undefined;
    if (this.#leader) await this.#o.redis.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`, 1, this.#leaseKey, this.#token).catch(() => undefined);
  }

  /** One pass: the stream from the cursor, then the two watches. Returns how many notifications were enqueued. */
  async pump(): Promise<number> {
    if (!(await this.#lease())) return 0;
    const before = this.enqueued;
    await this.#followEvents();
    await this.#watchOverdue();
    await this.#watchPlanner();
    return this.enqueued - before;
  }

  async #send(n: Notification): Promise<void> {
    await this.#o.enqueue(n);
    this.enqueued++;
  }

  async #followEvents(): Promise<void> {
    const { redis } = this.#o;
    let cursor = await redis.get(this.#cursorKey);
    if (cursor === null) {
      // First start: what happened before notifications were configured is not news.
      const last = (await redis.xrevrange(this.#k.events, '+', '-', 'COUNT', 1)) as Row[];
      cursor = last[0]?.[0] ?? '0-0';
      await redis.set(this.#cursorKey, cursor, 'NX');
      cursor = (await redis.get(this.#cursorKey)) ?? cursor;
    }
    for (;;) {
      const rows = (await redis.xrange(this.#k.events, `(${cursor}`, '+', 'COUNT', BATCH)) as Row[];
      if (rows.length === 0) return;
      for (const [id, fields] of rows) {
        const n = notificationOf(parseEvent(fields));
        if (n) await this.#send(n);
        cursor = id;
      }
      // After the batch: a crash before this line re-reads it, and the queue drops what it already holds.
      await redis.set(this.#cursorKey, cursor);
      if (rows.length < BATCH) return;
    }
  }

  /** Deadlines that passed since the last look (schedule:deadlines, id → epoch ms). */
  async #watchOverdue(): Promise<void> {
    const { redis } = this.#o;
    const now = this.#o.now();
    const since = Number((await redis.get(this.#overdueKey)) ?? now);
    const rows = await redis.zrangebyscore(this.#k.scheduleDeadlines, `(${since}`, String(now), 'WITHSCORES', 'LIMIT', 0, 1_000);
    let upTo = now;
    for (let i = 0; i + 1 < rows.length; i += 2) {
      await this.#send(overdueNotification(rows[i]!, Number(rows[i + 1])));
      upTo = Number(rows[i + 1]);
    }
    // A full page continues from its last deadline next time (a fleet going overdue at once).
    await redis.set(this.#overdueKey, String(rows.length >= 2_000 ? upTo : now));
  }

  async #watchPlanner(): Promise<void> {
    const { plannerTickMs, lastTickMs } = this.#o;
    if (!plannerTickMs || !lastTickMs) return;
    const now = this.#o.now();
    // A deployment just started has not had the time to tick three times.
    if (now - this.#startedAt < 3 * plannerTickMs) return;
    const last = await lastTickMs();
    if (plannerStalled(last, plannerTickMs, now)) await this.#send(plannerStalledNotification(last, now));
  }

  async #lease(): Promise<boolean> {
    const { redis, leaseMs } = this.#o;
    if (this.#leader && Number(await runScript(redis, EXTEND, 1, this.#leaseKey, this.#token, String(leaseMs))) === 1) return true;
    this.#leader = (await redis.set(this.#leaseKey, this.#token, 'PX', leaseMs, 'NX')) === 'OK';
    return this.#leader;
  }
}

/** The notification one event of the stream raises, if any. */
export function notificationOf(event: RotationEvent | BatchStreamEvent | undefined): Notification | undefined {
  if (event?.type === 'rotation') return rotationNotification(event);
  if (event?.type === 'batch' && event.event === 'halted') return batchHaltedNotification(event);
  return undefined;
}

function parseEvent(fields: string[]): RotationEvent | BatchStreamEvent | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] !== 'e') continue;
    try {
      return JSON.parse(fields[i + 1]!) as RotationEvent | BatchStreamEvent;
    } catch {
      return undefined;
    }
  }
  return undefined;
}
