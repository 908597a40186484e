import type { Redis } from 'ioredis';
import { runScript } from './lua.ts';
import { overrideArgs, SET_OVERRIDE } from './overrides.ts';
import { MARK_ROWS } from './compliance-rows.ts';
import { redisKeys, type RedisKeys } from './keys.ts';
import { isoTime } from './iso.ts';
import { unknownPolicy } from './policies.ts';

/**
 * Managed subaccounts in Redis: one small JSON string per account (timestamps as epoch ms), a
 * lexical index for paging by SID, and an index scored by when the next rotation is due. Every
 * write is a Lua script that merges only its own fields, so the inventory sync (name, status) and
 * finished rotations (current key, last rotation) never overwrite each other. A page is one script
 * (one ZRANGE and one MGET).
 */

export const POLICY_DAYS = { quarterly: 90, monthly: 30 } as const;
export type RotationPolicy = keyof typeof POLICY_DAYS;
const DAY_MS = 86_400_000;

export interface AccountRecord {
  accountSid: string;
  friendlyName: string;
  /** Twilio's status: active, suspended or closed. */
  status: string;
  policy: RotationPolicy;
  currentKeySid: string | null;
  lastRotatedAtMs: number | null;
  firstSeenAtMs: number;
  /**
   * The parent Twilio listed it under (owner_account_sid), set by the inventory sync. Null for an
   * entry the sync has not confirmed (written by a finished rotation only, or by an earlier
   * version): such an entry does not prove the account is a subaccount.
   */
  ownerAccountSid: string | null;
  /** Labels set through the API (`hipaa`, `tier=gold`): policies are assigned by them, batches select by them. */
  labels: string[];
  /** A per-account policy override (a policy name); per-credential overrides are more specific. */
  policyOverride: string | null;
  /** Paused: neither the planner nor a batch starts rotations of its credentials. */
  paused: boolean;
  /** Auth Token rotation enabled for this account (off, absent, unless an admin turns it on: domain/auth-token.ts). */
  authTokenRotation?: boolean;
}

/** What GET /v1/accounts shows, in the order of its schema (AccountT). */
export interface AccountView {
  accountSid: string;
  friendlyName: string;
  status: string;
  currentKeySid: string | null;
  keyAgeDays: number;
  lastRotatedAt: string | null;
  nextRotationAt: string;
  policy: RotationPolicy;
  overdue: boolean;
}

export interface SubaccountInfo {
  accountSid: string;
  friendlyName: string;
  status: string;
  /** Twilio's owner_account_sid (the parent), when the entry comes from Twilio. */
  ownerAccountSid?: string;
}

/** When the next rotation is due: a policy period after the last rotation, or after Rotator first saw the account. */
export function nextRotationMs(rec: Pick<AccountRecord, 'lastRotatedAtMs' | 'firstSeenAtMs' | 'policy'>): number {
  return (rec.lastRotatedAtMs ?? rec.firstSeenAtMs) + POLICY_DAYS[rec.policy] * DAY_MS;
}

export function accountView(rec: Omit<AccountRecord, 'ownerAccountSid' | 'labels' | 'policyOverride' | 'paused'>, now: number): AccountView {
  const next = nextRotationMs(rec);
  const since = rec.lastRotatedAtMs ?? rec.firstSeenAtMs;
  return {
    accountSid: rec.accountSid,
    friendlyName: rec.friendlyName,
    status: rec.status,
    currentKeySid: rec.currentKeySid,
    keyAgeDays: Math.max(0, Math.floor((now - since) / DAY_MS)),
    lastRotatedAt: rec.lastRotatedAtMs === null ? null : isoTime(rec.lastRotatedAtMs),
    nextRotationAt: isoTime(next),
    policy: rec.policy,
    overdue: now > next,
  };
}

/**
 * GET /v1/accounts's items as JSON text, kept per subaccount with the stored text it was made from
 * and the time until which it holds (keyAgeDays turns at the next whole day since the last
 * rotation, overdue at the deadline): a page read again (the first page, a dashboard's refresh)
 * skips parsing, building and serialising its rows. Bounded: once full, rows are made and not kept
 * (a walk over a larger fleet does not churn the kept ones).
 */
const KEPT_VIEWS_MAX = 20_000;

export class AccountViewCache {
  readonly #kept = new Map<string, { raw: string; json: string; from: number; until: number }>();

  json(accountSid: string, raw: string, now: number): string {
    const hit = this.#kept.get(accountSid);
    if (hit !== undefined && hit.raw === raw && now >= hit.from && now < hit.until) return hit.json;
    const rec = fromStored(accountSid, JSON.parse(raw) as StoredAccount);
    const json = JSON.stringify(accountView(rec, now));
    // The times around `now` with the same keyAgeDays and overdue: [from, until).
    const since = rec.lastRotatedAtMs ?? rec.firstSeenAtMs;
    const next = nextRotationMs(rec);
    const days = Math.max(0, Math.floor((now - since) / DAY_MS));
    const from = Math.max(days > 0 ? since + days * DAY_MS : -Infinity, now > next ? next + 1 : -Infinity);
    const until = Math.min(since + (days + 1) * DAY_MS, now > next ? Infinity : next + 1);
    if (hit !== undefined || this.#kept.size < KEPT_VIEWS_MAX) this.#kept.set(accountSid, { raw, json, from, until });
    return json;
  }
}

/**
 * As stored, kept small (benchmarks count it against each finished rotation): n friendlyName,
 * s status, p policy ('m' monthly, else quarterly), k current key SID, r last rotated (epoch ms),
 * f first seen (epoch ms), o owner (the parent Twilio listed it under), l labels, q policy
 * override (a policy name), z paused. (k and r are what earlier versions kept per subaccount: the
 * `default` credential's, now in state/credentials.ts, which migrates them.)
 */
export interface StoredAccount {
  n?: string;
  s?: string;
  p?: string;
  k?: string;
  r?: number;
  f?: number;
  o?: string;
  l?: string[];
  q?: string;
  z?: 1;
  /** Auth Token rotation enabled. */
  a?: 1;
}

// KEYS: account, lexical index, row generations, dirty rows (state/compliance-rows.ts). ARGV: sid, nowMs, labels JSON ('' keep), policy ('' keep, '-' clear), paused ('' keep, '0', '1'),
// policy-users key prefix, policies hash ('' when the named policy need not be stored: a built-in one),
// authTokenRotation ('' keep, '0', '1')
// Only for an account the index knows (synced or rotated): labels on a SID Rotator never saw are refused by the caller.
// The override is checked against the stored policies and recorded in its policy's users set in the
// same script as the write, so a policy deleted meanwhile cannot be left named (state/policies.ts).
const PATCH = `${SET_OVERRIDE}${MARK_ROWS}
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local a = cjson.decode(raw)
if ARGV[4] ~= '' and ARGV[4] ~= '-' and ARGV[7] ~= '' and redis.call('HEXISTS', ARGV[7], ARGV[4]) == 0 then
  return redis.error_reply('unknown_policy')
end
if ARGV[3] ~= '' then
  local l = cjson.decode(ARGV[3])
  if #l == 0 then a.l = nil else a.l = l end
end
set_override(a, 'q', ARGV[4], ARGV[1], ARGV[6])
if ARGV[5] == '1' then a.z = 1 elseif ARGV[5] == '0' then a.z = nil end
if ARGV[8] == '1' then a.a = 1 elseif ARGV[8] == '0' then a.a = nil end
redis.call('SET', KEYS[1], cjson.encode(a))
mark_rows(KEYS[3], KEYS[4], ARGV[1])
return cjson.encode(a)
`;

// KEYS: account, lexical index, due index, row generations, dirty rows
// ARGV: sid, friendlyName, status, nowMs, defaultPolicy, quarterlyMs, monthlyMs, owner ('' = keep)
// The compliance rows show the status only: they are marked when it changes (the sync runs often).
const UPSERT = `${MARK_ROWS}
local raw = redis.call('GET', KEYS[1])
local a
local created = 0
if raw then a = cjson.decode(raw) else a = { f = tonumber(ARGV[4]), p = ARGV[5] }; created = 1 end
if created == 1 or a.s ~= ARGV[3] then mark_rows(KEYS[4], KEYS[5], ARGV[1]) end
a.n = ARGV[2]
a.s = ARGV[3]
if ARGV[8] ~= '' then a.o = ARGV[8] end
redis.call('SET', KEYS[1], cjson.encode(a))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if created == 1 then
  local period = ARGV[6]
  if a.p == 'm' then period = ARGV[7] end
  redis.call('ZADD', KEYS[3], tonumber(ARGV[4]) + tonumber(period), ARGV[1])
end
return created
`;

// KEYS: account, lexical index, due index, row generations, dirty rows
// ARGV: sid, keySid, rotatedAtMs, defaultPolicy, quarterlyMs, monthlyMs
const ROTATED = `${MARK_ROWS}
local raw = redis.call('GET', KEYS[1])
local a
if raw then a = cjson.decode(raw) else a = { f = tonumber(ARGV[3]), p = ARGV[4], n = '', s = 'active' } end
local at = tonumber(ARGV[3])
if type(a.r) == 'number' and a.r > at then return 0 end
a.k = ARGV[2]
a.r = at
redis.call('SET', KEYS[1], cjson.encode(a))
mark_rows(KEYS[4], KEYS[5], ARGV[1])
local period = ARGV[5]
if a.p == 'm' then period = ARGV[6] end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], at + tonumber(period), ARGV[1])
return 1
`;

// A page by SID as one JSON text, [[sid, …], [record or null, …]]: up to ARGV[2] + 1 SIDs after
// ARGV[1] (one more says whether there is a next page) and the records of the first ARGV[2]. The
// client decodes one string instead of one per SID and record, which cost more than the page.
// KEYS: lexical index
// ARGV: min, limit, accountKeyPrefix
const PAGE = `
local limit = tonumber(ARGV[2])
local sids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, limit + 1)
if #sids == 0 then return '[[],[]]' end
local keys = {}
for i = 1, math.min(limit, #sids) do keys[i] = ARGV[3] .. sids[i] end
local recs = redis.call('MGET', unpack(keys))
for i = 1, #recs do if not recs[i] then recs[i] = 'null' end end
return '[' .. cjson.encode(sids) .. ',[' .. table.concat(recs, ',') .. ']]'
`;

// listJson's page as one text (one bulk reply: ioredis decodes each element of an array reply at
// a cost): sid, stored text, … each followed by a newline, which neither holds (cjson escapes it),
// a missing record an empty line; then the next SID when there is one.
const PAGE_LINES = `
local limit = tonumber(ARGV[2])
local sids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, limit + 1)
if #sids == 0 then return '' end
local keys = {}
local n = math.min(limit, #sids)
for i = 1, n do keys[i] = ARGV[3] .. sids[i] end
local recs = redis.call('MGET', unpack(keys))
local out = {}
for i = 1, n do out[2 * i - 1] = sids[i]; out[2 * i] = recs[i] or '' end
if #sids > limit then out[2 * n + 1] = sids[limit + 1] end
return table.concat(out, '\\n')
`;

export class AccountRepository {
  readonly #views = new AccountViewCache();
  readonly #redis: Redis;
  readonly #keys: RedisKeys;
  readonly #defaultPolicy: RotationPolicy;

  constructor(redis: Redis, prefix: string, opts: { defaultPolicy?: RotationPolicy } = {}) {
    this.#redis = redis;
    this.#keys = redisKeys(prefix);
    this.#defaultPolicy = opts.defaultPolicy ?? 'quarterly';
  }

  /** Insert or refresh accounts from Twilio's subaccount list; returns how many were new. */
  async upsertMany(accounts: readonly SubaccountInfo[], now: number = Date.now()): Promise<number> {
    let added = 0;
    const k = this.#keys;
    for (let i = 0; i < accounts.length; i += 500) {
      const pipe = this.#redis.pipeline();
      for (const a of accounts.slice(i, i + 500)) {
        pipe.eval(UPSERT, 5, k.account(a.accountSid), k.accounts, k.accountsDue, k.complianceRowGen, k.complianceRowDirty, a.accountSid, a.friendlyName, a.status, String(now), this.#stored(this.#defaultPolicy), String(POLICY_DAYS.quarterly * DAY_MS), String(POLICY_DAYS.monthly * DAY_MS), a.ownerAccountSid ?? '');
      }
      for (const [err, created] of (await pipe.exec()) ?? []) {
        if (err) throw err;
        if (created === 1) added++;
      }
    }
    return added;
  }

  /**
   * A rotation of the account succeeded: its new key is current. Older news never overwrites
   * newer. (The rotation id is accepted for callers but not stored: the rotations index has it.)
   */
  async recordRotation(accountSid: string, keySid: string, rotatedAt: string, _rotationId?: string): Promise<void> {
    const k = this.#keys;
    await runScript(
      this.#redis,
      ROTATED,
      5,
      k.account(accountSid),
      k.accounts,
      k.accountsDue,
      k.complianceRowGen,
      k.complianceRowDirty,
      accountSid,
      keySid,
      String(Date.parse(rotatedAt)),
      this.#stored(this.#defaultPolicy),
      String(POLICY_DAYS.quarterly * DAY_MS),
      String(POLICY_DAYS.monthly * DAY_MS),
    );
  }

  /**
   * Set labels (replacing them; [] clears), the account's policy override (null clears) and its
   * pause. Undefined when Rotator has no record of the account (neither synced nor rotated).
   * `requireStoredPolicy`: the override names a policy that is not built in, so it must be stored
   * at the moment of the write; throws UnknownPolicyError (code unknown_policy) when it is not.
   */
  async patch(accountSid: string, change: { labels?: readonly string[]; policy?: string | null; paused?: boolean; authTokenRotation?: boolean }, opts: { requireStoredPolicy?: boolean } = {}): Promise<AccountRecord | undefined> {
    const labels = change.labels === undefined ? '' : JSON.stringify([...new Set(change.labels)].sort());
    const { policy, paused } = overrideArgs(change);
    const k = this.#keys;
    const raw = (await runScript(this.#redis, PATCH, 4, k.account(accountSid), k.accounts, k.complianceRowGen, k.complianceRowDirty, accountSid, String(Date.now()), labels, policy, paused, k.policyUsers(''), opts.requireStoredPolicy ? k.policies : '', change.authTokenRotation === undefined ? '' : change.authTokenRotation ? '1' : '0').catch((err: Error) => {
      throw unknownPolicy(err, change.policy);
    })) as string | null;
    return raw ? fromStored(accountSid, JSON.parse(raw) as StoredAccount) : undefined;
  }

  #stored(policy: RotationPolicy): string {
    return policy === 'monthly' ? 'm' : 'q';
  }

  async get(accountSid: string): Promise<AccountRecord | undefined> {
    return (await this.#read([accountSid]))[0];
  }

  /** The records of `sids` that exist, in order (absent ones left out). */
  async getMany(sids: readonly string[]): Promise<AccountRecord[]> {
    return this.#read(sids);
  }

  /** Ordered by SID; the cursor is the last SID returned. */
  async list(opts: { limit: number; cursor?: string }): Promise<{ items: AccountRecord[]; nextCursor: string | null }> {
    const min = opts.cursor ? `(${opts.cursor}` : '-';
    const page = (await runScript(this.#redis, PAGE, 1, this.#keys.accounts, min, String(opts.limit), this.#keys.account(''))) as string;
    const [sids, stored] = JSON.parse(page) as [string[], Array<StoredAccount | null>];
    const items: AccountRecord[] = [];
    stored.forEach((a, i) => {
      if (a) items.push(fromStored(sids[i] as string, a));
    });
    return { items, nextCursor: sids.length > opts.limit ? (sids[opts.limit - 1] ?? null) : null };
  }

  /** A page of list() as GET /v1/accounts shows it: each item's JSON text (AccountViewCache). */
  async listJson(opts: { limit: number; cursor?: string }, now: number): Promise<{ items: string[]; nextCursor: string | null }> {
    const min = opts.cursor ? `(${opts.cursor}` : '-';
    const text = (await runScript(this.#redis, PAGE_LINES, 1, this.#keys.accounts, min, String(opts.limit), this.#keys.account(''))) as string;
    const flat = text === '' ? [] : text.split('\n');
    const items: string[] = [];
    const n = Math.min(opts.limit, flat.length >> 1);
    for (let i = 0; i < n; i++) {
      const raw = flat[2 * i + 1];
      if (raw) items.push(this.#views.json(flat[2 * i] as string, raw, now));
    }
    return { items, nextCursor: flat.length > 2 * opts.limit ? (flat[2 * opts.limit - 2] ?? null) : null };
  }

  /** Accounts whose next rotation is due at or before `now`, soonest first (for a scheduler). */
  async due(now: number, limit: number): Promise<string[]> {
    return this.#redis.zrangebyscore(this.#keys.accountsDue, '-inf', String(now), 'LIMIT', 0, limit);
  }

  async count(): Promise<number> {
    return this.#redis.zcard(this.#keys.accounts);
  }

  async #read(sids: readonly string[]): Promise<AccountRecord[]> {
    if (sids.length === 0) return [];
    const values = await this.#redis.mget(sids.map((sid) => this.#keys.account(sid)));
    const out: AccountRecord[] = [];
    values.forEach((raw, i) => {
      if (raw) out.push(fromStored(sids[i] as string, JSON.parse(raw) as StoredAccount));
    });
    return out;
  }
}

export function fromStored(accountSid: string, a: StoredAccount): AccountRecord {
  return {
    accountSid,
    friendlyName: a.n ?? '',
    status: a.s ?? 'active',
    policy: a.p === 'm' ? 'monthly' : 'quarterly',
    currentKeySid: a.k ?? null,
    lastRotatedAtMs: typeof a.r === 'number' ? a.r : null,
    firstSeenAtMs: typeof a.f === 'number' ? a.f : 0,
    ownerAccountSid: typeof a.o === 'string' ? a.o : null,
    // cjson encodes an empty Lua table as {}: only an array counts.
    labels: Array.isArray(a.l) ? a.l : [],
    policyOverride: typeof a.q === 'string' ? a.q : null,
    paused: a.z === 1,
    authTokenRotation: a.a === 1,
  };
}

/** An account as stored (its JSON text, or that text parsed) → the record: for pages read by one script elsewhere (state/compliance.ts). */
export function accountFromJson(accountSid: string, json: string | object): AccountRecord {
  return fromStored(accountSid, (typeof json === 'string' ? JSON.parse(json) : json) as StoredAccount);
}
