import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { BatchEvent, BatchItem, BatchState, BatchStatus, Transition } from '../domain/batch.ts';
import { runScript } from './lua.ts';
import { redisKeys, type RedisKeys } from './keys.ts';
import { isoTime } from './iso.ts';

/**
 * Batches in Redis (issue 13 item 5). A batch is three keys, so the hot path never rewrites what
 * does not change:
 *
 * - `batch:<id>`: the record without its plan and items (status, waves, halt, history; a few KiB
 *   however large the batch), `{"rev":N,` first so the save script reads the revision without
 *   decoding;
 * - `batch:<id>:plan`: the credential ids in plan order, written once;
 * - `batch:<id>:items`: a hash credential id → item, written only for the credentials a change
 *   touched (a claim, an outcome).
 *
 * The domain's transitions touch items only of the credentials they name or of the current wave
 * (src/domain/batch.ts), so a runner works on a `view`: the record, the plan and the current
 * wave's items. Every write is compare-and-set on `rev`, with the batch's events appended to the
 * same stream as the rotations' (GET /v1/events) in the same script. A list index (sorted set by
 * creation time) pages batches newest first.
 */

const CREATE = readFileSync(new URL('./lua/batch-create.lua', import.meta.url), 'utf8');
const SAVE = readFileSync(new URL('./lua/batch-save.lua', import.meta.url), 'utf8');

/** A batch change on the events stream (`event: batch` on GET /v1/events). Never secret. */
export interface BatchStreamEvent {
  type: 'batch';
  /** The batch id. */
  id: string;
  /** The batch's status after the change. */
  status: BatchStatus;
  /** When it happened (ISO 8601). */
  at: string;
  /** What happened (the domain's BatchEvent type: planned, wave-started, halted, paused, …). */
  event: BatchEvent['type'];
  /** The wave it concerns, counted from 0 (the canary). */
  wave?: number;
  by?: string | null;
  detail: string;
  progress: BatchCounts & { currentWave: number; waves: number };
}

export interface BatchCounts {
  total: number;
  started: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  skipped: number;
}

/** The record as stored: the state less its plan and items. */
export type StoredBatch = Omit<BatchState, 'credentials' | 'items'> & { total: number };

export class BatchConflictError extends Error {
  constructor(readonly id: string) {
    super(`batch ${id} kept changing concurrently`);
  }
}

export function batchCounts(s: Pick<BatchState, 'waves'>): BatchCounts {
  const c: BatchCounts = { total: 0, started: 0, succeeded: 0, failed: 0, cancelled: 0, skipped: 0 };
  for (const w of s.waves) {
    c.total += w.size;
    c.started += w.started;
    c.succeeded += w.succeeded;
    c.failed += w.failed;
    c.cancelled += w.cancelled;
    c.skipped += w.skipped;
  }
  return c;
}

export function streamEventOf(s: Pick<BatchState, 'id' | 'status' | 'waves' | 'current'>, e: BatchEvent): BatchStreamEvent {
  return {
    type: 'batch',
    id: s.id,
    status: s.status,
    at: isoTime(e.at),
    event: e.type,
    ...(e.wave !== undefined ? { wave: e.wave } : {}),
    ...(e.by !== undefined ? { by: e.by } : {}),
    detail: e.detail,
    progress: { ...batchCounts(s), currentWave: s.current, waves: s.waves.length },
  };
}

function encode(s: BatchState): string {
  const { rev, credentials, items: _items, ...rest } = s;
  return JSON.stringify({ rev, ...rest, total: credentials.length });
}

function decode(json: string): StoredBatch {
  return JSON.parse(json) as StoredBatch;
}

export class BatchRepository {
  readonly keys: RedisKeys;
  readonly #redis: Redis;
  readonly #eventsMaxLen: number;

  constructor(redis: Redis, prefix: string, opts: { eventsMaxLen?: number } = {}) {
    this.#redis = redis;
    this.keys = redisKeys(prefix);
    this.#eventsMaxLen = opts.eventsMaxLen ?? 10_000;
  }

  #key(id: string): string {
    return this.keys.batch(id);
  }

  /** Store a new batch (with its `planned` event); false when the id is taken. */
  async create(s: BatchState): Promise<boolean> {
    const k = this.#key(s.id);
    const events = s.history.map((e) => JSON.stringify(streamEventOf(s, e)));
    const n = await runScript(this.#redis, CREATE, 4, k, `${k}:plan`, this.keys.batches, this.keys.events, s.id, encode(s), JSON.stringify(s.credentials), String(s.createdAt), String(this.#eventsMaxLen), ...events);
    return n === 1;
  }

  /** The record without plan and items: what the API shows. */
  async get(id: string): Promise<StoredBatch | undefined> {
    const json = await this.#redis.get(this.#key(id));
    return json ? decode(json) : undefined;
  }

  async plan(id: string): Promise<string[] | undefined> {
    const json = await this.#redis.get(`${this.#key(id)}:plan`);
    return json ? (JSON.parse(json) as string[]) : undefined;
  }

  /**
   * The state a transition needs: the record, the plan (pass it when known: it never changes) and
   * the items of the current wave. Undefined when there is no such batch.
   */
  async view(id: string, plan?: string[]): Promise<BatchState | undefined> {
    const [stored, credentials] = await Promise.all([this.get(id), plan ? Promise.resolve(plan) : this.plan(id)]);
    if (!stored || !credentials) return undefined;
    const { total: _total, ...rest } = stored;
    const w = stored.waves[stored.current];
    const items: Record<string, BatchItem> = {};
    if (w && w.started + w.skipped > 0) {
      const ids = credentials.slice(w.offset, w.offset + w.size);
      const values = await this.#redis.hmget(`${this.#key(id)}:items`, ...ids);
      values.forEach((v, i) => {
        if (v !== null) items[ids[i]!] = JSON.parse(v) as BatchItem;
      });
    }
    return { ...rest, credentials, items };
  }

  /** Every item the batch has (started or skipped credentials), for reports and tests. */
  async items(id: string): Promise<Record<string, BatchItem>> {
    const all = await this.#redis.hgetall(`${this.#key(id)}:items`);
    return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, JSON.parse(v) as BatchItem]));
  }

  /**
   * Write `next` if the batch is still at `prev.rev`; `events` go on the stream in the same step.
   * Items are written where `next` holds another object than `prev` (the domain copies what it
   * changes). False when another writer got there first: read again and decide again.
   */
  async save(prev: BatchState, next: Transition | BatchState, events: readonly BatchEvent[] = []): Promise<boolean> {
    const state = 'state' in next && 'events' in next ? next.state : (next as BatchState);
    const all = 'state' in next && 'events' in next ? [...next.events, ...events] : [...events];
    if (state === prev && all.length === 0) return true;
    const changed: string[] = [];
    if (state.items !== prev.items) {
      for (const [id, item] of Object.entries(state.items)) if (prev.items[id] !== item) changed.push(id, JSON.stringify(item));
    }
    const k = this.#key(prev.id);
    const result = await runScript(
      this.#redis,
      SAVE,
      3,
      k,
      `${k}:items`,
      this.keys.events,
      String(prev.rev),
      encode(state),
      String(this.#eventsMaxLen),
      String(changed.length / 2),
      ...changed,
      ...all.map((e) => JSON.stringify(streamEventOf(state, e))),
    );
    if (result === -1) throw new Error(`batch ${prev.id} not found`);
    return result === 1;
  }

  /**
   * Read, change, write until the write lands (another writer's change costs a re-read). `change`
   * returns undefined to leave the batch as it is. Returns the state written (or left), or
   * undefined when there is no such batch.
   */
  async update<T extends { state: BatchState; events: BatchEvent[] }>(id: string, change: (s: BatchState) => T | undefined): Promise<{ state: BatchState; result: T | undefined } | undefined> {
    let plan: string[] | undefined;
    for (let attempt = 0; attempt < 50; attempt++) {
      const s = await this.view(id, plan);
      if (!s) return undefined;
      plan = s.credentials;
      const t = change(s);
      if (!t) return { state: s, result: undefined };
      if (await this.save(s, t)) return { state: t.state, result: t };
    }
    throw new BatchConflictError(id);
  }

  /** Newest first. The cursor is opaque: `<createdAt>:<id>` of the last batch returned. */
  async list(opts: { limit: number; cursor?: string }): Promise<{ items: StoredBatch[]; nextCursor: string | null }> {
    const after = opts.cursor ? decodeBatchCursor(opts.cursor) : undefined;
    // The index orders ties (same millisecond) by id, descending, like the cursor's comparison.
    const max = after ? String(after.score) : '+inf';
    const chunk = opts.limit + 1;
    const ids: string[] = [];
    for (let offset = 0; ids.length <= opts.limit; offset += chunk) {
      const raw = await this.#redis.zrevrangebyscore(this.keys.batches, max, '-inf', 'WITHSCORES', 'LIMIT', offset, chunk);
      for (let i = 0; i < raw.length && ids.length <= opts.limit; i += 2) {
        const id = raw[i]!;
        if (after && Number(raw[i + 1]) === after.score && id >= after.id) continue;
        ids.push(id);
      }
      if (raw.length / 2 < chunk) break;
    }
    const page = ids.slice(0, opts.limit);
    const values = page.length ? await this.#redis.mget(page.map((id) => this.keys.batch(id))) : [];
    const items = values.filter((v): v is string => v !== null).map(decode);
    const last = items.at(-1);
    return { items, nextCursor: ids.length > opts.limit && last ? batchCursor(last.createdAt, last.id) : null };
  }
}

export function batchCursor(createdAt: number, id: string): string {
  return Buffer.from(`${createdAt}:${id}`).toString('base64url');
}

export function decodeBatchCursor(cursor: string): { score: number; id: string } | undefined {
  const m = /^(\d{1,16}):([0-9a-f-]{36})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  return m ? { score: Number(m[1]), id: m[2]! } : undefined;
}
