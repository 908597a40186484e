import type { Redis } from 'ioredis';
import { holdsAccount, STATUSES, type HistoryEntry, type RotationRecord, type RotationStatus } from '../domain/rotation.ts';
import { runScript } from './lua.ts';
import { redisKeys, type RedisKeys } from './keys.ts';
import { isoTime } from './iso.ts';

/**
 * Rotation records in Redis: one JSON string per rotation (record + history; about 1 KiB), sorted-set
 * indexes by creation time (all, per account, per status), the per-account in-flight lock, and an
 * events stream for the API and dashboard. Nothing secret is ever written here: records carry key
 * SIDs, never key secrets.
 *
 * Every write is a Lua script so the record, its indexes, the lock and the event move together.
 */

const HOLDS = `
-- holdsAccount() of src/domain/rotation.ts: in flight, or failed part-way (undo not completed).
local function holds(json)
  local r = cjson.decode(json)
  local s = r.status
  if s ~= 'succeeded' and s ~= 'failed' and s ~= 'cancelled' and s ~= 'rolled_back' then return true end
  return s == 'failed' and r.dryRun ~= true and not (type(r.undo) == 'table' and r.undo.completedAt)
end
`;

const CREATE = `${HOLDS}
local existing = redis.call('GET', KEYS[1])
if existing then
  local rec = redis.call('GET', ARGV[6] .. existing)
  if rec and holds(rec) then return existing end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[4])
return false
`;

// KEYS: record, lock, oldStatusIdx, newStatusIdx, events
// ARGV: expectedRev, json, id, score, releaseLock, event, maxlen
const UPDATE = `
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
if tostring(cjson.decode(cur).rev) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if KEYS[3] ~= KEYS[4] then
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
end
if ARGV[5] == '1' and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', 'e', ARGV[6])
return 1
`;

// A retry takes the per-account lock again, atomically with the write: another rotation that is
// in flight for the account wins, and its id is returned.
// KEYS: record, lock, oldStatusIdx, newStatusIdx, events
// ARGV: expectedRev, json, id, score, event, maxlen, recordKeyPrefix
const RESTART = `${HOLDS}
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
if tostring(cjson.decode(cur).rev) ~= ARGV[1] then return 0 end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[3] then
  local other = redis.call('GET', ARGV[7] .. holder)
  if other and holds(other) then return holder end
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
if KEYS[3] ~= KEYS[4] then
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*', 'e', ARGV[5])
return 1
`;

// Retention: finished records created before ARGV[2] go, with their index entries.
// ARGV: prefix, cutoffMs, batch
const PRUNE = `
local prefix, cutoff, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local removed = 0
for _, status in ipairs({'succeeded', 'failed', 'cancelled', 'rolled_back'}) do
  local idx = prefix .. ':status:' .. status
  local ids = redis.call('ZRANGEBYSCORE', idx, '-inf', cutoff, 'LIMIT', 0, batch - removed)
  for _, id in ipairs(ids) do
    local key = prefix .. ':rot:' .. id
    local rec = redis.call('GET', key)
    if rec then redis.call('ZREM', prefix .. ':acct:' .. cjson.decode(rec).accountSid .. ':rots', id) end
    redis.call('DEL', key)
    redis.call('ZREM', prefix .. ':rots', id)
    redis.call('ZREM', idx, id)
    removed = removed + 1
  end
  if removed >= batch then break end
end
return removed
`;

/** One change of a rotation, as the API's event stream and the dashboard see it. Never secret. */
export interface RotationEvent {
  type: 'rotation';
  id: string;
  accountSid: string;
  /** The record after the change. */
  status: RotationStatus;
  step: string;
  at: string;
  /** What happened: the history entry this change appended. */
  transition?: HistoryEntry;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export class RotationConflictError extends Error {
  constructor(readonly id: string) {
    super(`rotation ${id} was changed concurrently`);
  }
}

export class RotationRepository {
  readonly keys: RedisKeys;
  readonly #redis: Redis;
  readonly #eventsMaxLen: number;

  readonly #prefix: string;

  constructor(redis: Redis, prefix: string, opts: { eventsMaxLen?: number } = {}) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.keys = redisKeys(prefix);
    this.#eventsMaxLen = opts.eventsMaxLen ?? 10_000;
  }

  /**
   * Create a rotation unless one is in flight for the account: then return that one's id instead.
   */
  async create(rec: RotationRecord): Promise<{ created: true } | { created: false; existingId: string }> {
    const k = this.keys;
    const existing = (await runScript(this.#redis, 
      CREATE,
      6,
      k.accountLock(rec.accountSid),
      k.rotation(rec.id),
      k.allRotations,
      k.accountRotations(rec.accountSid),
      k.byStatus(rec.status),
      k.events,
      rec.id,
      encodeRecord(rec),
      String(Date.parse(rec.createdAt)),
      JSON.stringify(eventOf(rec, rec.history[0])),
      String(this.#eventsMaxLen),
      `${k.rotation('')}`,
    )) as string | null;
    return existing ? { created: false, existingId: existing } : { created: true };
  }

  async get(id: string): Promise<RotationRecord | undefined> {
    const json = await this.#redis.get(this.keys.rotation(id));
    return json ? decodeRecord(json) : undefined;
  }

  /** With `withoutHistory`, records come back with an empty history: history is most of a record's bytes. */
  async getMany(ids: string[], withoutHistory = false): Promise<RotationRecord[]> {
    if (ids.length === 0) return [];
    // As buffers: the client then decodes the page once rather than one string per record.
    const values = await this.#redis.mgetBuffer(ids.map((id) => this.keys.rotation(id)));
    const parts: Buffer[] = [];
    for (const v of values) {
      if (v === null) continue;
      parts.push(parts.length ? COMMA : OPEN);
      const cut = withoutHistory ? historyStart(v) : -1;
      if (cut < 0) parts.push(v);
      else parts.push(v.subarray(0, cut), HISTORY_END);
    }
    if (parts.length === 0) return [];
    parts.push(CLOSE);
    const recs = JSON.parse(Buffer.concat(parts).toString('utf8')) as Array<Record<string, unknown>>;
    for (const raw of recs) fromStored(raw, withoutHistory);
    return recs as unknown as RotationRecord[];
  }

  /**
   * Read-modify-write with optimistic concurrency (the record's `rev`). `change` returns the next
   * record, or undefined to leave it. Retries when another writer got there first.
   */
  async update(id: string, change: (rec: RotationRecord) => RotationRecord | undefined, transition?: HistoryEntry, base?: RotationRecord): Promise<RotationRecord> {
    for (let attempt = 0; attempt < 50; attempt++) {
      // `base` (the caller's last known copy) saves a read; a stale one just fails the check below.
      const rec = attempt === 0 && base ? base : await this.get(id);
      if (!rec) throw new Error(`rotation ${id} not found`);
      const next = change(rec);
      if (!next) return rec;
      const written: RotationRecord = { ...next, rev: rec.rev + 1 };
      const k = this.keys;
      const ok = (await runScript(this.#redis, 
        UPDATE,
        5,
        k.rotation(id),
        k.accountLock(rec.accountSid),
        k.byStatus(rec.status),
        k.byStatus(written.status),
        k.events,
        String(rec.rev),
        encodeRecord(written),
        id,
        String(Date.parse(written.createdAt)),
        holdsAccount(written) ? '0' : '1',
        JSON.stringify(eventOf(written, transition)),
        String(this.#eventsMaxLen),
      )) as number;
      if (ok === 1) return written;
      if (ok === -1) throw new Error(`rotation ${id} not found`);
    }
    throw new RotationConflictError(id);
  }

  /**
   * Put a finished rotation back in flight (a retry): `next` is written only if the record is still
   * at `expectedRev` and no other rotation of the account is in flight; the account lock is taken
   * in the same script.
   */
  async restart(
    current: RotationRecord,
    next: RotationRecord,
    transition: HistoryEntry,
  ): Promise<{ ok: true; record: RotationRecord } | { ok: false; conflict: 'changed' } | { ok: false; conflict: 'in_flight'; existingId: string }> {
    const written: RotationRecord = { ...next, rev: current.rev + 1 };
    const k = this.keys;
    const result = (await runScript(this.#redis, 
      RESTART,
      5,
      k.rotation(current.id),
      k.accountLock(current.accountSid),
      k.byStatus(current.status),
      k.byStatus(written.status),
      k.events,
      String(current.rev),
      encodeRecord(written),
      current.id,
      String(Date.parse(written.createdAt)),
      JSON.stringify(eventOf(written, transition)),
      String(this.#eventsMaxLen),
      k.rotation(''),
    )) as number | string;
    if (result === 1) return { ok: true, record: written };
    if (result === -1) throw new Error(`rotation ${current.id} not found`);
    if (result === 0) return { ok: false, conflict: 'changed' };
    return { ok: false, conflict: 'in_flight', existingId: String(result) };
  }

  /** Counts per status (the status indexes' sizes), for metrics. */
  async countByStatus(): Promise<Record<RotationStatus, number>> {
    const pipe = this.#redis.pipeline();
    for (const s of STATUSES) pipe.zcard(this.keys.byStatus(s));
    const results = (await pipe.exec()) ?? [];
    return Object.fromEntries(STATUSES.map((s, i) => [s, Number(results[i]?.[1] ?? 0)])) as Record<RotationStatus, number>;
  }

  /** Remove finished rotations created before `cutoffMs` (RETENTION_DAYS); returns how many went. */
  async prune(cutoffMs: number, batch = 500): Promise<number> {
    let total = 0;
    for (;;) {
      const removed = Number(await runScript(this.#redis, PRUNE, 0, this.#prefix, String(cutoffMs), String(batch)));
      total += removed;
      if (removed < batch) return total;
    }
  }

  /**
   * Newest first. The cursor is opaque: `<score>:<id>` of the last item returned. With
   * `withoutHistory` records come back with an empty history (list pages show summaries).
   */
  async list(opts: { accountSid?: string; status?: RotationStatus; limit: number; cursor?: string; withoutHistory?: boolean }): Promise<Page<RotationRecord>> {
    const k = this.keys;
    // Pick the smallest index that answers the query; filter the other criterion in memory.
    const index = opts.accountSid ? k.accountRotations(opts.accountSid) : opts.status ? k.byStatus(opts.status) : k.allRotations;
    const filter = (r: RotationRecord): boolean => (!opts.status || r.status === opts.status) && (!opts.accountSid || r.accountSid === opts.accountSid);
    const withoutHistory = opts.withoutHistory ?? false;
    const items: RotationRecord[] = [];
    let cursor = opts.cursor ? decodeCursor(opts.cursor) : undefined;
    for (let guard = 0; guard < 20 && items.length < opts.limit; guard++) {
      const max = cursor ? `(${cursor.score}` : '+inf';
      // Same-millisecond ids share a score: fetch them separately so none is skipped.
      const ties = cursor ? await this.#redis.zrangebyscore(index, String(cursor.score), String(cursor.score)) : [];
      const tied = cursor ? ties.filter((id) => id < cursor!.id).sort().reverse() : [];
      const want = opts.limit - items.length + 1;
      const ids = [...tied, ...(await this.#redis.zrevrangebyscore(index, max, '-inf', 'LIMIT', 0, want))];
      if (ids.length === 0) return { items, nextCursor: null };
      const recs = await this.getMany(ids.slice(0, want), withoutHistory);
      for (const r of recs) {
        if (items.length === opts.limit) return { items, nextCursor: encodeCursor(items.at(-1)!) };
        if (filter(r)) items.push(r);
      }
      const last = recs.at(-1);
      if (!last || ids.length < want) return { items, nextCursor: null };
      cursor = { score: Date.parse(last.createdAt), id: last.id };
    }
    return { items, nextCursor: items.length ? encodeCursor(items.at(-1)!) : null };
  }

  async inFlightFor(accountSid: string): Promise<string | undefined> {
    return (await this.#redis.get(this.keys.accountLock(accountSid))) ?? undefined;
  }

  /** Ids with a given status, oldest first (for recovery sweeps). */
  async idsWithStatus(status: RotationStatus, limit = 1000): Promise<string[]> {
    return this.#redis.zrange(this.keys.byStatus(status), "0", String(limit - 1));
  }

  /** Events after `afterId` (a stream id), oldest first. */
  async events(afterId: string, count: number): Promise<Array<{ id: string; event: RotationEvent }>> {
    const rows = (await this.#redis.xrange(this.keys.events, afterId === '0' ? '-' : `(${afterId}`, '+', 'COUNT', count)) as Array<[string, string[]]>;
    return rows.map(([id, fields]) => ({ id, event: JSON.parse(fields[1] ?? '{}') as RotationEvent }));
  }
}

function eventOf(rec: RotationRecord, transition?: HistoryEntry): RotationEvent {
  return { type: 'rotation', id: rec.id, accountSid: rec.accountSid, status: rec.status, step: rec.step, at: rec.updatedAt, ...(transition ? { transition } : {}) };
}

function encodeCursor(rec: RotationRecord): string {
  return Buffer.from(`${Date.parse(rec.createdAt)}:${rec.id}`).toString('base64url');
}

export function decodeCursor(cursor: string): { score: number; id: string } | undefined {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const m = /^(\d{1,16}):([0-9a-f-]{36})$/.exec(text);
  return m ? { score: Number(m[1]), id: m[2] as string } : undefined;
}

/**
 * Stored form of a record: timestamps as epoch milliseconds instead of ISO strings, which keeps a
 * finished record (five history entries) near 1.2 KB — under jemalloc's 1280-byte class — so a
 * retained record with its index entries stays within 2 KiB of Redis memory. History goes last so
 * a list page can skip it (historyStart). Callers only ever see ISO strings.
 */
const TOP_TIMES = ['createdAt', 'updatedAt', 'operationalizedAt', 'promoteAfter', 'finishedAt'] as const;

export function encodeRecord(rec: RotationRecord): string {
  const { history, ...rest } = rec;
  const out: Record<string, unknown> = rest;
  for (const k of TOP_TIMES) if (typeof rec[k] === 'string') out[k] = Date.parse(rec[k] as string);
  if (rec.undo?.deleteAfter || rec.undo?.completedAt) {
    out.undo = { ...rec.undo, ...(rec.undo.deleteAfter ? { deleteAfter: Date.parse(rec.undo.deleteAfter) } : {}), ...(rec.undo.completedAt ? { completedAt: Date.parse(rec.undo.completedAt) } : {}) };
  }
  out.history = history.map((h) => {
    const e: Record<string, unknown> = { ...h, at: Date.parse(h.at) };
    if (h.startedAt) e.startedAt = Date.parse(h.startedAt);
    return e;
  });
  return JSON.stringify(out);
}

const HISTORY_KEY = Buffer.from('"history":[');
const HISTORY_END = Buffer.from(']}');
const [OPEN, COMMA, CLOSE] = ['[', ',', ']'].map((c) => Buffer.from(c)) as [Buffer, Buffer, Buffer];

/**
 * Where a stored record's history entries start, when it stores history last (encodeRecord does):
 * only history is an array, so a record ending in `]}` ends with it, and the first `"history":[`
 * is its key (a string value's quotes are escaped). -1 otherwise: the record is used whole.
 */
function historyStart(json: Buffer): number {
  const n = json.length;
  if (n < 2 || json[n - 2] !== 0x5d || json[n - 1] !== 0x7d) return -1;
  const at = json.indexOf(HISTORY_KEY);
  return at < 0 ? -1 : at + HISTORY_KEY.length;
}

export function decodeRecord(json: string, withoutHistory = false): RotationRecord {
  return fromStored(JSON.parse(json) as Record<string, unknown>, withoutHistory);
}

/** A parsed stored record as callers see it, in place. Helpers at module level: under tsx every closure created costs a `__name` call. */
function fromStored(raw: Record<string, unknown>, withoutHistory: boolean): RotationRecord {
  for (const k of TOP_TIMES) if (raw[k] !== undefined) raw[k] = iso(raw[k]);
  raw.history = withoutHistory ? [] : (raw.history as Array<Record<string, unknown>>).map(historyFromStored);
  const undo = raw.undo as Record<string, unknown> | undefined;
  if (undo) raw.undo = { ...undo, ...(undo.deleteAfter !== undefined ? { deleteAfter: iso(undo.deleteAfter) } : {}), ...(undo.completedAt !== undefined ? { completedAt: iso(undo.completedAt) } : {}) };
  return raw as unknown as RotationRecord;
}

function historyFromStored(h: Record<string, unknown>): Record<string, unknown> {
  return { ...h, at: iso(h.at), ...(h.startedAt !== undefined ? { startedAt: iso(h.startedAt) } : {}) };
}

function iso(v: unknown): unknown {
  return typeof v === 'number' ? isoTime(v) : v;
}
