import type { Redis } from 'ioredis';
import { redisKeys, type RedisKeys } from './keys.ts';

/**
 * Managed subaccounts in Redis: one small hash per account (Redis keeps it as a compact listpack),
 * a lexical index for paging by SID, and an index scored by when the next rotation is due. Fields
 * are written separately by the inventory sync (name, status) and by finished rotations (current
 * key, last rotation), so neither overwrites the other.
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
  lastRotatedAt: string | null;
  lastRotationId: string | null;
  firstSeenAt: string;
}

export interface AccountView extends AccountRecord {
  keyAgeDays: number;
  nextRotationAt: string;
  overdue: boolean;
}

export interface SubaccountInfo {
  accountSid: string;
  friendlyName: string;
  status: string;
}

/** When the next rotation is due: a policy period after the last rotation, or after Rotator first saw the account. */
export function nextRotationMs(rec: Pick<AccountRecord, 'lastRotatedAt' | 'firstSeenAt' | 'policy'>): number {
  const base = Date.parse(rec.lastRotatedAt ?? rec.firstSeenAt);
  return base + POLICY_DAYS[rec.policy] * DAY_MS;
}

export function accountView(rec: AccountRecord, now: number): AccountView {
  const next = nextRotationMs(rec);
  const since = Date.parse(rec.lastRotatedAt ?? rec.firstSeenAt);
  return { ...rec, keyAgeDays: Math.max(0, Math.floor((now - since) / DAY_MS)), nextRotationAt: new Date(next).toISOString(), overdue: now > next };
}

// KEYS: account hash, lexical index, due index
// ARGV: sid, friendlyName, status, nowIso, defaultPolicy, quarterlyMs, monthlyMs, nowMs
const UPSERT = `
redis.call('HSET', KEYS[1], 'friendlyName', ARGV[2], 'status', ARGV[3])
local created = redis.call('HSETNX', KEYS[1], 'firstSeenAt', ARGV[4])
redis.call('HSETNX', KEYS[1], 'policy', ARGV[5])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if created == 1 then
  local period = ARGV[6]
  if redis.call('HGET', KEYS[1], 'policy') == 'monthly' then period = ARGV[7] end
  redis.call('ZADD', KEYS[3], tonumber(ARGV[8]) + tonumber(period), ARGV[1])
end
return created
`;

// KEYS: account hash, lexical index, due index
// ARGV: sid, keySid, rotatedAtIso, rotatedAtMs, rotationId, defaultPolicy, quarterlyMs, monthlyMs
const ROTATED = `
local last = tonumber(redis.call('HGET', KEYS[1], 'lastRotatedAtMs') or '0')
if last > tonumber(ARGV[4]) then return 0 end
redis.call('HSETNX', KEYS[1], 'firstSeenAt', ARGV[3])
redis.call('HSETNX', KEYS[1], 'friendlyName', '')
redis.call('HSETNX', KEYS[1], 'status', 'active')
redis.call('HSETNX', KEYS[1], 'policy', ARGV[6])
redis.call('HSET', KEYS[1], 'currentKeySid', ARGV[2], 'lastRotatedAt', ARGV[3], 'lastRotatedAtMs', ARGV[4], 'lastRotationId', ARGV[5])
local period = ARGV[7]
if redis.call('HGET', KEYS[1], 'policy') == 'monthly' then period = ARGV[8] end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], tonumber(ARGV[4]) + tonumber(period), ARGV[1])
return 1
`;

const FIELDS = ['friendlyName', 'status', 'policy', 'currentKeySid', 'lastRotatedAt', 'lastRotationId', 'firstSeenAt'] as const;

export class AccountRepository {
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
        pipe.eval(
          UPSERT,
          3,
          k.account(a.accountSid),
          k.accounts,
          k.accountsDue,
          a.accountSid,
          a.friendlyName,
          a.status,
          new Date(now).toISOString(),
          this.#defaultPolicy,
          String(POLICY_DAYS.quarterly * DAY_MS),
          String(POLICY_DAYS.monthly * DAY_MS),
          String(now),
        );
      }
      for (const [err, created] of (await pipe.exec()) ?? []) {
        if (err) throw err;
        if (created === 1) added++;
      }
    }
    return added;
  }

  /** A rotation of the account succeeded: its new key is current. Older news never overwrites newer. */
  async recordRotation(accountSid: string, keySid: string, rotatedAt: string, rotationId: string): Promise<void> {
    const k = this.#keys;
    await this.#redis.eval(
      ROTATED,
      3,
      k.account(accountSid),
      k.accounts,
      k.accountsDue,
      accountSid,
      keySid,
      rotatedAt,
      String(Date.parse(rotatedAt)),
      rotationId,
      this.#defaultPolicy,
      String(POLICY_DAYS.quarterly * DAY_MS),
      String(POLICY_DAYS.monthly * DAY_MS),
    );
  }

  async get(accountSid: string): Promise<AccountRecord | undefined> {
    return (await this.#read([accountSid]))[0];
  }

  /** Ordered by SID; the cursor is the last SID returned (opaque to clients). */
  async list(opts: { limit: number; cursor?: string }): Promise<{ items: AccountRecord[]; nextCursor: string | null }> {
    const min = opts.cursor ? `(${opts.cursor}` : '-';
    const sids = await this.#redis.zrangebylex(this.#keys.accounts, min, '+', 'LIMIT', 0, opts.limit + 1);
    const page = sids.slice(0, opts.limit);
    const items = await this.#read(page);
    return { items, nextCursor: sids.length > opts.limit ? (page.at(-1) ?? null) : null };
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
    const pipe = this.#redis.pipeline();
    for (const sid of sids) pipe.hmget(this.#keys.account(sid), ...FIELDS);
    const rows = (await pipe.exec()) ?? [];
    const out: AccountRecord[] = [];
    sids.forEach((sid, i) => {
      const [err, values] = rows[i] ?? [];
      if (err) throw err;
      const v = values as Array<string | null>;
      if (!v || v.every((x) => x === null)) return;
      const [friendlyName, status, policy, currentKeySid, lastRotatedAt, lastRotationId, firstSeenAt] = v;
      out.push({
        accountSid: sid,
        friendlyName: friendlyName ?? '',
        status: status ?? 'active',
        policy: policy === 'monthly' ? 'monthly' : 'quarterly',
        currentKeySid: currentKeySid || null,
        lastRotatedAt: lastRotatedAt || null,
        lastRotationId: lastRotationId || null,
        firstSeenAt: firstSeenAt ?? new Date(0).toISOString(),
      });
    });
    return out;
  }
}
