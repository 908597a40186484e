import type { Redis } from 'ioredis';
import { holdsCredential, rotationSummary, STATUSES, undoRequestOf, type HistoryEntry, type RotationRecord, type RotationStatus, type UndoRequest, type UndoState } from '../domain/rotation.ts';
import { runScript } from './lua.ts';
import { redisKeys, type RedisKeys } from './keys.ts';
import { isoTime } from './iso.ts';
import { DEFAULT_CREDENTIAL } from '../domain/credential.ts';
import type { BatchStreamEvent } from './batches.ts';

/**
 * Rotation records in Redis: one string per rotation (its list item, then the rest with its
 * history; under 1 KiB once finished: see encodeRecord), sorted-set indexes by creation time (all,
 * per account, per status), the per-credential in-flight lock (keys.credentialLock), and an events
 * stream for the API and dashboard. Nothing secret is ever written here: records carry key SIDs, never key secrets.
 *
 * Every write is a Lua script so the record, its indexes, the lock and the event move together.
 */

// A stored record is '<public summary>\n<private part>' (encodeRecord), or one JSON object when an
// earlier version wrote it. JSON text never holds a raw newline, so the first one is the separator.
const RECORD = `
local function parts(json)
  local nl = string.find(json, '\\n', 1, true)
  if not nl then
    local r = cjson.decode(json)
    return r, r
  end
  return cjson.decode(string.sub(json, 1, nl - 1)), cjson.decode(string.sub(json, nl + 1))
end
local function rev_of(json)
  local rev = string.match(json, '\\n{"rev":(%d+)')
  if rev then return rev end
  return tostring(cjson.decode(json).rev)
end
`;

const HOLDS = `${RECORD}
-- holdsCredential() of src/domain/rotation.ts: in flight, or failed part-way (undo not completed)
-- and not abandoned.
local function holds(json)
  local r, x = parts(json)
  local s = r.status
  if s ~= 'succeeded' and s ~= 'failed' and s ~= 'cancelled' and s ~= 'rolled_back' then return true end
  return s == 'failed' and r.dryRun ~= true and not (type(x.undo) == 'table' and x.undo.completedAt) and type(x.abandoned) ~= 'table'
end
`;

// KEYS: the credential's lock, record, allIdx, accountIdx, statusIdx, events
// ARGV: id, json, score, event, maxlen, recordKeyPrefix
const CREATE = `${HOLDS}
-- A record under this id already: a retried start with a caller-chosen id answers it.
if redis.call('EXISTS', KEYS[2]) == 1 then return ARGV[1] end
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
const UPDATE = `${RECORD}
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
if rev_of(cur) ~= ARGV[1] then return 0 end
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

// A retry takes the credential's lock again, atomically with the write: another rotation that is
// in flight for the credential wins, and its id is returned.
// KEYS: record, lock, oldStatusIdx, newStatusIdx, events
// ARGV: expectedRev, json, id, score, event, maxlen, recordKeyPrefix
const RESTART = `${HOLDS}
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
if rev_of(cur) ~= ARGV[1] then return 0 end
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
// KEYS[1]: the index of every rotation (also what routes the script to its slot in a Redis
// Cluster: a script declaring no key would go to any node). ARGV: prefix, cutoffMs, batch
const PRUNE = `${RECORD}
local prefix, cutoff, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local removed = 0
for _, status in ipairs({'succeeded', 'failed', 'cancelled', 'rolled_back'}) do
  local idx = prefix .. ':status:' .. status
  local ids = redis.call('ZRANGEBYSCORE', idx, '-inf', cutoff, 'LIMIT', 0, batch - removed)
  for _, id in ipairs(ids) do
    local key = prefix .. ':rot:' .. id
    local rec = redis.call('GET', key)
    if rec then redis.call('ZREM', prefix .. ':acct:' .. parts(rec).accountSid .. ':rots', id) end
    redis.call('DEL', key)
    redis.call('ZREM', prefix .. ':rots', id)
    redis.call('ZREM', idx, id)
    removed = removed + 1
  end
  if removed >= batch then break end
end
return removed
`;

// The next ids of an index, newest first, as one text '<score> <id> <score> <id> …': ids tied at
// the cursor's score and after its id first (same-millisecond ids share a score; in the index's
// order), then up to ARGV[2] below it. One string rather than an array: ioredis decodes a reply
// element by element, and a page's hundred elements cost the API more than the page itself.
// KEYS: index
// ARGV: max ('+inf' or '(<score>'), count, cursor score ('' for the first page), cursor id
const PAGE_IDS = `
local out = {}
if ARGV[3] ~= '' then
  local ties = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], ARGV[3])
  table.sort(ties, function(a, b) return a > b end)
  for _, id in ipairs(ties) do
    if id < ARGV[4] then out[#out + 1] = ARGV[3] .. ' ' .. id end
  end
end
local ranked = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
for i = 1, #ranked, 2 do out[#out + 1] = ranked[i + 1] .. ' ' .. ranked[i] end
return table.concat(out, ' ')
`;

/** One change of a rotation, as the API's event stream and the dashboard see it. Never secret. */
export interface RotationEvent {
  type: 'rotation';
  id: string;
  accountSid: string;
  /** The managed credential's name (absent from events written by earlier versions: `default`). */
  credential: string;
  /** The record after the change. */
  status: RotationStatus;
  step: string;
  at: string;
  /** What happened: the history entry this change appended. */
  transition?: HistoryEntry;
  /** An accepted cancel or rollback, on every change from then on. */
  undoRequested?: UndoRequest;
  /** In promote with reporting consumers: k of n on the new key (consumer gate, issue 15). */
  consumers?: { onNewKey: number; total: number; lagging: string[] };
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
   * Create a rotation unless one is in flight for its credential (subaccount and name): then return
   * that one's id instead. A record that exists under `rec.id` already is not written again: its own
   * id comes back.
   */
  async create(rec: RotationRecord): Promise<{ created: true } | { created: false; existingId: string }> {
    const k = this.keys;
    const existing = (await runScript(this.#redis, 
      CREATE,
      6,
      k.credentialLock(rec.accountSid, rec.credential),
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

  async getMany(ids: string[]): Promise<RotationRecord[]> {
    if (ids.length === 0) return [];
    const values = await this.#redis.mget(ids.map((id) => this.keys.rotation(id)));
    return values.filter((v): v is string => v !== null).map((v) => decodeRecord(v));
  }

  /**
   * A page of list items (GET /v1/rotations), newest first, each the JSON text the API serves, cut
   * from the stored records (encodeRecord puts each record's item on its first line): nothing is
   * parsed or serialised except records an earlier version wrote, or when a filter applies on top
   * of the index read (status or credential on an account's index, credential on any). The records
   * come with a plain MGET — a script that cut them in Redis cost Redis 150 µs a page against 4 µs,
   * as Lua copies every value twice. Same order and cursors as list().
   */
  async summaryPage(opts: ListFilter & { limit: number; cursor?: string }): Promise<{ items: Buffer[]; nextCursor: string | null }> {
    const k = this.keys;
    const index = opts.accountSid ? k.accountRotations(opts.accountSid) : opts.status ? k.byStatus(opts.status) : k.allRotations;
    // Only a filter the index does not answer is checked record by record.
    const filter: ItemFilter = { status: opts.accountSid ? opts.status : undefined, credential: opts.credential };
    const items: Buffer[] = [];
    let cursor = opts.cursor ? decodeCursor(opts.cursor) : undefined;
    for (let guard = 0; guard < 20; guard++) {
      const want = opts.limit - items.length + 1;
      const text = (await runScript(this.#redis, PAGE_IDS, 1, index, cursor ? `(${cursor.score}` : '+inf', String(want), cursor ? String(cursor.score) : '', cursor?.id ?? '')) as string;
      const words = text ? text.split(' ') : [];
      const ids: string[] = [];
      const scores: number[] = [];
      for (let i = 0; i < words.length && ids.length < want; i += 2) {
        scores.push(Number(words[i]));
        ids.push(words[i + 1]!);
      }
      if (ids.length === 0) return { items, nextCursor: null };
      const values = await this.#redis.mgetBuffer(ids.map((id) => k.rotation(id)));
      for (let i = 0; i < ids.length; i++) {
        if (items.length === opts.limit) return { items, nextCursor: cursorOf(scores[i - 1]!, ids[i - 1]!) };
        const item = summaryBytes(values[i] ?? null, filter);
        if (item) items.push(item);
      }
      if (ids.length < want) return { items, nextCursor: null };
      cursor = { score: scores.at(-1)!, id: ids.at(-1)! };
    }
    // Twenty batches passed over without filling the page (a narrow filter): the client reads on.
    return { items, nextCursor: cursor ? cursorOf(cursor.score, cursor.id) : null };
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
        k.credentialLock(rec.accountSid, rec.credential),
        k.byStatus(rec.status),
        k.byStatus(written.status),
        k.events,
        String(rec.rev),
        encodeRecord(written),
        id,
        String(Date.parse(written.createdAt)),
        holdsCredential(written) ? '0' : '1',
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
   * at `expectedRev` and no other rotation of its credential is in flight; the credential's lock is
   * taken in the same script.
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
      k.credentialLock(current.accountSid, current.credential),
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
      const removed = Number(await runScript(this.#redis, PRUNE, 1, this.keys.allRotations, this.#prefix, String(cutoffMs), String(batch)));
      total += removed;
      if (removed < batch) return total;
    }
  }

  /** Newest first, whole records. The cursor is opaque: `<score>:<id>` of the last item returned. */
  async list(opts: ListFilter & { limit: number; cursor?: string }): Promise<Page<RotationRecord>> {
    const k = this.keys;
    // Pick the smallest index that answers the query; filter the other criterion in memory.
    const index = opts.accountSid ? k.accountRotations(opts.accountSid) : opts.status ? k.byStatus(opts.status) : k.allRotations;
    const filter = (r: RotationRecord): boolean =>
      (!opts.status || r.status === opts.status) && (!opts.accountSid || r.accountSid === opts.accountSid) && (!opts.credential || r.credential === opts.credential);
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
      const recs = await this.getMany(ids.slice(0, want));
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

  /**
   * Which of `ids` are rotations of this account that Rotator has a record of (its per-account
   * index), each with the name of the credential it rotated: orphan cleanup may delete only keys of
   * the credential it is rotating (another credential's key is held by that credential's entry, or
   * was just created by its rotation in flight).
   */
  async knownRotations(accountSid: string, ids: readonly string[]): Promise<Map<string, string>> {
    const known = new Map<string, string>();
    if (ids.length === 0) return known;
    const pipe = this.#redis.pipeline();
    for (const id of ids) pipe.zscore(this.keys.accountRotations(accountSid), id);
    const results = (await pipe.exec()) ?? [];
    const indexed = ids.filter((_, i) => {
      const [err, score] = results[i]!;
      if (err) throw err;
      return score !== null && score !== undefined;
    });
    // A record pruned since its index entry was read is no longer known: its key is left alone.
    for (const rec of await this.getMany(indexed)) if (rec.accountSid === accountSid) known.set(rec.id, rec.credential);
    return known;
  }

  /** The rotation holding a credential's lock, if any (the `default` credential unless named). */
  async inFlightFor(accountSid: string, credential: string = DEFAULT_CREDENTIAL): Promise<string | undefined> {
    return (await this.#redis.get(this.keys.credentialLock(accountSid, credential))) ?? undefined;
  }

  /** Ids with a given status, oldest first (for recovery sweeps). */
  async idsWithStatus(status: RotationStatus, limit = 1000): Promise<string[]> {
    return this.#redis.zrange(this.keys.byStatus(status), "0", String(limit - 1));
  }

  /** Events after `afterId` (a stream id), oldest first: rotations' and, on the same stream, batches'. */
  async events(afterId: string, count: number): Promise<Array<{ id: string; event: RotationEvent | BatchStreamEvent }>> {
    const rows = (await this.#redis.xrange(this.keys.events, afterId === '0' ? '-' : `(${afterId}`, '+', 'COUNT', count)) as Array<[string, string[]]>;
    return rows.map(([id, fields]) => ({ id, event: JSON.parse(fields[1] ?? '{}') as RotationEvent | BatchStreamEvent }));
  }
}

function eventOf(rec: RotationRecord, transition?: HistoryEntry): RotationEvent {
  const undoRequested = undoRequestOf(rec);
  const consumers = rec.consumers ? { onNewKey: rec.consumers.onNewKey, total: rec.consumers.total, lagging: rec.consumers.lagging.map((l) => l.consumer) } : undefined;
  return { type: 'rotation', id: rec.id, accountSid: rec.accountSid, credential: rec.credential, status: rec.status, step: rec.step, at: rec.updatedAt, ...(transition ? { transition } : {}), ...(undoRequested ? { undoRequested } : {}), ...(consumers ? { consumers } : {}) };
}

function encodeCursor(rec: RotationRecord): string {
  return cursorOf(Date.parse(rec.createdAt), rec.id);
}

function cursorOf(score: number, id: string): string {
  return Buffer.from(`${score}:${id}`).toString('base64url');
}

/** What a list page filters on. */
export interface ListFilter {
  accountSid?: string;
  status?: RotationStatus;
  credential?: string;
}

/** The filters summaryPage checks item by item (those its index does not answer). */
interface ItemFilter {
  status: RotationStatus | undefined;
  credential: string | undefined;
}

// An item that names its credential does so right after its account SID (rotationSummary's order),
// within its first bytes: `{"id":"<36>","kind":"<kind>","accountSid":"AC<32>","credential":"`.
const CREDENTIAL_FIELD = Buffer.from('","credential":"');
const CREDENTIAL_FIELD_WITHIN = 160;

/**
 * A stored record's list item: its first line, or rendered from the record when an earlier version
 * wrote it (one object; or an item without `credential`, from before managed credentials).
 * Undefined when missing or filtered out.
 */
function summaryBytes(stored: Buffer | null, filter: ItemFilter): Buffer | undefined {
  if (!stored) return undefined;
  const nl = stored.indexOf(0x0a);
  const item = nl < 0 ? undefined : stored.subarray(0, nl);
  if (!item || item.subarray(0, CREDENTIAL_FIELD_WITHIN).indexOf(CREDENTIAL_FIELD) < 0) {
    // With its history: the item's undoRequested may take its time from there (undoRequestOf).
    const rec = decodeRecord(stored.toString('utf8'));
    if ((filter.status && rec.status !== filter.status) || (filter.credential && rec.credential !== filter.credential)) return undefined;
    return Buffer.from(JSON.stringify(rotationSummary(rec)));
  }
  if (filter.status || filter.credential) {
    const parsed = JSON.parse(item.toString('utf8')) as { status: string; credential: string };
    if ((filter.status && parsed.status !== filter.status) || (filter.credential && parsed.credential !== filter.credential)) return undefined;
  }
  return item;
}

export function decodeCursor(cursor: string): { score: number; id: string } | undefined {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const m = /^(\d{1,16}):([0-9a-f-]{36})$/.exec(text);
  return m ? { score: Number(m[1]), id: m[2] as string } : undefined;
}

/**
 * Stored form of a record, two JSON texts on one line each:
 *
 *   <the list item, exactly as GET /v1/rotations serves it>\n{"rev":N, <the rest>, "history":[…]}
 *
 * A list page is then the first lines of its records joined by commas: nothing to parse or
 * serialise (summaryPage). The second text holds `rev` first (the update
 * scripts read it without decoding), whatever the summary does not carry exactly — the full undo
 * state, an oldKeySid of null (a bootstrap: decided, nothing to replace), restarts, and any field a
 * later version adds — and the history, each entry an array with its times as epoch milliseconds.
 * A finished record stays under 1 KiB (jemalloc's 1024-byte class), so one retained with its index
 * entries stays within the 2 KiB the benchmark allows. Callers only ever see ISO strings.
 *
 * Records an earlier version wrote (one JSON object, epoch-ms times, history last or first; or this
 * form without `credential`) still read, as rotations of the `default` credential; they are
 * rewritten in this form on their next change.
 */
/** List-item fields that are views of the rest (undo's public part, the request behind it): never read back from the item. */
const DERIVED = ['undo', 'undoRequested'] as const;
const SUMMARY_FIELDS: ReadonlySet<string> = new Set(['id', 'kind', 'accountSid', 'credential', 'status', 'step', 'oldKeySid', 'newKeySid', 'reason', 'dryRun', 'trigger', 'requestedBy', 'createdAt', 'updatedAt', 'operationalizedAt', 'promoteAfter', 'finishedAt', 'attempts', 'error', 'lastError']);
/** Summary fields that are null there when absent from the record. */
const NULLABLE = ['oldKeySid', 'newKeySid', 'reason', 'requestedBy', 'operationalizedAt', 'promoteAfter', 'finishedAt'] as const;
const HISTORY_FIELDS = ['step', 'status', 'at', 'detail', 'startedAt', 'by', 'count'] as const;

export function encodeRecord(rec: RotationRecord): string {
  const rest: Record<string, unknown> = { rev: rec.rev };
  for (const [k, v] of Object.entries(rec)) {
    if (v === undefined || k === 'rev' || k === 'history' || summaryCarries(k, v)) continue;
    rest[k] = k === 'undo' ? storedUndo(v as UndoState) : v;
  }
  const created = Date.parse(rec.createdAt);
  rest.history = rec.history.map((h) => storedHistory(h, created));
  return `${JSON.stringify(rotationSummary(rec))}\n${JSON.stringify(rest)}`;
}

/**
 * Whether the list item holds field `k` of the record exactly, so the rest need not: not an
 * oldKeySid of null (the item shows null for absent too), nor an error with more than the item's
 * {code, message[, at]}.
 */
function summaryCarries(k: string, v: unknown): boolean {
  if (!SUMMARY_FIELDS.has(k)) return false;
  if (k === 'oldKeySid') return v !== null;
  if (k !== 'error' && k !== 'lastError') return true;
  const keys = k === 'error' ? ['code', 'message'] : ['code', 'message', 'at'];
  const o = v as Record<string, unknown>;
  return Object.keys(o).length === keys.length && keys.every((f) => typeof o[f] === 'string');
}

/** The undo state with its times as epoch milliseconds. */
const UNDO_TIMES = ['deleteAfter', 'completedAt', 'requestedAt'] as const;

function storedUndo(undo: UndoState): Record<string, unknown> {
  const out: Record<string, unknown> = { ...undo };
  for (const k of UNDO_TIMES) if (undo[k]) out[k] = Date.parse(undo[k]);
  return out;
}

/**
 * [step, status, at, detail, startedAt, by, count], trailing absent ones left off. `at` is stored as
 * milliseconds after the record's creation and `startedAt` as milliseconds before `at`: a few
 * digits each instead of thirteen.
 */
function storedHistory(h: HistoryEntry, created: number): unknown[] {
  const at = Date.parse(h.at);
  const row: unknown[] = [h.step, h.status, at - created, h.detail ?? null, h.startedAt ? at - Date.parse(h.startedAt) : null, h.by ?? null, h.count ?? null];
  while (row.length > 3 && row.at(-1) === null) row.pop();
  return row;
}

function historyFromRow(row: unknown[], created: number): HistoryEntry {
  const at = created + (row[2] as number);
  const h: Record<string, unknown> = { step: row[0], status: row[1], at: isoTime(at) };
  for (let i = 3; i < HISTORY_FIELDS.length; i++) {
    const v = row[i];
    if (v === null || v === undefined) continue;
    h[HISTORY_FIELDS[i]!] = i === 4 ? isoTime(at - (v as number)) : v;
  }
  return h as unknown as HistoryEntry;
}

export function decodeRecord(json: string): RotationRecord {
  const nl = json.indexOf('\n');
  if (nl < 0) return withCredential(fromStored(JSON.parse(json) as Record<string, unknown>));
  const rec = JSON.parse(json.slice(0, nl)) as Record<string, unknown>;
  const rest = JSON.parse(json.slice(nl + 1)) as Record<string, unknown>;
  for (const k of NULLABLE) if (rec[k] === null) delete rec[k];
  for (const k of DERIVED) delete rec[k];
  for (const [k, v] of Object.entries(rest)) {
    if (k === 'history') rec.history = (v as unknown[][]).map((row) => historyFromRow(row, Date.parse(rec.createdAt as string)));
    else if (k === 'undo') rec.undo = undoFromStored(v as Record<string, unknown>);
    else rec[k] = v;
  }
  return withCredential(rec as unknown as RotationRecord);
}

/** Records from before managed credentials rotated a subaccount's one key: its `default` credential. */
function withCredential(rec: RotationRecord): RotationRecord {
  if (typeof rec.credential !== 'string') rec.credential = DEFAULT_CREDENTIAL;
  return rec;
}

function undoFromStored(undo: Record<string, unknown>): Record<string, unknown> {
  const out = { ...undo };
  for (const k of UNDO_TIMES) if (undo[k] !== undefined) out[k] = iso(undo[k]);
  return out;
}

/** Earlier versions' layout: one object, these times as epoch milliseconds, history entries as objects. */
const TOP_TIMES = ['createdAt', 'updatedAt', 'operationalizedAt', 'promoteAfter', 'finishedAt'] as const;

/** A parsed record of an earlier version's layout as callers see it, in place. */
function fromStored(raw: Record<string, unknown>): RotationRecord {
  for (const k of TOP_TIMES) if (raw[k] !== undefined) raw[k] = iso(raw[k]);
  raw.history = (raw.history as Array<Record<string, unknown>>).map(historyFromStored);
  const undo = raw.undo as Record<string, unknown> | undefined;
  if (undo) raw.undo = undoFromStored(undo);
  return raw as unknown as RotationRecord;
}

function historyFromStored(h: Record<string, unknown>): Record<string, unknown> {
  return { ...h, at: iso(h.at), ...(h.startedAt !== undefined ? { startedAt: iso(h.startedAt) } : {}) };
}

function iso(v: unknown): unknown {
  return typeof v === 'number' ? isoTime(v) : v;
}
