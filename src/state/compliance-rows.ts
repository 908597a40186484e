import type { Redis } from 'ioredis';
import { runScript } from './lua.ts';
import { redisKeys, type RedisKeys } from './keys.ts';

/**
 * Each managed credential's compliance row, rendered when one of its inputs changes and stored, so
 * that a report page is one script returning ready rows (issue 13: a page costs what an accounts
 * page costs). What a row is rendered from: the credential's record, its subaccount's inventory
 * record (status, labels, override) and scan facts, and the policy catalog.
 *
 * Every write of a credential, account or scan record bumps its subaccount's generation and adds the
 * subaccount to the dirty set, in the same script as the write (MARK_ROWS). A row is stored with the
 * policies version and the generation it was rendered from (`v:gen`), only while the generation is
 * still the one read before the inputs were (STORE): a write that lands meanwhile leaves the
 * subaccount dirty, and the next render picks it up. The page script hands out a row only when its
 * stamp is current: any other is rendered by the reader from its inputs on the spot, so a report
 * is never staler than Redis, whatever the renderer has or has not done yet.
 */

/**
 * Lua: `mark_rows(genKey, dirtyKey, sid)`: the rows of subaccount `sid` are to be rendered again.
 * For write scripts that pass the two keys as KEYS.
 */
export const MARK_ROWS = `
local function mark_rows(genKey, dirtyKey, sid)
  redis.call('HINCRBY', genKey, sid, 1)
  redis.call('SADD', dirtyKey, sid)
end
`;

// KEYS: credentials index, generations, policies version, and optionally the last scan, the scan lock
// and the scan request (what every report page shows beside its rows, read in the same round trip).
// ARGV: min (ZRANGEBYLEX bound), limit, row key prefix ('' for no rows).
// One text, a line each: with the three scan keys first their values ('' where none; the lock's up to
// its first ':', its start time); the count of ids (up to limit + 1), the
// policies version, the ids, then the generation of each of the first `limit` ids' subaccounts ('' where
// none): `<version>:<generation>` is the stamp a current row of that credential carries, so a reader
// that keeps rows knows which it may use without reading them. With a row key prefix, then the
// stored row of each of the first `limit` ids ('' where none; a stored row holds no raw line feed):
// a reader that keeps few of the page's rows reads them in the same round trip, as one text.
const PAGE = `
local head = ''
if #KEYS == 6 then
  local s = redis.call('MGET', KEYS[4], KEYS[5], KEYS[6])
  head = (s[1] or '') .. '\\n' .. string.match(s[2] or '', '^[^:\\n]*') .. '\\n' .. (s[3] or '') .. '\\n'
end
local limit = tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, limit + 1)
local n = math.min(limit, #ids)
local v = redis.call('GET', KEYS[3]) or '0'
if n == 0 then return head .. '0\\n' .. v end
local sids = {}
for i = 1, n do sids[i] = string.match(ids[i], '^([^/]*)/') or ids[i] end
local gens = redis.call('HMGET', KEYS[2], unpack(sids))
for i = 1, n do if not gens[i] then gens[i] = '' end end
local out = head .. #ids .. '\\n' .. v .. '\\n' .. table.concat(ids, '\\n') .. '\\n' .. table.concat(gens, '\\n')
if ARGV[3] == '' then return out end
local keys = {}
for i = 1, n do keys[i] = ARGV[3] .. ids[i] end
local rows = redis.call('MGET', unpack(keys))
for i = 1, n do if not rows[i] then rows[i] = '' end end
return out .. '\\n' .. table.concat(rows, '\\n')
`;

// KEYS: generations, dirty set. ARGV: row key prefix, then per subaccount: sid, its generation as
// read before its inputs ('' none), how many rows, then id and text of each.
// A subaccount's rows are stored only while its generation is still the one read; then it is clean.
const STORE = `
local i = 2
local stored = 0
while i <= #ARGV do
  local sid, gen, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  if (redis.call('HGET', KEYS[1], sid) or '') == gen then
    for j = 0, n - 1 do
      redis.call('SET', ARGV[1] .. ARGV[i + 2 * j], ARGV[i + 2 * j + 1])
    end
    stored = stored + n
    redis.call('SREM', KEYS[2], sid)
  end
  i = i + 2 * n
end
return stored
`;

export interface StoredRowPage {
  /** Up to limit + 1 ids: one more than the page says there is a next one. */
  ids: string[];
  /** The stamp a current row of each of the first `limit` ids carries (`<policies version>:<generation>`). */
  stamps: string[];
  /** With `withRows`: the stored row of each of the first `limit` ids, as rows() reads them. */
  rows?: Array<string | null>;
  /** With `withScan`: the last scan (its JSON), the running scan's start (epoch ms) and the last request (epoch ms), as stored ('' none). */
  scan?: { last: string; lockMs: string; requestedMs: string };
}

export class ComplianceRowStore {
  readonly #redis: Redis;
  readonly keys: RedisKeys;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.keys = redisKeys(prefix);
  }

  /**
   * Credentials after `min` (a ZRANGEBYLEX bound) with the stamps their current rows carry, and with
   * `withRows` their stored rows, in one script. (The ids and rows are slices of the reply: a reader
   * that keeps any of them copies it, domain/compliance-row.ts `detached`.)
   */
  async page(min: string, limit: number, opts: { withRows?: boolean; withScan?: boolean } = {}): Promise<StoredRowPage> {
    const k = this.keys;
    const keys = opts.withScan ? [k.credentials, k.complianceRowGen, k.policiesVersion, k.complianceLastScan, k.complianceScanLock, k.complianceScanRequest] : [k.credentials, k.complianceRowGen, k.policiesVersion];
    const text = (await runScript(this.#redis, PAGE, keys.length, ...keys, min, String(limit), opts.withRows ? k.complianceRow('') : '')) as string;
    const lines = text.split('\n');
    // The last scan is stored as JSON.stringify wrote it: no raw line feed.
    const at = opts.withScan ? 3 : 0;
    const nIds = Number(lines[at]);
    const v = lines[at + 1]!;
    const ids = lines.slice(at + 2, at + 2 + nIds);
    const n = Math.min(limit, nIds);
    const stamps = lines.slice(at + 2 + nIds, at + 2 + nIds + n).map((g) => `${v}:${g}`);
    const page: StoredRowPage = { ids, stamps };
    if (opts.withScan) page.scan = { last: lines[0]!, lockMs: lines[1]!, requestedMs: lines[2]! };
    // A row is JSON texts and names (no raw line feed): any other count of lines, and the caller reads the rows on their own.
    if (opts.withRows && n > 0 && lines.length === at + 2 + nIds + 2 * n) page.rows = lines.slice(at + 2 + nIds + n).map((r) => r || null);
    return page;
  }

  /** The stored rows of `ids` (null where none), each starting with its stamp and U+001F. */
  async rows(ids: readonly string[]): Promise<Array<string | null>> {
    if (ids.length === 0) return [];
    return this.#redis.mget(ids.map((id) => this.keys.complianceRow(id)));
  }

  /**
   * What a render reads first, in one transaction: the subaccounts' generations, their inventory
   * records and scan facts, and the ids of their credentials. Anything written after this bumps a
   * generation, so rows rendered from it and from reads after it are stored only if nothing did.
   */
  async inputs(sids: readonly string[]): Promise<{ gens: Array<string | null>; accounts: Array<string | null>; facts: Array<string | null>; ids: string[][] }> {
    if (sids.length === 0) return { gens: [], accounts: [], facts: [], ids: [] };
    const k = this.keys;
    const m = this.#redis.multi();
    m.hmget(k.complianceRowGen, ...sids);
    m.mget(sids.map((s) => k.account(s)));
    m.mget(sids.map((s) => k.complianceFacts(s)));
    for (const s of sids) m.zrangebylex(k.credentials, `[${s}/`, `[${s}/\xff`);
    const out = (await m.exec()) ?? [];
    for (const [err] of out) if (err) throw err;
    const v = out.map(([, r]) => r);
    return { gens: v[0] as Array<string | null>, accounts: v[1] as Array<string | null>, facts: v[2] as Array<string | null>, ids: v.slice(3) as string[][] };
  }

  /** Store rendered rows, each subaccount's only if its generation is still `gen`; returns how many rows were stored. */
  async store(groups: ReadonlyArray<{ sid: string; gen: string | null; rows: ReadonlyArray<{ id: string; text: string }> }>): Promise<number> {
    if (groups.length === 0) return 0;
    const args: string[] = [this.keys.complianceRow('')];
    for (const g of groups) {
      args.push(g.sid, g.gen ?? '', String(g.rows.length));
      for (const r of g.rows) args.push(r.id, r.text);
    }
    return Number(await runScript(this.#redis, STORE, 2, this.keys.complianceRowGen, this.keys.complianceRowDirty, ...args));
  }

  /** Mark subaccounts' rows to render again (a write that is not one of the marking scripts: the scan's removals). */
  async mark(sids: readonly string[]): Promise<void> {
    if (sids.length === 0) return;
    const m = this.#redis.multi();
    for (const s of sids) m.hincrby(this.keys.complianceRowGen, s, 1);
    m.sadd(this.keys.complianceRowDirty, ...sids);
    await m.exec();
  }

  /** Up to `count` subaccounts whose rows wait to be rendered (any of them). */
  async dirty(count: number): Promise<string[]> {
    return this.#redis.srandmember(this.keys.complianceRowDirty, count);
  }

  async dirtyCount(): Promise<number> {
    return this.#redis.scard(this.keys.complianceRowDirty);
  }

  /** The version (policies and row layout) every row was rendered at, last (null: never). */
  async renderedVersion(): Promise<string | null> {
    return this.#redis.get(this.keys.complianceRowsVersion);
  }

  /** Every row is rendered at `v`: the walk that did it is over (its cursor goes, so the next walk starts afresh). */
  async setRenderedVersion(v: string): Promise<void> {
    await this.#redis.multi().set(this.keys.complianceRowsVersion, v).del(this.keys.complianceRowsWalk).exec();
  }

  /** The re-render's progress: the version it renders for and the last credential id done. */
  async walkCursor(): Promise<{ version: string; after: string } | null> {
    const raw = await this.#redis.get(this.keys.complianceRowsWalk);
    if (!raw) return null;
    const at = raw.indexOf('|');
    return { version: raw.slice(0, at), after: raw.slice(at + 1) };
  }

  async setWalkCursor(version: string, after: string): Promise<void> {
    await this.#redis.set(this.keys.complianceRowsWalk, `${version}|${after}`);
  }

  /** Credential ids after `after` in the index, `limit` of them. */
  async idsAfter(after: string, limit: number): Promise<string[]> {
    return this.#redis.zrangebylex(this.keys.credentials, after ? `(${after}` : '-', '+', 'LIMIT', 0, limit);
  }

  async lock(token: string, ms: number): Promise<boolean> {
    return (await this.#redis.set(this.keys.complianceRowsLock, token, 'PX', ms, 'NX')) === 'OK';
  }

  async unlock(token: string): Promise<void> {
    await runScript(this.#redis, UNLOCK, 1, this.keys.complianceRowsLock, token);
  }
}

const UNLOCK = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`;
