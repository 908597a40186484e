import type { Redis } from 'ioredis';
import { credentialId, DEFAULT_CREDENTIAL, parseCredentialId, type CredentialKind, type CredentialRef } from '../domain/credential.ts';
import { runScript } from './lua.ts';
import { overrideArgs, SET_OVERRIDE } from './overrides.ts';
import { MARK_ROWS } from './compliance-rows.ts';
import { unknownPolicy } from './policies.ts';
import { redisKeys, type RedisKeys } from './keys.ts';

/**
 * The inventory of managed credentials (issue 13): one small JSON string per credential
 * (`cred:AC…/name`, times as epoch ms) and one lexical index of their ids, so the fleet pages by id
 * and a subaccount's credentials are one ZRANGEBYLEX. Every write is a Lua script that merges only
 * its own fields: a finished rotation (current key, last outcome), an operator's override or pause,
 * and the key-age refresh never overwrite each other.
 *
 * Earlier versions kept the current key and last rotation on the subaccount's record
 * (state/accounts.ts, fields k and r). Those become the subaccount's `default` credential: read
 * through (`get` falls back to the account record) and written once by `migrateFromAccounts`, which
 * every process runs at start; it is idempotent and never overwrites a credential that exists.
 */

export interface ManagedCredential {
  accountSid: string;
  name: string;
  kind: CredentialKind;
  /** The key the store hands out, as of the last rotation Rotator finished (or adopted). */
  currentKeySid: string | null;
  /** Twilio's date_created of that key (epoch ms), when known. */
  keyCreatedAtMs: number | null;
  /** When the last successful rotation finished (epoch ms). */
  lastRotatedAtMs: number | null;
  /** The last rotation that finished, whatever its outcome (not dry runs). */
  lastRotation: { id: string; atMs: number; outcome: string } | null;
  /** When Rotator first recorded this credential (epoch ms). */
  firstSeenAtMs: number;
  /** A per-credential policy override (a policy name), the most specific assignment. */
  policy: string | null;
  paused: boolean;
}

/**
 * As stored: t kind (absent: api-key), k current key SID, c its date_created, r last successful
 * rotation, l [id, at, outcome] of the last finished one, f first seen, p policy override, z paused.
 */
export interface StoredCredential {
  t?: string;
  k?: string;
  c?: number;
  r?: number;
  l?: [string, number, string];
  f?: number;
  p?: string;
  z?: 1;
}

export interface FinishedRotation {
  id: string;
  accountSid: string;
  credential?: string;
  kind?: CredentialKind;
  status: string;
  dryRun: boolean;
  newKeySid?: string;
  finishedAt?: string;
  updatedAt: string;
}

// KEYS: credential, index, row generations, dirty rows (state/compliance-rows.ts). ARGV: id, nowMs, kind
const ENSURE = `${MARK_ROWS}
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local c = { f = tonumber(ARGV[2]) }
if ARGV[3] ~= 'api-key' then c.t = ARGV[3] end
redis.call('SET', KEYS[1], cjson.encode(c))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
mark_rows(KEYS[3], KEYS[4], string.match(ARGV[1], '^([^/]*)/'))
return 1
`;

// KEYS: credential, index, row generations, dirty rows. ARGV: id, rotationId, atMs, outcome, kind, keySid ('' unless succeeded), keyCreatedMs ('' = unknown)
// Older news never overwrites newer: a finish earlier than the recorded one changes nothing.
const FINISHED = `${MARK_ROWS}
local raw = redis.call('GET', KEYS[1])
local c
if raw then c = cjson.decode(raw) else c = { f = tonumber(ARGV[3]) } end
if ARGV[5] ~= 'api-key' then c.t = ARGV[5] end
local at = tonumber(ARGV[3])
if type(c.l) == 'table' and tonumber(c.l[2]) > at then return 0 end
c.l = { ARGV[2], at, ARGV[4] }
if ARGV[6] ~= '' then
  c.k = ARGV[6]
  c.r = at
  if ARGV[7] ~= '' then c.c = tonumber(ARGV[7]) else c.c = nil end
end
redis.call('SET', KEYS[1], cjson.encode(c))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
mark_rows(KEYS[3], KEYS[4], string.match(ARGV[1], '^([^/]*)/'))
return 1
`;

// KEYS: credential, row generations, dirty rows. ARGV: keySid, createdMs, accountSid. Only while that key is still the current one.
const KEY_CREATED = `${MARK_ROWS}
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local c = cjson.decode(raw)
if c.k ~= ARGV[1] then return 0 end
if c.c == tonumber(ARGV[2]) then return 1 end
c.c = tonumber(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(c))
mark_rows(KEYS[2], KEYS[3], ARGV[3])
return 1
`;

// KEYS: credential, index, row generations, dirty rows. ARGV: id, nowMs, policy ('' keep, '-' clear, else set), paused ('' keep, '0', '1'),
// policy-users key prefix, policies hash ('' when the named policy need not be stored: a built-in one).
// As the account's override (state/accounts.ts): checked and indexed by its policy in the same script.
const PATCH = `${SET_OVERRIDE}${MARK_ROWS}
if ARGV[3] ~= '' and ARGV[3] ~= '-' and ARGV[6] ~= '' and redis.call('HEXISTS', ARGV[6], ARGV[3]) == 0 then
  return redis.error_reply('unknown_policy')
end
local raw = redis.call('GET', KEYS[1])
local c
if raw then c = cjson.decode(raw) else c = { f = tonumber(ARGV[2]) } end
set_override(c, 'p', ARGV[3], ARGV[1], ARGV[5])
if ARGV[4] == '1' then c.z = 1 elseif ARGV[4] == '0' then c.z = nil end
redis.call('SET', KEYS[1], cjson.encode(c))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
mark_rows(KEYS[3], KEYS[4], string.match(ARGV[1], '^([^/]*)/'))
return cjson.encode(c)
`;

// KEYS: account record, credential, index, row generations, dirty rows. ARGV: id. The account's k/r become its default credential, once.
const MIGRATE = `${MARK_ROWS}
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local a = cjson.decode(raw)
if a.k == nil and a.r == nil then return 0 end
local c = { f = a.f or a.r or 0 }
if a.k ~= nil then c.k = a.k end
if a.r ~= nil then c.r = a.r end
redis.call('SET', KEYS[2], cjson.encode(c))
redis.call('ZADD', KEYS[3], 0, ARGV[1])
mark_rows(KEYS[4], KEYS[5], string.match(ARGV[1], '^([^/]*)/'))
return 1
`;

export class CredentialRepository {
  readonly #redis: Redis;
  readonly keys: RedisKeys;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.keys = redisKeys(prefix);
  }

  /** Start managing a credential (a no-op when it is managed already); true when it was new. */
  async ensure(ref: CredentialRef, opts: { kind?: CredentialKind; now?: number } = {}): Promise<boolean> {
    const id = credentialId(ref);
    const created = await runScript(this.#redis, ENSURE, 4, this.keys.credential(id), this.keys.credentials, this.keys.complianceRowGen, this.keys.complianceRowDirty, id, String(opts.now ?? Date.now()), opts.kind ?? 'api-key');
    return created === 1;
  }

  /**
   * A rotation finished: its outcome is the credential's last, and a success makes its new key
   * current. Dry runs change nothing. `keyCreatedAtMs` is the new key's date_created when known.
   */
  async recordFinished(rec: FinishedRotation, keyCreatedAtMs?: number | null): Promise<boolean> {
    if (rec.dryRun) return false;
    const id = credentialId({ accountSid: rec.accountSid, name: rec.credential ?? DEFAULT_CREDENTIAL });
    const succeeded = rec.status === 'succeeded' && !!rec.newKeySid;
    const at = Date.parse(rec.finishedAt ?? rec.updatedAt);
    const done = await runScript(
      this.#redis,
      FINISHED,
      4,
      this.keys.credential(id),
      this.keys.credentials,
      this.keys.complianceRowGen,
      this.keys.complianceRowDirty,
      id,
      rec.id,
      String(at),
      rec.status,
      rec.kind ?? 'api-key',
      succeeded ? rec.newKeySid! : '',
      succeeded && keyCreatedAtMs ? String(keyCreatedAtMs) : '',
    );
    return done === 1;
  }

  /** Twilio's date_created of the current key (the compliance report and the sync learn it); ignored once another key is current. */
  async setKeyCreated(ref: CredentialRef, keySid: string, createdAtMs: number): Promise<boolean> {
    return (await runScript(this.#redis, KEY_CREATED, 3, this.keys.credential(credentialId(ref)), this.keys.complianceRowGen, this.keys.complianceRowDirty, keySid, String(createdAtMs), ref.accountSid)) === 1;
  }

  /**
   * Set or clear the per-credential policy override (`null` clears) and the pause; the credential
   * becomes managed if it was not. `requireStoredPolicy`: as AccountRepository#patch.
   */
  async patch(ref: CredentialRef, change: { policy?: string | null; paused?: boolean }, now: number = Date.now(), opts: { requireStoredPolicy?: boolean } = {}): Promise<ManagedCredential> {
    const id = credentialId(ref);
    const { policy, paused } = overrideArgs(change);
    const k = this.keys;
    const raw = (await runScript(this.#redis, PATCH, 4, k.credential(id), k.credentials, k.complianceRowGen, k.complianceRowDirty, id, String(now), policy, paused, k.policyUsers(''), opts.requireStoredPolicy ? k.policies : '').catch((err: Error) => {
      throw unknownPolicy(err, change.policy);
    })) as string;
    return fromStored(ref, JSON.parse(raw) as StoredCredential);
  }

  async get(ref: CredentialRef): Promise<ManagedCredential | undefined> {
    return (await this.getMany([credentialId(ref)]))[0] ?? undefined;
  }

  /** In the order of `ids`; undefined where a credential is not managed. A `default` not migrated yet reads through its account record. */
  async getMany(ids: readonly string[]): Promise<Array<ManagedCredential | undefined>> {
    if (ids.length === 0) return [];
    const values = await this.#redis.mget(ids.map((id) => this.keys.credential(id)));
    const out: Array<ManagedCredential | undefined> = values.map((raw, i) => (raw ? fromStored(parseCredentialId(ids[i]!), JSON.parse(raw) as StoredCredential) : undefined));
    const legacy = ids.map((id, i) => ({ id, i })).filter(({ id, i }) => !out[i] && parseCredentialId(id).name === DEFAULT_CREDENTIAL);
    if (legacy.length) {
      const accounts = await this.#redis.mget(legacy.map(({ id }) => this.keys.account(parseCredentialId(id).accountSid)));
      legacy.forEach(({ id, i }, j) => {
        const a = accounts[j] ? (JSON.parse(accounts[j]!) as { k?: string; r?: number; f?: number }) : undefined;
        if (a && (a.k !== undefined || a.r !== undefined)) out[i] = fromStored(parseCredentialId(id), { k: a.k, r: a.r, f: a.f ?? a.r ?? 0 });
      });
    }
    return out;
  }

  /** A subaccount's managed credentials, by name. */
  async forAccount(accountSid: string): Promise<ManagedCredential[]> {
    const ids = await this.#redis.zrangebylex(this.keys.credentials, `[${accountSid}/`, `[${accountSid}/\xff`);
    return (await this.getMany(ids)).filter((c): c is ManagedCredential => c !== undefined);
  }

  /** Ordered by id (`AC…/name`); the cursor is the last id returned. */
  async list(opts: { limit: number; cursor?: string; accountSid?: string }): Promise<{ items: ManagedCredential[]; nextCursor: string | null }> {
    const min = opts.cursor ? `(${opts.cursor}` : opts.accountSid ? `[${opts.accountSid}/` : '-';
    const max = opts.accountSid ? `[${opts.accountSid}/\xff` : '+';
    const ids = await this.#redis.zrangebylex(this.keys.credentials, min, max, 'LIMIT', 0, opts.limit + 1);
    const page = ids.slice(0, opts.limit);
    const items = (await this.getMany(page)).filter((c): c is ManagedCredential => c !== undefined);
    return { items, nextCursor: ids.length > opts.limit ? (page.at(-1) ?? null) : null };
  }

  /** Every managed credential, in id order, `batch` at a time (the planner's rebuild, compliance, batch selection). */
  async *all(batch = 1000): AsyncGenerator<ManagedCredential[]> {
    let cursor: string | undefined;
    for (;;) {
      const page = await this.list({ limit: batch, cursor });
      if (page.items.length) yield page.items;
      if (!page.nextCursor) return;
      cursor = page.nextCursor;
    }
  }

  async count(): Promise<number> {
    return this.#redis.zcard(this.keys.credentials);
  }

  /**
   * Earlier versions' per-account current key and last rotation become each subaccount's `default`
   * credential. Idempotent (a credential that exists is never overwritten), safe for any number of
   * processes at once; returns how many were written.
   */
  async migrateFromAccounts(batch = 500): Promise<number> {
    // Done once per Redis: every later start costs one GET. (Earlier versions must be stopped
    // before this one starts — README, Upgrades — so nothing writes the old fields afterwards.)
    const done = `${this.keys.credentials}:migrated`;
    if ((await this.#redis.get(done)) === '1') return 0;
    const migrated = await this.#migrate(batch);
    await this.#redis.set(done, '1');
    return migrated;
  }

  async #migrate(batch: number): Promise<number> {
    let migrated = 0;
    let min = '-';
    for (;;) {
      const sids = await this.#redis.zrangebylex(this.keys.accounts, min, '+', 'LIMIT', 0, batch);
      if (sids.length === 0) return migrated;
      const pipe = this.#redis.pipeline();
      for (const sid of sids) {
        const id = credentialId({ accountSid: sid, name: DEFAULT_CREDENTIAL });
        pipe.eval(MIGRATE, 5, this.keys.account(sid), this.keys.credential(id), this.keys.credentials, this.keys.complianceRowGen, this.keys.complianceRowDirty, id);
      }
      for (const [err, n] of (await pipe.exec()) ?? []) {
        if (err) throw err;
        if (n === 1) migrated++;
      }
      if (sids.length < batch) return migrated;
      min = `(${sids.at(-1)}`;
    }
  }
}

export function fromStored(ref: CredentialRef, c: StoredCredential): ManagedCredential {
  return {
    accountSid: ref.accountSid,
    name: ref.name,
    kind: (c.t ?? 'api-key') as CredentialKind,
    currentKeySid: c.k ?? null,
    keyCreatedAtMs: typeof c.c === 'number' ? c.c : null,
    lastRotatedAtMs: typeof c.r === 'number' ? c.r : null,
    lastRotation: Array.isArray(c.l) ? { id: String(c.l[0]), atMs: Number(c.l[1]), outcome: String(c.l[2]) } : null,
    firstSeenAtMs: typeof c.f === 'number' ? c.f : 0,
    policy: typeof c.p === 'string' ? c.p : null,
    paused: c.z === 1,
  };
}

/** A credential as stored (its JSON text, or that text parsed) → the record: for pages read by one script elsewhere (state/compliance.ts). */
export function credentialFromJson(id: string, json: string | object): ManagedCredential {
  return fromStored(parseCredentialId(id), (typeof json === 'string' ? JSON.parse(json) : json) as StoredCredential);
}
