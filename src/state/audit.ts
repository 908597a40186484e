import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redisKeys, type RedisKeys } from './keys.ts';

/**
 * The audit trail: an append-only Redis stream in which every entry carries the hash of the one
 * before it (`prev`) and its own `hash` = sha256(prev + canonical JSON of the entry). Changing,
 * deleting or reordering an entry breaks a link that `verifyAuditChain` finds; the head key holds
 * the last hash, so losing the newest entries is found too.
 *
 * Entries name who did what to which rotation or account, from where, and the outcome. Never a
 * secret: callers pass principal names, SIDs, ids and short texts only.
 */

export const GENESIS = '0'.repeat(64);

export interface AuditFields {
  /** `api` (an HTTP request that changes something) or `rotation` (a step transition by a worker). */
  kind: 'api' | 'rotation';
  /** Who: the token or OIDC principal name, or the worker (host:pid). */
  actor: string;
  role?: string;
  /** What: `rotation.start`, `rotation.cancel`…, or the history event of a step (`step.completed`). */
  action: string;
  rotationId?: string;
  accountSid?: string;
  step?: string;
  detail?: string;
  /** From where: the client address (as Fastify's trustProxy resolves it). */
  ip?: string;
  requestId?: string;
  /** The HTTP status the request was answered with. */
  status?: number;
}

export interface AuditEntry extends AuditFields {
  /** The stream id (ms-seq): position and cursor. */
  id: string;
  at: string;
  prev: string;
  hash: string;
}

/** JSON with object keys sorted at every level and undefined members dropped: one text per value. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

export function chainHash(prev: string, canonical: string): string {
  return createHash('sha256').update(prev, 'utf8').update(canonical, 'utf8').digest('hex');
}

// Compare-and-append: written only if the head is still the hash the caller chained to; otherwise
// the current head comes back and the caller re-hashes. Appenders in any number of processes
// therefore form one chain.
// KEYS: stream, head   ARGV: expectedPrev, entryJson, hash, genesis
const APPEND = `
local head = redis.call('GET', KEYS[2])
if not head then head = ARGV[4] end
if head ~= ARGV[1] then return {0, head} end
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[2], 'prev', ARGV[1], 'hash', ARGV[3])
redis.call('SET', KEYS[2], ARGV[3])
return {1, id}
`;

export interface AuditQuery {
  accountSid?: string;
  rotationId?: string;
  /** Only entries at or after this time (ms since epoch). */
  sinceMs?: number;
  limit: number;
  /** Stream id of the last entry of the previous page (exclusive). */
  cursor?: string;
}

export const STREAM_ID = /^\d{1,20}-\d{1,20}$/;

/** At most this many entries are read for one page of a filtered query; the cursor continues from there. */
const SCAN_BUDGET = 5_000;
const BATCH = 500;

type Row = [string, string[]];

export class AuditLog {
  readonly #redis: Redis;
  readonly #keys: RedisKeys;
  #head: string | undefined;
  /** Appends from this process go one at a time, so they do not race each other for the head. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#keys = redisKeys(prefix);
  }

  append(fields: AuditFields, now: number = Date.now()): Promise<AuditEntry> {
    const run = this.#tail.then(() => this.#append(fields, now));
    this.#tail = run.catch(() => undefined);
    return run;
  }

  async #append(fields: AuditFields, now: number): Promise<AuditEntry> {
    const body = { ...fields, at: new Date(now).toISOString() };
    const json = canonicalJson(body);
    let prev = this.#head ?? ((await this.#redis.get(this.#keys.auditHead)) || GENESIS);
    for (let attempt = 0; attempt < 100; attempt++) {
      const hash = chainHash(prev, json);
      const [ok, value] = (await this.#redis.eval(APPEND, 2, this.#keys.audit, this.#keys.auditHead, prev, json, hash, GENESIS)) as [number, string];
      if (ok === 1) {
        this.#head = hash;
        return { ...body, id: value, prev, hash };
      }
      prev = value;
    }
    this.#head = undefined;
    throw new Error('audit append kept losing the race for the chain head');
  }

  /** Newest first, filtered; a page may hold fewer than `limit` entries when the scan budget ran out (follow nextCursor). */
  async list(q: AuditQuery): Promise<{ items: AuditEntry[]; nextCursor: string | null }> {
    const items: AuditEntry[] = [];
    const min = q.sinceMs !== undefined ? `${Math.max(0, Math.floor(q.sinceMs))}-0` : '-';
    let max = q.cursor ? `(${q.cursor}` : '+';
    let scanned = 0;
    for (;;) {
      const rows = (await this.#redis.xrevrange(this.#keys.audit, max, min, 'COUNT', BATCH)) as Row[];
      for (const row of rows) {
        scanned++;
        const entry = parseRow(row);
        if (entry && matches(entry, q)) {
          items.push(entry);
          if (items.length === q.limit) return { items, nextCursor: row[0] };
        }
      }
      const last = rows.at(-1);
      if (rows.length < BATCH || !last) return { items, nextCursor: null };
      max = `(${last[0]}`;
      if (scanned >= SCAN_BUDGET) return { items, nextCursor: last[0] };
    }
  }

  /** Oldest first, for export: every entry with its chain fields. */
  async *entries(q: Omit<AuditQuery, 'limit' | 'cursor'> = {}): AsyncGenerator<AuditEntry> {
    let min = q.sinceMs !== undefined ? `${Math.max(0, Math.floor(q.sinceMs))}-0` : '-';
    for (;;) {
      const rows = (await this.#redis.xrange(this.#keys.audit, min, '+', 'COUNT', BATCH)) as Row[];
      for (const row of rows) {
        const entry = parseRow(row);
        if (entry && matches(entry, q)) yield entry;
      }
      const last = rows.at(-1);
      if (rows.length < BATCH || !last) return;
      min = `(${last[0]}`;
    }
  }
}

function parseRow([id, fields]: Row): AuditEntry | undefined {
  const f = fieldMap(fields);
  try {
    const body = JSON.parse(f.e ?? '') as AuditFields & { at: string };
    return { ...body, id, prev: f.prev ?? '', hash: f.hash ?? '' };
  } catch {
    return undefined;
  }
}

function matches(e: AuditEntry, q: { accountSid?: string; rotationId?: string }): boolean {
  return (!q.accountSid || e.accountSid === q.accountSid) && (!q.rotationId || e.rotationId === q.rotationId);
}

function fieldMap(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i] as string] = fields[i + 1] as string;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Verification

/** One link of the chain as stored: the entry's exact JSON text and its chain fields. */
export interface ChainLink {
  id: string;
  e: string;
  prev: string;
  hash: string;
}

export interface ChainSource {
  /** Links oldest first, starting after `afterId` (from the start when undefined). */
  links(afterId?: string): AsyncIterable<ChainLink>;
  /** The recorded head hash, when the source has one. */
  head(): Promise<string | undefined>;
}

export type ChainProblem = 'modified' | 'deleted' | 'reordered';

export type ChainVerdict =
  | { ok: true; count: number; head: string }
  | { ok: false; count: number; problem: ChainProblem; at: string; message: string };

/**
 * Walk the chain from its start and report the first broken link: an entry whose hash does not
 * match its content (modified), a link to a hash that no entry has (deleted, or the previous entry
 * was rewritten together with its hash), a link to an entry found elsewhere (reordered), or a
 * chain that ends before the recorded head (the newest entries deleted).
 */
export async function verifyAuditChain(source: ChainSource): Promise<ChainVerdict> {
  let expected = GENESIS;
  let previousId: string | undefined;
  let count = 0;
  for await (const link of source.links()) {
    if (chainHash(link.prev, link.e) !== link.hash) {
      return { ok: false, count, problem: 'modified', at: link.id, message: `entry ${link.id} was modified: its hash does not match its content` };
    }
    if (link.prev !== expected) {
      const elsewhere = await findHash(source, link.prev);
      if (elsewhere) {
        return { ok: false, count, problem: 'reordered', at: link.id, message: `entry ${link.id} is chained to entry ${elsewhere} but stands ${previousId ? `after ${previousId}` : 'first'}: entries were reordered` };
      }
      const where = previousId ? `between ${previousId} and ${link.id}` : `before ${link.id} (the first entry does not start the chain)`;
      return {
        ok: false,
        count,
        problem: 'deleted',
        at: link.id,
        message: `broken link ${where}: entries were deleted${previousId ? `, or ${previousId} was rewritten along with its hash` : ''}`,
      };
    }
    expected = link.hash;
    previousId = link.id;
    count++;
  }
  const head = await source.head();
  if (head !== undefined && head !== expected) {
    const elsewhere = await findHash(source, head);
    return {
      ok: false,
      count,
      problem: elsewhere ? 'reordered' : 'deleted',
      at: previousId ?? '(start)',
      message: elsewhere
        ? `the recorded head is entry ${elsewhere}, not the last entry ${previousId ?? '(none)'}: entries were reordered`
        : `the chain ends at ${previousId ?? 'its start'} but the recorded head is later: the newest entries were deleted`,
    };
  }
  return { ok: true, count, head: expected };
}

async function findHash(source: ChainSource, hash: string): Promise<string | undefined> {
  if (hash === GENESIS) return undefined;
  for await (const link of source.links()) if (link.hash === hash) return link.id;
  return undefined;
}

/** The chain as stored in Redis. */
export function redisChainSource(redis: Redis, prefix: string): ChainSource {
  const keys = redisKeys(prefix);
  return {
    async *links(afterId?: string) {
      let min = afterId ? `(${afterId}` : '-';
      for (;;) {
        const rows = (await redis.xrange(keys.audit, min, '+', 'COUNT', BATCH)) as Row[];
        for (const [id, fields] of rows) {
          const f = fieldMap(fields);
          yield { id, e: f.e ?? '', prev: f.prev ?? '', hash: f.hash ?? '' };
        }
        const last = rows.at(-1);
        if (rows.length < BATCH || !last) return;
        min = `(${last[0]}`;
      }
    },
    async head() {
      return (await redis.get(keys.auditHead)) ?? undefined;
    },
  };
}

/** An export (JSON lines of AuditEntry), re-canonicalised: the same text the chain hashed. */
export function exportedChainSource(lines: readonly string[]): ChainSource {
  const links: ChainLink[] = lines
    .filter((l) => l.trim())
    .map((l) => {
      const { id, prev, hash, ...body } = JSON.parse(l) as AuditEntry;
      return { id, prev, hash, e: canonicalJson(body) };
    });
  return {
    async *links() {
      yield* links;
    },
    async head() {
      return undefined;
    },
  };
}
