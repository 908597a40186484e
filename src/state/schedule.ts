import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { runScript } from './lua.ts';
import { redisKeys, type RedisKeys } from './keys.ts';

/**
 * The planner's state in Redis. The due set (`schedule:due`, id → epoch ms) is what a tick reads:
 * ZRANGEBYSCORE -inf now, so a tick costs O(due), not O(fleet). Next to it: each scheduled
 * credential's deadline (overdue is one ZCOUNT), its slot per policy (the forecast is one ZCOUNT
 * per day and policy), the claimed credentials with their lease end, the credentials held back after
 * a failed rotation, the last tick's report, the fleet-wide pause and the paged rebuild's cursor.
 * Writes that must agree are one Lua script each (scripts/*.lua, keys documented at their top).
 */

const script = (name: string): string => readFileSync(new URL(`./scripts/${name}`, import.meta.url), 'utf8');
const WRITE = script('schedule-write.lua');
const CLAIM = script('schedule-claim.lua');

/** One credential's place in the schedule; `atMs: null` takes it out. */
export interface ScheduleWrite {
  id: string;
  atMs: number | null;
  deadlineMs?: number;
  policy?: string;
  /** Held back after a failed rotation until this time. */
  retryAtMs?: number | null;
  /** Its rotation just finished: an unexpired lease ends. */
  finished?: boolean;
}

export interface FleetPause {
  at: string;
  by: string;
  reason: string;
}

/** What the last tick did (GET /v1/schedule, metrics). */
export interface TickReport {
  at: string;
  durationMs: number;
  /** Entries read from the due set (at most 4 × the budget). */
  read: number;
  started: number;
  /** A rotation of the credential was already in flight: nothing new started (its end replans it). */
  inFlight: number;
  /** Not started: outside the policy's window or in a blackout (re-slotted to the next allowed instant). */
  skippedWindow: number;
  /** Not started: paused, excluded or no longer managed (taken out of the schedule). */
  skippedPaused: number;
  /** Not started: the fresh plan put it later than the due set said (re-slotted). */
  notDue: number;
  /** Not started: another tick claimed it first. */
  lostClaim: number;
  /** Not started: a failed rotation still holds the subaccount, or the start failed. */
  blocked: number;
  /** Left for the next tick: over the budget. */
  deferred: number;
  budget: number;
  /** After the tick. */
  due: number;
  overdue: number;
  /** The fleet pause was on: nothing was read or started. */
  paused: boolean;
  /** Credentials replanned by the rebuild in this tick. */
  rebuilt: number;
  by: string;
}

export interface RebuildState {
  /** The policy version the last complete rebuild planned against. */
  plannedVersion: string | null;
  rebuiltAtMs: number | null;
  /** A rebuild in progress: the version it plans against and the last id done. */
  target: string | null;
  cursor: string | null;
}

export class ScheduleStore {
  readonly #redis: Redis;
  readonly keys: RedisKeys;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.keys = redisKeys(prefix);
  }

  /** Write a page of decisions (one script, atomic per credential). */
  async write(entries: readonly ScheduleWrite[], nowMs: number): Promise<void> {
    if (entries.length === 0) return;
    const k = this.keys;
    const args: string[] = [k.scheduleByPolicy(''), String(nowMs)];
    for (const e of entries) {
      args.push(e.id, e.atMs === null ? '' : String(e.atMs), String(e.deadlineMs ?? ''), e.policy ?? '', e.retryAtMs ? String(e.retryAtMs) : '', e.finished ? '1' : '0');
    }
    await runScript(this.#redis, WRITE, 5, k.scheduleDue, k.scheduleLeased, k.scheduleDeadlines, k.schedulePolicyOf, k.scheduleFailing, ...args);
  }

  /** Up to `limit` due entries (score ≤ now), earliest score first. */
  async due(nowMs: number, limit: number): Promise<Array<{ id: string; score: number }>> {
    const flat = await this.#redis.zrangebyscore(this.keys.scheduleDue, '-inf', String(nowMs), 'WITHSCORES', 'LIMIT', 0, limit);
    const out: Array<{ id: string; score: number }> = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ id: flat[i]!, score: Number(flat[i + 1]) });
    return out;
  }

  /** Claim a due credential for `leaseUntilMs`, if its score is still `readScore`: true for exactly one claimant. */
  async claim(id: string, readScore: number, leaseUntilMs: number): Promise<boolean> {
    const k = this.keys;
    return (await runScript(this.#redis, CLAIM, 3, k.scheduleDue, k.scheduleLeased, k.scheduleDue, id, String(readScore), 'lease', String(leaseUntilMs))) === 1;
  }

  /** Move a due credential to `atMs` (outside its window now), if its score is still `readScore`. */
  async reslot(id: string, policy: string, readScore: number, atMs: number): Promise<boolean> {
    const k = this.keys;
    return (await runScript(this.#redis, CLAIM, 3, k.scheduleDue, k.scheduleLeased, k.scheduleByPolicy(policy), id, String(readScore), 'reslot', String(atMs))) === 1;
  }

  async score(id: string): Promise<number | null> {
    const s = await this.#redis.zscore(this.keys.scheduleDue, id);
    return s === null ? null : Number(s);
  }

  async pause(p: FleetPause): Promise<void> {
    await this.#redis.set(this.keys.schedulePaused, JSON.stringify(p));
  }

  async resume(): Promise<boolean> {
    return (await this.#redis.del(this.keys.schedulePaused)) === 1;
  }

  async paused(): Promise<FleetPause | null> {
    const raw = await this.#redis.get(this.keys.schedulePaused);
    return raw ? (JSON.parse(raw) as FleetPause) : null;
  }

  async recordTick(report: TickReport): Promise<void> {
    await this.#redis.set(this.keys.scheduleState, JSON.stringify(report));
  }

  async lastTick(): Promise<TickReport | null> {
    const raw = await this.#redis.get(this.keys.scheduleState);
    return raw ? (JSON.parse(raw) as TickReport) : null;
  }

  /** Due now (not claimed), overdue (deadline passed, in flight or not), in flight (claimed, lease running), held back after a failure, scheduled in all. */
  async counts(nowMs: number): Promise<{ due: number; overdue: number; inFlight: number; failing: number; scheduled: number }> {
    const k = this.keys;
    const now = String(nowMs);
    const r = await this.#redis
      .multi()
      .zcount(k.scheduleDue, '-inf', now)
      .zcount(k.scheduleDeadlines, '-inf', `(${now}`)
      .zcount(k.scheduleLeased, `(${now}`, '+inf')
      .zcard(k.scheduleFailing)
      .zcard(k.scheduleDue)
      .exec();
    const n = (i: number): number => Number(r?.[i]?.[1] ?? 0);
    return { due: n(0), overdue: n(1), inFlight: n(2), failing: n(3), scheduled: n(4) };
  }

  /** The first `limit` credentials held back after a failure, soonest retry first. */
  async failing(limit: number): Promise<Array<{ id: string; retryAtMs: number }>> {
    const flat = await this.#redis.zrange(this.keys.scheduleFailing, '0', String(limit - 1), 'WITHSCORES');
    const out: Array<{ id: string; retryAtMs: number }> = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ id: flat[i]!, retryAtMs: Number(flat[i + 1]) });
    return out;
  }

  /** Slots per policy in each range [from, to): one ZCOUNT each (O(ranges × policies × log n)). */
  async countSlots(policies: readonly string[], ranges: ReadonlyArray<{ fromMs: number; toMs: number }>): Promise<number[][]> {
    const pipe = this.#redis.pipeline();
    for (const r of ranges) for (const p of policies) pipe.zcount(this.keys.scheduleByPolicy(p), String(r.fromMs), `(${r.toMs}`);
    const res = (await pipe.exec()) ?? [];
    let i = 0;
    return ranges.map(() =>
      policies.map(() => {
        const [err, n] = res[i++] ?? [null, 0];
        if (err) throw err;
        return Number(n);
      }),
    );
  }

  async rebuildState(): Promise<RebuildState> {
    const h = await this.#redis.hgetall(this.keys.scheduleRebuild);
    return {
      plannedVersion: h.planned ?? null,
      rebuiltAtMs: h.at ? Number(h.at) : null,
      target: h.target ?? null,
      cursor: h.cursor ?? null,
    };
  }

  /** A rebuild step finished a page: where the next continues. */
  async rebuildProgress(target: string, cursor: string): Promise<void> {
    await this.#redis.hset(this.keys.scheduleRebuild, 'target', target, 'cursor', cursor);
  }

  async rebuildDone(version: string, atMs: number): Promise<void> {
    await this.#redis.multi().hset(this.keys.scheduleRebuild, 'planned', version, 'at', String(atMs)).hdel(this.keys.scheduleRebuild, 'target', 'cursor').exec();
  }

  /** Ask for a rebuild of everything (the next ticks do it, a page at a time). */
  async requestRebuild(): Promise<void> {
    await this.#redis.hdel(this.keys.scheduleRebuild, 'planned', 'target', 'cursor');
  }

  /** One rebuild at a time across processes (overlapping ticks would only repeat each other's pages). */
  async lockRebuild(owner: string, ms: number): Promise<boolean> {
    return (await this.#redis.set(this.keys.scheduleRebuildLock, owner, 'PX', ms, 'NX')) === 'OK';
  }

  async unlockRebuild(owner: string): Promise<void> {
    if ((await this.#redis.get(this.keys.scheduleRebuildLock)) === owner) await this.#redis.del(this.keys.scheduleRebuildLock);
  }
}
