import type { Redis } from 'ioredis';
import type { ComplianceSummary, StoreStages, TwilioKeyFacts } from '../domain/compliance.ts';
import { runScript } from './lua.ts';
import { redisKeys, type RedisKeys } from './keys.ts';
import { MARK_ROWS } from './compliance-rows.ts';

/**
 * What the compliance scan found, in Redis, so that GET /v1/compliance never calls Twilio (a key
 * list costs one request per subaccount) and any API process can answer from it.
 *
 * Per subaccount one JSON string (`compliance:sub:AC…`): when it was scanned, its keys at Twilio
 * (null when they could not be listed, with the reason), the store stages of each of its
 * credentials, and which of its `<prefix>:<id>` keys name a rotation on record. Two lexical
 * indexes: every subaccount scanned, and those with sprawl or leftover keys (the sprawl section
 * pages it). The last finished scan, with its totals, is one more string; a lock keeps one scan
 * running across all processes.
 */

export interface ScannedSubaccount {
  accountSid: string;
  friendlyName: string;
  /** Twilio's status as the inventory had it when scanned. */
  status: string;
  scannedAtMs: number;
  /** null: not listed (closed, suspended, or Twilio refused or failed); `note` says why. */
  keys: TwilioKeyFacts[] | null;
  note: string | null;
  /** The stages of every credential of the subaccount (the `default` path always). */
  stages: StoreStages[];
  /** Rotation ids named by `<prefix>:<id>` keys that are on record. */
  knownRotationIds: string[];
  sprawl: number;
  leftover: number;
}

export interface LastScan {
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** Subaccounts scanned; of them, how many had their keys listed. */
  subaccounts: number;
  listed: number;
  notListed: number;
  credentials: number;
  /** The report's totals as of `finishedAt`. */
  summary: ComplianceSummary;
}

/** As stored: short field names, times as epoch ms, keys as [sid, name, created]. */
interface Stored {
  a: number;
  n: string;
  s: string;
  k: Array<[string, string, number]> | null;
  e?: string;
  g: Array<[string, string | null, string | null, string | null]>;
  r?: string[];
  x: [number, number];
}

// KEYS: facts, scanned index, sprawl index, row generations, dirty rows. ARGV: sid, json, hasSprawl ('1'/'0')
const PUT = `${MARK_ROWS}
redis.call('SET', KEYS[1], ARGV[2])
mark_rows(KEYS[4], KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if ARGV[3] == '1' then redis.call('ZADD', KEYS[3], 0, ARGV[1]) else redis.call('ZREM', KEYS[3], ARGV[1]) end
return 1
`;

// KEYS: credentials index. ARGV: min (a ZRANGEBYLEX bound), limit, the credential key prefix.
// One text, a line each (stored JSON holds no raw line feed): the count of ids, up to limit + 1 ids,
// then the first `limit` ids' credential records (an empty line where one is missing).
const PAGE = `
local limit = tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, limit + 1)
local n = math.min(limit, #ids)
if n == 0 then return '0' end
local keys = {}
for i = 1, n do keys[i] = ARGV[3] .. ids[i] end
local creds = redis.call('MGET', unpack(keys))
for i = 1, n do if not creds[i] then creds[i] = '' end end
return #ids .. '\\n' .. table.concat(ids, '\\n') .. '\\n' .. table.concat(creds, '\\n')
`;

// KEYS: lock. ARGV: token, ms. Extend only our own lock.
const RENEW = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;

// KEYS: lock. ARGV: token.
const RELEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`;

/**
 * A page of credentials with what a report page joins them with, as stored (JSON text): a reader
 * that keeps rendered rows compares these strings to know whether a row is still the same, and
 * parses only the records it has to render (credentialFromJson, accountFromJson, scannedFromJson).
 */
export interface ReportPage {
  /** Up to limit + 1 ids: one more than the page says there is a next one. */
  ids: string[];
  /** The page's credential records, in the order of `ids` (null: gone since the range was read). */
  credentials: Array<string | null>;
  /** The inventory records of their subaccounts, by SID. */
  accounts: Map<string, string>;
  /** What the last scan found for their subaccounts, by SID. */
  scanned: Map<string, string>;
}

export class ComplianceFacts {
  readonly #redis: Redis;
  readonly keys: RedisKeys;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.keys = redisKeys(prefix);
  }

  async put(f: ScannedSubaccount): Promise<void> {
    await runScript(this.#redis, PUT, 5, this.keys.complianceFacts(f.accountSid), this.keys.complianceScanned, this.keys.complianceSprawl, this.keys.complianceRowGen, this.keys.complianceRowDirty, f.accountSid, JSON.stringify(toStored(f)), f.sprawl + f.leftover > 0 ? '1' : '0');
  }

  /** In the order of `sids`; undefined where a subaccount was never scanned. */
  async getMany(sids: readonly string[]): Promise<Array<ScannedSubaccount | undefined>> {
    if (sids.length === 0) return [];
    const raw = await this.#redis.mget(sids.map((s) => this.keys.complianceFacts(s)));
    return raw.map((r, i) => (r ? fromStored(sids[i]!, JSON.parse(r) as Stored) : undefined));
  }

  /**
   * Credentials after `min` (a ZRANGEBYLEX bound) with everything a report page joins them with,
   * as stored: their records, and their subaccounts' inventory records and scan facts, in two round
   * trips. The first is a script returning the range and the credentials' records as one text; the
   * second one MGET of the subaccounts' two records. Measured per page of 100 (client CPU / Redis
   * CPU, µs, loaded host): the range and a pipeline of three MGETs 625 / 105 (ioredis decodes each
   * of ~300 array items on its own, and that was most of a warm page's cost); everything in one
   * script returning one text 127 / 512 (Lua copies every value into its own strings and the text
   * again); this 2-step split about 250 / 230. Redis is the part that does not scale out.
   */
  async page(min: string, limit: number): Promise<ReportPage> {
    const text = (await runScript(this.#redis, PAGE, 1, this.keys.credentials, min, String(limit), this.keys.credential(''))) as string;
    const lines = text.split('\n');
    const nIds = Number(lines[0]);
    const ids = lines.slice(1, 1 + nIds);
    const pageIds = ids.slice(0, limit);
    const credentials = lines.slice(1 + nIds, 1 + nIds + pageIds.length).map((c) => c || null);
    const accounts = new Map<string, string>();
    const scanned = new Map<string, string>();
    if (pageIds.length === 0) return { ids, credentials, accounts, scanned };
    const sids = [...new Set(pageIds.map((id) => id.slice(0, id.indexOf('/'))))];
    const subs = await this.#redis.mget([...sids.map((sid) => this.keys.account(sid)), ...sids.map((sid) => this.keys.complianceFacts(sid))]);
    sids.forEach((sid, i) => {
      if (subs[i]) accounts.set(sid, subs[i]!);
      if (subs[sids.length + i]) scanned.set(sid, subs[sids.length + i]!);
    });
    return { ids, credentials, accounts, scanned };
  }

  /** Subaccounts with sprawl or leftover keys, by SID after `cursor`. */
  async withSprawl(opts: { limit: number; cursor?: string }): Promise<{ sids: string[]; nextCursor: string | null }> {
    const ids = await this.#redis.zrangebylex(this.keys.complianceSprawl, opts.cursor ? `(${opts.cursor}` : '-', '+', 'LIMIT', 0, opts.limit + 1);
    const sids = ids.slice(0, opts.limit);
    return { sids, nextCursor: ids.length > opts.limit ? (sids.at(-1) ?? null) : null };
  }

  /** Forget the subaccounts a scan no longer found (closed ones Twilio dropped after 30 days); returns how many. */
  async removeExcept(keep: ReadonlySet<string>): Promise<number> {
    let removed = 0;
    let min = '-';
    for (;;) {
      const sids = await this.#redis.zrangebylex(this.keys.complianceScanned, min, '+', 'LIMIT', 0, 1000);
      const gone = sids.filter((s) => !keep.has(s));
      if (gone.length) {
        const pipe = this.#redis.pipeline();
        pipe.del(...gone.map((s) => this.keys.complianceFacts(s)));
        pipe.zrem(this.keys.complianceScanned, ...gone);
        pipe.zrem(this.keys.complianceSprawl, ...gone);
        // Their credentials' rows no longer show a scan (state/compliance-rows.ts).
        for (const s of gone) pipe.hincrby(this.keys.complianceRowGen, s, 1);
        pipe.sadd(this.keys.complianceRowDirty, ...gone);
        await pipe.exec();
        removed += gone.length;
      }
      if (sids.length < 1000) return removed;
      min = `(${sids.at(-1)}`;
    }
  }

  async lastScan(): Promise<LastScan | null> {
    const raw = await this.#redis.get(this.keys.complianceLastScan);
    return raw ? (JSON.parse(raw) as LastScan) : null;
  }

  async setLastScan(s: LastScan): Promise<void> {
    await this.#redis.set(this.keys.complianceLastScan, JSON.stringify(s));
  }

  /** An on-demand scan was asked for (POST /v1/compliance/scan): workers start one when it is newer than the last scan's start. */
  async request(atMs: number): Promise<void> {
    await this.#redis.set(this.keys.complianceScanRequest, String(atMs));
  }

  async requestedAt(): Promise<number | null> {
    const raw = await this.#redis.get(this.keys.complianceScanRequest);
    return raw ? Number(raw) : null;
  }

  /** The scan lock: true when taken. The value says who holds it and since when (GET /v1/compliance shows it). */
  async lock(token: string, ms: number): Promise<boolean> {
    return (await this.#redis.set(this.keys.complianceScanLock, token, 'PX', ms, 'NX')) === 'OK';
  }

  async renew(token: string, ms: number): Promise<boolean> {
    return (await runScript(this.#redis, RENEW, 1, this.keys.complianceScanLock, token, String(ms))) === 1;
  }

  async unlock(token: string): Promise<void> {
    await runScript(this.#redis, RELEASE, 1, this.keys.complianceScanLock, token);
  }

  /** The last finished scan, the running one and the last request, in one read (every report page shows them). */
  async status(): Promise<ScanStatus> {
    const [last, lock, req] = await this.#redis.mget(this.keys.complianceLastScan, this.keys.complianceScanLock, this.keys.complianceScanRequest);
    return scanStatus(last ?? '', lock ? lock.split(':')[0]! : '', req ?? '');
  }

  /** The running scan's lock value (`<startedAtMs>:<holder>`), or null. */
  async running(): Promise<{ startedAt: string; holder: string } | null> {
    const raw = await this.#redis.get(this.keys.complianceScanLock);
    if (!raw) return null;
    const [ms, ...rest] = raw.split(':');
    return { startedAt: new Date(Number(ms)).toISOString(), holder: rest.join(':') };
  }
}

export interface ScanStatus {
  last: LastScan | null;
  running: { startedAt: string } | null;
  requestedAtMs: number | null;
}

/**
 * The scan's status from its three stored values ('' where none): the last scan's JSON, the lock's
 * start time (epoch ms, the lock value up to its first ':') and the request time. A report page reads
 * them in its own script (state/compliance-rows.ts), status() on its own.
 */
export function scanStatus(last: string, lockMs: string, requestedMs: string): ScanStatus {
  return { last: last ? (JSON.parse(last) as LastScan) : null, running: lockMs ? { startedAt: new Date(Number(lockMs)).toISOString() } : null, requestedAtMs: requestedMs ? Number(requestedMs) : null };
}

function toStored(f: ScannedSubaccount): Stored {
  const s: Stored = {
    a: f.scannedAtMs,
    n: f.friendlyName,
    s: f.status,
    k: f.keys === null ? null : f.keys.map((k) => [k.sid, k.friendlyName, k.dateCreated]),
    g: f.stages.map((g) => [g.name, g.current, g.pending, g.previous]),
    x: [f.sprawl, f.leftover],
  };
  if (f.note) s.e = f.note;
  if (f.knownRotationIds.length) s.r = f.knownRotationIds;
  return s;
}

/** A subaccount's scan facts as stored (ReportPage.scanned) → the record. */
export function scannedFromJson(accountSid: string, json: string): ScannedSubaccount {
  return fromStored(accountSid, JSON.parse(json) as Stored);
}

function fromStored(accountSid: string, s: Stored): ScannedSubaccount {
  return {
    accountSid,
    friendlyName: s.n,
    status: s.s,
    scannedAtMs: s.a,
    keys: s.k === null ? null : s.k.map(([sid, friendlyName, dateCreated]) => ({ sid, friendlyName, dateCreated })),
    note: s.e ?? null,
    stages: s.g.map(([name, current, pending, previous]) => ({ name, current, pending, previous })),
    knownRotationIds: s.r ?? [],
    sprawl: s.x[0],
    leftover: s.x[1],
  };
}
