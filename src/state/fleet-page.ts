import type { Redis } from 'ioredis';
import { DEFAULT_CREDENTIAL, parseCredentialId } from '../domain/credential.ts';
import { fromStored as accountFromStored, type AccountRecord, type StoredAccount } from './accounts.ts';
import { fromStored as credentialFromStored, type CredentialRepository, type ManagedCredential, type StoredCredential } from './credentials.ts';
import { runScript } from './lua.ts';

/**
 * A page of the fleet in one round trip: credential ids by id order, their records and their
 * subaccounts' records, as one JSON text (`[ids, credentials, sids, accounts]`). The fleet view
 * (GET /v1/credentials) reads this per request; as with the accounts page (state/accounts.ts), one
 * string decoded once costs a fraction of a ZRANGE, two MGETs and a parse per record.
 */
// The page's ids: by id (lexical index) or by deadline (the planner's deadlines set), either way.
// KEYS: credentials index, deadlines. ARGV: order ('id' | 'id-desc' | 'deadline' | 'deadline-desc'),
// min, max (lexical bounds for id; for deadline: the cursor's score and id, or '' for the start),
// limit, credential key prefix, account key prefix, lock key prefix, rotation key prefix
const PAGE = `
local order, limit = ARGV[1], tonumber(ARGV[4])
local ids, scores = {}, {}
if order == 'id' then
  ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, limit + 1)
elseif order == 'id-desc' then
  ids = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[3], ARGV[2], 'LIMIT', 0, limit + 1)
else
  local desc = order == 'deadline-desc'
  local flat
  -- After the cursor: by rank while its credential still holds that score (ties stay in order), else by score.
  local at = ARGV[2] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[3])
  if ARGV[2] == '' then
    flat = redis.call(desc and 'ZREVRANGE' or 'ZRANGE', KEYS[2], 0, limit, 'WITHSCORES')
  elseif at and tonumber(at) == tonumber(ARGV[2]) then
    local rank = redis.call(desc and 'ZREVRANK' or 'ZRANK', KEYS[2], ARGV[3])
    flat = redis.call(desc and 'ZREVRANGE' or 'ZRANGE', KEYS[2], rank + 1, rank + 1 + limit, 'WITHSCORES')
  elseif desc then
    flat = redis.call('ZREVRANGEBYSCORE', KEYS[2], '(' .. ARGV[2], '-inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
  else
    flat = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
  end
  for i = 1, #flat, 2 do
    ids[#ids + 1] = flat[i]
    scores[#scores + 1] = flat[i + 1]
  end
end
if #ids == 0 then return '[[],[],[],[],[],[]]' end
local ckeys, lkeys, sids, akeys, seen = {}, {}, {}, {}, {}
for i = 1, math.min(limit, #ids) do
  ckeys[i] = ARGV[5] .. ids[i]
  local sid, name = string.match(ids[i], '^([^/]+)/(.*)$')
  -- keys.credentialLock: the default credential keeps the subaccount's lock.
  lkeys[i] = ARGV[7] .. (sid or '') .. ((name == 'default' or not name) and '' or (':' .. name))
  if sid and not seen[sid] then
    seen[sid] = true
    sids[#sids + 1] = sid
    akeys[#akeys + 1] = ARGV[6] .. sid
  end
end
local creds = redis.call('MGET', unpack(ckeys))
for i = 1, #creds do if not creds[i] then creds[i] = 'null' end end
local accts = {}
if #akeys > 0 then accts = redis.call('MGET', unpack(akeys)) end
for i = 1, #accts do if not accts[i] then accts[i] = 'null' end end
-- A rotation in flight: the credential's lock names it and its record is not finished.
local locks = redis.call('MGET', unpack(lkeys))
local flying = {}
for i = 1, #locks do
  local f = 'null'
  if locks[i] then
    local rec = redis.call('GET', ARGV[8] .. locks[i])
    -- The record's first line is its summary (state/rotations.ts encodeRecord; older records are one object).
    local r = rec and cjson.decode(string.match(rec, '^[^\\n]*'))
    local status = r and r.status
    if status and status ~= 'succeeded' and status ~= 'failed' and status ~= 'cancelled' and status ~= 'rolled_back' then
      f = cjson.encode({ locks[i], status, r.step or '' })
    end
  end
  flying[i] = f
end
return '[' .. cjson.encode(ids) .. ',[' .. table.concat(creds, ',') .. '],' .. (#sids > 0 and cjson.encode(sids) or '[]') .. ',[' .. table.concat(accts, ',') .. '],[' .. table.concat(flying, ',') .. '],' .. (#scores > 0 and cjson.encode(scores) or '[]') .. ']'
`;

/** How a fleet page is ordered: by id (`AC…/name`, the subaccount then the name) or by deadline (scheduled credentials only). */
export type FleetOrder = 'id' | 'id-desc' | 'deadline' | 'deadline-desc';

export interface InFlightRotation {
  id: string;
  status: string;
  step: string;
}

export interface FleetPageRow {
  credential: ManagedCredential;
  account: AccountRecord | undefined;
  /** The rotation of this credential in flight, if any. */
  inFlight: InFlightRotation | null;
}

/**
 * Ordered by id (`AC…/name`), optionally one subaccount's, or by deadline (the planner's index:
 * credentials with no deadline, such as paused or excluded ones, are not in it). The cursor is the
 * last id read; by deadline, `<deadline ms>:<id>`.
 */
export async function readFleetPage(
  redis: Redis,
  credentials: Pick<CredentialRepository, 'getMany' | 'keys'>,
  opts: { limit: number; cursor?: string; accountSid?: string; order?: FleetOrder },
): Promise<{ rows: FleetPageRow[]; nextCursor: string | null }> {
  const k = credentials.keys;
  const order = opts.order ?? 'id';
  let min: string;
  let max: string;
  if (order === 'id' || order === 'id-desc') {
    const desc = order === 'id-desc';
    min = opts.cursor && !desc ? `(${opts.cursor}` : opts.accountSid ? `[${opts.accountSid}/` : '-';
    max = opts.cursor && desc ? `(${opts.cursor}` : opts.accountSid ? `[${opts.accountSid}/\xff` : '+';
  } else {
    const at = opts.cursor ? opts.cursor.indexOf(':') : -1;
    min = at > 0 ? opts.cursor!.slice(0, at) : '';
    max = at > 0 ? opts.cursor!.slice(at + 1) : '';
  }
  const lockPrefix = k.credentialLock('', DEFAULT_CREDENTIAL);
  const text = (await runScript(redis, PAGE, 2, k.credentials, k.scheduleDeadlines, order, min, max, String(opts.limit), k.credential(''), k.account(''), lockPrefix, k.rotation(''))) as string;
  const [ids, creds, sids, accts, flying, scores] = JSON.parse(text) as [string[], Array<StoredCredential | null>, string[], Array<StoredAccount | null>, Array<[string, string, string] | null>, string[]];
  const bySid = new Map<string, AccountRecord>();
  accts.forEach((a, i) => {
    if (a) bySid.set(sids[i]!, accountFromStored(sids[i]!, a));
  });
  const page = ids.slice(0, opts.limit);
  // An indexed credential without a record: a `default` not migrated yet reads through its account (rare: every process migrates at start).
  const missing = page.filter((_, i) => !creds[i]);
  const through = missing.length ? new Map(missing.map((id, i) => [id, i])) : undefined;
  const late = through ? await credentials.getMany(missing) : [];
  const rows: FleetPageRow[] = [];
  page.forEach((id, i) => {
    const ref = parseCredentialId(id);
    const stored = creds[i];
    const credential = stored ? credentialFromStored(ref, stored) : late[through!.get(id)!];
    const f = flying[i];
    if (credential) rows.push({ credential, account: bySid.get(ref.accountSid), inFlight: f ? { id: f[0], status: f[1], step: f[2] } : null });
  });
  const last = page.at(-1);
  if (ids.length <= opts.limit || last === undefined) return { rows, nextCursor: null };
  return { rows, nextCursor: scores.length ? `${scores[page.length - 1]}:${last}` : last };
}
