import { runPeriodically, type Periodic } from './periodic.ts';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { DEFAULT_CREDENTIAL } from '../domain/credential.ts';
import type { HistoryEntry } from '../domain/rotation.ts';
import type { AuditFields, AuditLog } from '../state/audit.ts';
import { redisKeys } from '../state/keys.ts';
import { runScript } from '../state/lua.ts';
import type { RotationEvent } from '../state/rotations.ts';
import type { BatchStreamEvent } from '../state/batches.ts';
import { batchAuditFields, SYSTEM_AUDIT } from './batches.ts';

/**
 * Every rotation transition reaches the audit chain, whatever dies when.
 *
 * A transition is written atomically with its record and an event in the events stream (see
 * state/rotations.ts); the process that made it then appends its audit entry at once. That append
 * is a second write: a worker SIGKILLed, or Redis restarting, between the two loses it — and the
 * transitions the API writes (created, cancel/rollback requested, retry) have only the request's
 * own audit entry, lost the same way if the API dies between the write and its answer.
 *
 * The relay closes both gaps. It follows the events stream from a cursor and, for every
 * transition older than `settleMs` (time for the immediate append to land), appends the entry
 * unless the chain already has it: same rotation, step, action and time (`at` is the
 * transition's own time in both). Checking the chain rather than trusting the cursor makes a
 * crash between the append and the cursor update harmless: the entry is found and skipped. One
 * relay works at a time (a lease), so there are no duplicates either, short of a relay stalled
 * past its lease.
 */
export interface AuditRelayOptions {
  redis: Redis;
  prefix: string;
  audit: AuditLog;
  log: Logger;
  /** How old a transition must be before the relay looks at it (default 5 s). */
  settleMs?: number;
  intervalMs?: number;
  leaseMs?: number;
  now?: () => number;
}

/**
 * The chain entry of one transition: the same fields whichever process writes it. An event written
 * before managed credentials carries no credential: it was the subaccount's `default` one.
 */
export function transitionAuditFields(rotation: { id: string; accountSid: string; credential?: string }, entry: HistoryEntry, defaultActor: string): AuditFields {
  return {
    kind: 'rotation',
    actor: entry.by ?? defaultActor,
    action: `step.${entry.status}`,
    rotationId: rotation.id,
    accountSid: rotation.accountSid,
    credential: rotation.credential ?? DEFAULT_CREDENTIAL,
    step: entry.step,
    ...(entry.detail ? { detail: entry.detail } : {}),
  };
}

const EXTEND = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const BATCH = 200;

type Row = [string, string[]];

export class AuditRelay {
  readonly #o: Required<Omit<AuditRelayOptions, 'now'>> & { now: () => number };
  readonly #eventsKey: string;
  readonly #auditKey: string;
  readonly #cursorKey: string;
  readonly #leaseKey: string;
  readonly #token = randomUUID();
  #loop: Periodic | undefined;
  #leader = false;
  readonly #chain = new ChainIndex();
  /** Bumped whenever the connection to Redis is (re)established. */
  #generation = 0;
  /** Entries this relay appended (for tests and metrics). */
  appended = 0;

  constructor(opts: AuditRelayOptions) {
    this.#o = { settleMs: 5_000, intervalMs: 1_000, leaseMs: 10_000, now: Date.now, ...opts };
    const k = redisKeys(opts.prefix);
    this.#eventsKey = k.events;
    this.#auditKey = k.audit;
    this.#cursorKey = `${k.audit}:relay:cursor`;
    this.#leaseKey = `${k.audit}:relay:lease`;
    opts.redis.on('ready', () => this.#generation++);
  }

  start(): void {
    this.#loop = runPeriodically(() => this.pump(), {
      firstMs: this.#o.intervalMs,
      everyMs: this.#o.intervalMs,
      onError: (err) => this.#o.log.warn({ err: { message: err.message } }, 'audit relay: will try again'),
    });
  }

  async stop(): Promise<void> {
    await this.#loop?.stop();
    this.#loop = undefined;
    if (this.#leader) await this.#o.redis.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`, 1, this.#leaseKey, this.#token).catch(() => undefined);
  }

  /** Relay every settled transition not yet in the chain; returns how many entries were appended. */
  async pump(): Promise<number> {
    const { redis } = this.#o;
    if (!(await this.#lease())) {
      this.#chain.clear();
      return 0;
    }
    let appended = 0;
    let cursor = (await redis.get(this.#cursorKey)) ?? '0-0';
    for (;;) {
      const rows = (await redis.xrange(this.#eventsKey, `(${cursor}`, '+', 'COUNT', BATCH)) as Row[];
      const settledBefore = this.#o.now() - this.#o.settleMs;
      const ready = rows.filter(([id]) => streamTime(id) <= settledBefore);
      if (ready.length === 0) return appended;
      const present = await this.#chainFrom(streamTime(ready[0]![0]) - 1_000);
      for (const [id, fields] of ready) {
        const event = parseEvent(fields);
        const t = event?.type === 'rotation' ? event.transition : undefined;
        // A batch's own decisions (halted, completed) share the stream with the rotations'.
        const batchAction = event?.type === 'batch' ? SYSTEM_AUDIT[event.event] : undefined;
        if (event?.type === 'batch' && batchAction) {
          const key = identity(`batch:${event.id}`, undefined, batchAction, event.at);
          if (!present.has(key)) {
            await this.#o.audit.append(batchAuditFields(event.id, batchAction, event.detail), Date.parse(event.at));
            present.set(key, this.#o.now());
            appended++;
            this.appended++;
          }
        }
        if (event?.type === 'rotation' && t) {
          const key = identity(event.id, t.step, `step.${t.status}`, t.at);
          if (!present.has(key)) {
            await this.#o.audit.append(transitionAuditFields(event, t, 'api'), Date.parse(t.at));
            present.set(key, this.#o.now());
            appended++;
            this.appended++;
          }
        }
        cursor = id;
      }
      // Once per batch: a crash before this line re-reads the batch, and the chain check skips what was appended.
      await redis.set(this.#cursorKey, cursor);
      if (ready.length < rows.length || rows.length < BATCH) return appended;
    }
  }

  async #lease(): Promise<boolean> {
    const { redis, leaseMs } = this.#o;
    if (this.#leader && Number(await runScript(redis, EXTEND, 1, this.#leaseKey, this.#token, String(leaseMs))) === 1) return true;
    this.#leader = (await redis.set(this.#leaseKey, this.#token, 'PX', leaseMs, 'NX')) === 'OK';
    return this.#leader;
  }

  /**
   * Identities of the rotation entries in the chain appended since `fromMs` (stream time).
   *
   * Kept between calls and extended from where the last read stopped: re-reading the whole window
   * for every batch of events cost more than the rotations themselves at a few hundred per second.
   * The copy is dropped when the connection to Redis was lost (a restart may have lost the newest
   * entries) and when it does not reach back to `fromMs`.
   */
  async #chainFrom(fromMs: number): Promise<Map<string, number>> {
    const c = this.#chain;
    if (c.generation !== this.#generation || c.fromMs > fromMs) {
      c.clear();
      c.generation = this.#generation;
      c.fromMs = Math.max(0, fromMs);
      c.after = undefined;
    }
    for (;;) {
      const min = c.after ? `(${c.after}` : `${c.fromMs}-0`;
      const rows = (await this.#o.redis.xrange(this.#auditKey, min, '+', 'COUNT', 1_000)) as Row[];
      for (const [id, fields] of rows) {
        const json = fieldOf(fields, 'e');
        if (!json) continue;
        try {
          const e = JSON.parse(json) as AuditFields & { at: string };
          if (e.kind === 'rotation' && e.rotationId) c.entries.set(identity(e.rotationId, e.step, e.action, e.at), streamTime(id));
          else if (e.kind === 'batch' && e.batchId) c.entries.set(identity(`batch:${e.batchId}`, undefined, e.action, e.at), streamTime(id));
        } catch {
          // Not ours to judge: verification reports a damaged entry.
        }
      }
      const lastRow = rows.at(-1);
      if (lastRow) c.after = lastRow[0];
      if (rows.length < 1_000) break;
    }
    // Forget what no later batch can ask about (events come in stream order); insertion order is stream order.
    for (const [key, ms] of c.entries) {
      if (ms >= fromMs) break;
      c.entries.delete(key);
    }
    c.fromMs = Math.max(c.fromMs, fromMs);
    return c.entries;
  }
}

/** The relay's copy of the recent chain: entry identities → their stream time. */
class ChainIndex {
  entries = new Map<string, number>();
  /** Covers entries appended at or after this stream time… */
  fromMs = 0;
  /** …up to and including this stream id. */
  after: string | undefined;
  generation = -1;

  clear(): void {
    this.entries.clear();
    this.after = undefined;
    this.generation = -1;
  }
}

function identity(rotationId: string, step: string | undefined, action: string, at: string): string {
  return `${rotationId}|${step ?? ''}|${action}|${Date.parse(at)}`;
}

function streamTime(id: string): number {
  return Number(id.slice(0, id.indexOf('-')));
}

function fieldOf(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

function parseEvent(fields: string[]): RotationEvent | BatchStreamEvent | undefined {
  try {
    return JSON.parse(fieldOf(fields, 'e') ?? '') as RotationEvent | BatchStreamEvent;
  } catch {
    return undefined;
  }
}
