import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import { runScript } from './lua.ts';
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
  /**
   * `api` (an HTTP request that changes something), `rotation` (a step transition by a worker),
   * `batch` (what a batch did by itself: halted, completed) or `checkpoint` (a trim of entries past
   * retention, signed: see AuditCheckpoint).
   */
  kind: 'api' | 'rotation' | 'batch' | 'checkpoint';
  /** Who: the token or OIDC principal name, or the worker (host:pid). */
  actor: string;
  role?: string;
  /** What: `rotation.start`, `rotation.cancel`…, or the history event of a step (`step.completed`). */
  action: string;
  rotationId?: string;
  /** The batch acted on (`batch.*` actions). */
  batchId?: string;
  accountSid?: string;
  /** The managed credential a named rotation rotates (entries written before managed credentials have none: `default`). */
  credential?: string;
  step?: string;
  detail?: string;
  /** From where: the client address (as Fastify's trustProxy resolves it). */
  ip?: string;
  requestId?: string;
  /** The HTTP status the request was answered with. */
  status?: number;
  /** `checkpoint` entries: what was trimmed, signed with AUDIT_CHECKPOINT_KEY. */
  checkpoint?: AuditCheckpoint;
}

/**
 * What a trim leaves in the chain (service/audit-retention.ts): entries up to `trimmedThrough`
 * were exported and removed; the first entry kept links to `trimmedHash`. `sig` is HMAC-SHA256
 * keyed by AUDIT_CHECKPOINT_KEY over checkpointSigningText: a Redis user without the key can
 * delete old entries, but cannot write the checkpoint that would make the shortened chain verify.
 */
export interface AuditCheckpoint {
  trimmedThrough: string;
  trimmedHash: string;
  trimmedCount: number;
  /** Where the export went: a file name in AUDIT_EXPORT_DIR, or `stdout`. */
  exportedTo: string;
  sig: string;
}

/** The signed text: the checkpoint's fields but the signature, and the entry's time. */
export function checkpointSigningText(c: Omit<AuditCheckpoint, 'sig'>, at: string): string {
  return canonicalJson({ at, exportedTo: c.exportedTo, trimmedCount: c.trimmedCount, trimmedHash: c.trimmedHash, trimmedThrough: c.trimmedThrough });
}

export function signCheckpoint(key: string, c: Omit<AuditCheckpoint, 'sig'>, at: string): string {
  return createHmac('sha256', key).update(checkpointSigningText(c, at)).digest('hex');
}

export function checkpointSignatureValid(key: string, c: AuditCheckpoint, at: string): boolean {
  const expected = Buffer.from(signCheckpoint(key, c, at));
  const got = Buffer.from(String(c.sig ?? ''));
  return got.length === expected.length && timingSafeEqual(got, expected);
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

// Appending reads the chain head and XADDs in one script, so appenders in any number of processes
// form one chain. Fast path, compare-and-append: the caller hashed a batch of entries against the
// head it knows; they are written only if that is still the head, else the current head comes back
// to re-hash. A batch is what queued up in this process while the previous append was in flight
// (group commit): one round trip for many entries when transitions come faster than Redis answers.
// KEYS: stream, head   ARGV: expectedPrev, genesis, then (entryJson, hash) per entry
const APPEND = `
local head = redis.call('GET', KEYS[2])
if not head then head = ARGV[2] end
if head ~= ARGV[1] then return {0, head} end
local ids = {1}
local prev = ARGV[1]
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i], 'prev', prev, 'hash', ARGV[i + 1])
  prev = ARGV[i + 1]
end
redis.call('SET', KEYS[2], prev)
return ids
`;

// Contended path: the script hashes itself (SHA-256 in Lua with the bit library, byte-for-byte the
// same as chainHash) and cannot lose a race. About 0.2 ms of Redis time per entry, so only used
// when compare-and-append keeps losing.
// KEYS: stream, head   ARGV: entryJson, genesis   → {id, prev, hash}
export const APPEND_HASHING = `
local band, bor, bxor, bnot, rshift, lshift, ror, tobit, tohex = bit.band, bit.bor, bit.bxor, bit.bnot, bit.rshift, bit.lshift, bit.ror, bit.tobit, bit.tohex
local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
local function sha256(msg)
  local ml = #msg
  local bits = ml * 8
  msg = msg .. '\\128' .. string.rep('\\0', (55 - ml) % 64) .. '\\0\\0\\0\\0' ..
    string.char(band(rshift(bits, 24), 255), band(rshift(bits, 16), 255), band(rshift(bits, 8), 255), band(bits, 255))
  local h0, h1, h2, h3, h4, h5, h6, h7 = 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
  local w = {}
  for i = 1, #msg, 64 do
    for j = 0, 15 do
      local p = i + j * 4
      local b1, b2, b3, b4 = string.byte(msg, p, p + 3)
      w[j] = bor(lshift(b1, 24), lshift(b2, 16), lshift(b3, 8), b4)
    end
    for j = 16, 63 do
      local v0, v1 = w[j - 15], w[j - 2]
      w[j] = tobit(w[j - 16] + bxor(ror(v0, 7), ror(v0, 18), rshift(v0, 3)) + w[j - 7] + bxor(ror(v1, 17), ror(v1, 19), rshift(v1, 10)))
    end
    local a, b, c, d, e, f, g, h = h0, h1, h2, h3, h4, h5, h6, h7
    for j = 0, 63 do
      local t1 = h + bxor(ror(e, 6), ror(e, 11), ror(e, 25)) + bxor(band(e, f), band(bnot(e), g)) + K[j + 1] + w[j]
      local t2 = bxor(ror(a, 2), ror(a, 13), ror(a, 22)) + bxor(band(a, b), band(a, c), band(b, c))
      h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + t2)
    end
    h0, h1, h2, h3 = tobit(h0 + a), tobit(h1 + b), tobit(h2 + c), tobit(h3 + d)
    h4, h5, h6, h7 = tobit(h4 + e), tobit(h5 + f), tobit(h6 + g), tobit(h7 + h)
  end
  return tohex(h0) .. tohex(h1) .. tohex(h2) .. tohex(h3) .. tohex(h4) .. tohex(h5) .. tohex(h6) .. tohex(h7)
end
local head = redis.call('GET', KEYS[2])
if not head then head = ARGV[2] end
local hash = sha256(head .. ARGV[1])
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1], 'prev', head, 'hash', hash)
redis.call('SET', KEYS[2], hash)
return {id, head, hash}
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
const U64_MAX = 2n ** 64n - 1n;

/** An id Redis accepts in a range: STREAM_ID's shape with both parts within 64 bits (20 digits can exceed that). */
export function isRedisStreamId(id: string): boolean {
  if (!STREAM_ID.test(id)) return false;
  const [ms, seq] = id.split('-') as [string, string];
  return BigInt(ms) <= U64_MAX && BigInt(seq) <= U64_MAX;
}

/** At most this many entries are read for one page of a filtered query; the cursor continues from there. */
const SCAN_BUDGET = 5_000;
const BATCH = 500;

type Row = [string, string[]];

interface Queued {
  body: AuditFields & { at: string };
  json: string;
  resolve: (e: AuditEntry) => void;
  reject: (err: unknown) => void;
}

/** At most this many entries go in one append script (it blocks Redis while it runs). */
const MAX_BATCH = 100;

export class AuditLog {
  readonly #redis: Redis;
  readonly #keys: RedisKeys;
  #head: string | undefined;
  /** Entries waiting for the append in flight to finish: this process appends one batch at a time. */
  #queue: Queued[] = [];
  #flushing = false;

  readonly #casAttempts: number;

  constructor(redis: Redis, prefix: string, opts: { casAttempts?: number } = {}) {
    this.#redis = redis;
    this.#keys = redisKeys(prefix);
    this.#casAttempts = opts.casAttempts ?? 3;
  }

  append(fields: AuditFields, now: number = Date.now()): Promise<AuditEntry> {
    const body = { ...fields, at: new Date(now).toISOString() };
    return new Promise((resolve, reject) => {
      this.#queue.push({ body, json: canonicalJson(body), resolve, reject });
      if (!this.#flushing) void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length) {
        const batch = this.#queue.splice(0, MAX_BATCH);
        try {
          await this.#appendBatch(batch);
        } catch (err) {
          // Whatever failed may or may not have reached Redis: forget our copy of the head.
          this.#head = undefined;
          for (const q of batch) q.reject(err);
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** Appends and settles every entry of the batch (a rejection after a resolve is a no-op). */
  async #appendBatch(batch: Queued[]): Promise<void> {
    const k = this.#keys;
    if (this.#casAttempts > 0) {
      let prev = this.#head ?? ((await this.#redis.get(k.auditHead)) || GENESIS);
      for (let attempt = 0; attempt < this.#casAttempts; attempt++) {
        const links: Array<{ prev: string; hash: string }> = [];
        let p = prev;
        for (const q of batch) {
          const hash = chainHash(p, q.json);
          links.push({ prev: p, hash });
          p = hash;
        }
        const reply = (await runScript(this.#redis, APPEND, 2, k.audit, k.auditHead, prev, GENESIS, ...batch.flatMap((q, i) => [q.json, links[i]!.hash]))) as Array<number | string>;
        if (reply[0] === 1) {
          this.#head = p;
          batch.forEach((q, i) => q.resolve({ ...q.body, id: String(reply[i + 1]), ...links[i]! }));
          return;
        }
        prev = String(reply[1]);
      }
    }
    // Contended: the hashing script cannot lose a race, one entry at a time.
    for (const q of batch) {
      const [id, prev, hash] = (await runScript(this.#redis, APPEND_HASHING, 2, k.audit, k.auditHead, q.json, GENESIS)) as [string, string, string];
      this.#head = hash;
      q.resolve({ ...q.body, id, prev, hash });
    }
  }

  /** Newest first, filtered; a page may hold fewer than `limit` entries when the scan budget ran out (follow nextCursor). */
  async list(q: AuditQuery): Promise<{ items: AuditEntry[]; nextCursor: string | null }> {
    const items: AuditEntry[] = [];
    // Nothing precedes 0-0 (and Redis refuses "(0-0" as the end of a range).
    if (q.cursor && /^0+-0+$/.test(q.cursor)) return { items, nextCursor: null };
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

export type ChainProblem = 'modified' | 'deleted' | 'reordered' | 'kept-head-missing' | 'checkpoint-forged' | 'checkpoint-unverifiable';

export type ChainVerdict =
  | { ok: true; count: number; head: string; kept?: { id: string; newer: number }; anchoredBy?: string }
  | { ok: false; count: number; problem: ChainProblem; at: string; message: string };

export const CHAIN_HASH = /^[0-9a-f]{64}$/;

export interface VerifyOptions {
  /** A head hash the operator kept outside Redis: the chain must contain it. */
  keptHead?: string;
  /** AUDIT_CHECKPOINT_KEY: checks every checkpoint's signature; required to accept a trimmed chain. */
  checkpointKey?: string;
}

/**
 * Walk the chain from its start and report the first broken link: an entry whose hash does not
 * match its content (modified), a link to a hash that no entry has (deleted, or the previous entry
 * was rewritten together with its hash), a link to an entry found elsewhere (reordered), or a
 * chain that ends before the recorded head (the newest entries deleted).
 *
 * A chain trimmed past retention starts with an entry linked to one that was exported and
 * removed: it is accepted only when a checkpoint entry names that hash and carries a valid
 * AUDIT_CHECKPOINT_KEY signature. Every checkpoint met on the way is checked too when the key is
 * given. A checkpoint deleted breaks a link like any entry; one written without the key is forged.
 *
 * A chain consistent with itself can still be a rewrite (every hash recomputed) or an export cut
 * short: `keptHead`, a head hash the operator wrote down earlier somewhere Redis admins cannot
 * write, must then be the hash of one of its entries (the chain may have grown since).
 */
export async function verifyAuditChain(source: ChainSource, opts: VerifyOptions = {}): Promise<ChainVerdict> {
  // The head is read before the walk: on a live chain an append during the walk moves the head
  // past the last link read; the head read first is then one of the links (the chain grew).
  const headBefore = await source.head();
  let expected = GENESIS;
  let previousId: string | undefined;
  let count = 0;
  let headSeen = false;
  let anchoredBy: string | undefined;
  let kept: { id: string; at: number } | undefined;
  for await (const link of source.links()) {
    if (chainHash(link.prev, link.e) !== link.hash) {
      return { ok: false, count, problem: 'modified', at: link.id, message: `entry ${link.id} was modified: its hash does not match its content` };
    }
    if (count === 0 && link.prev !== GENESIS) {
      // The start of a trimmed chain (or of an export that is not the oldest): a checkpoint must vouch for it.
      const cp = await findCheckpoint(source, link.prev);
      if (!cp) {
        return {
          ok: false,
          count,
          problem: 'deleted',
          at: link.id,
          message: `broken link before ${link.id} (the first entry does not start the chain): entries were deleted, and no checkpoint vouches for a trim (or the checkpoint was deleted too)`,
        };
      }
      if (opts.checkpointKey === undefined) {
        return { ok: false, count, problem: 'checkpoint-unverifiable', at: cp.id, message: `the chain was trimmed (checkpoint ${cp.id}); set AUDIT_CHECKPOINT_KEY to check the checkpoint's signature` };
      }
      if (!checkpointSignatureValid(opts.checkpointKey, cp.checkpoint, cp.at)) return forged(count, cp.id);
      anchoredBy = cp.id;
      expected = link.prev;
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
    if (opts.checkpointKey !== undefined) {
      const cp = checkpointOf(link);
      if (cp && !checkpointSignatureValid(opts.checkpointKey, cp.checkpoint, cp.at)) return forged(count, link.id);
    }
    expected = link.hash;
    previousId = link.id;
    count++;
    if (link.hash === headBefore) headSeen = true;
    if (link.hash === opts.keptHead) kept = { id: link.id, at: count };
  }
  if (headBefore !== undefined && !headSeen && !(count === 0 && headBefore === GENESIS)) {
    return {
      ok: false,
      count,
      problem: 'deleted',
      at: previousId ?? '(start)',
      message: `the chain ends at ${previousId ?? 'its start'} but the recorded head is no entry of it: the newest entries were deleted`,
    };
  }
  const anchor = anchoredBy ? { anchoredBy } : {};
  if (opts.keptHead !== undefined && opts.keptHead !== GENESIS) {
    if (!kept) {
      return {
        ok: false,
        count,
        problem: 'kept-head-missing',
        at: previousId ?? '(start)',
        message: `no entry has the kept head hash ${opts.keptHead}: the chain was cut short before it, or rewritten (every hash recomputed) since it was kept`,
      };
    }
    return { ok: true, count, head: expected, kept: { id: kept.id, newer: count - kept.at }, ...anchor };
  }
  return { ok: true, count, head: expected, ...anchor };
}

function forged(count: number, id: string): ChainVerdict {
  return {
    ok: false,
    count,
    problem: 'checkpoint-forged',
    at: id,
    message: `checkpoint ${id} is forged: its signature does not verify with AUDIT_CHECKPOINT_KEY (it was not written by Rotator with this key)`,
  };
}

/** The checkpoint a link carries, if it is one. */
function checkpointOf(link: ChainLink): { id: string; at: string; checkpoint: AuditCheckpoint } | undefined {
  if (!link.e.includes('"checkpoint"')) return undefined;
  try {
    const body = JSON.parse(link.e) as AuditFields & { at: string };
    return body.kind === 'checkpoint' && body.checkpoint ? { id: link.id, at: body.at, checkpoint: body.checkpoint } : undefined;
  } catch {
    return undefined;
  }
}

/** The newest checkpoint naming `trimmedHash` (a repeated trim may have left more than one). */
async function findCheckpoint(source: ChainSource, trimmedHash: string): Promise<{ id: string; at: string; checkpoint: AuditCheckpoint } | undefined> {
  let found: { id: string; at: string; checkpoint: AuditCheckpoint } | undefined;
  for await (const link of source.links()) {
    const cp = checkpointOf(link);
    if (cp && cp.checkpoint.trimmedHash === trimmedHash) found = cp;
  }
  return found;
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

/**
 * Exports (JSON lines of AuditEntry), re-canonicalised: the same text the chain hashed. Several
 * exports may be given (files from successive trims, a log shipper's capture): lines that are not
 * audit entries (a log line beside them) are skipped, the same entry exported twice (a trim
 * repeated after a crash) counts once, and entries are put in stream order.
 */
export function exportedChainSource(lines: readonly string[]): ExportedChainSource {
  const byId = new Map<string, ChainLink>();
  for (const l of lines) {
    if (!l.trim()) continue;
    let parsed: Partial<AuditEntry>;
    try {
      parsed = JSON.parse(l) as Partial<AuditEntry>;
    } catch {
      continue;
    }
    const { id, prev, hash, ...body } = parsed;
    if (typeof id !== 'string' || typeof prev !== 'string' || typeof hash !== 'string' || !isRedisStreamId(id)) continue;
    // The first copy wins: a second, different copy of one id is left for the hashes to judge.
    if (!byId.has(id)) byId.set(id, { id, prev, hash, e: canonicalJson(body) });
  }
  const links = [...byId.values()].sort((a, b) => compareStreamIds(a.id, b.id));
  return {
    async *links(afterId?: string) {
      for (const l of links) if (afterId === undefined || compareStreamIds(l.id, afterId) > 0) yield l;
    },
    async head() {
      return undefined;
    },
    lastId: () => links.at(-1)?.id,
  };
}

export interface ExportedChainSource extends ChainSource {
  /** The newest entry exported: the stream is read after it. */
  lastId(): string | undefined;
}

/** Exports followed by the stream they were trimmed from: verified end to end, head from the stream. */
export function combinedChainSource(exported: ExportedChainSource, live: ChainSource): ChainSource {
  const after = exported.lastId();
  return {
    async *links(afterId?: string) {
      yield* exported.links(afterId);
      // What was exported but not yet trimmed (a crash between the two) is in both: read once.
      const from = afterId !== undefined && (after === undefined || compareStreamIds(afterId, after) > 0) ? afterId : after;
      yield* live.links(from);
    },
    head: () => live.head(),
  };
}

export function compareStreamIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  return am !== bm ? (am < bm ? -1 : 1) : as === bs ? 0 : as < bs ? -1 : 1;
}
