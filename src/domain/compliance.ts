/**
 * The compliance report (issue 13, item 6) and the guard on deleting a sprawl key. Pure: the
 * caller gathers the facts (records, the store's stages, Twilio's key lists) and passes the time.
 *
 * Per managed credential: its policy, the age of the key the store hands out against it, the last
 * rotation, when the next is due, overdue, within policy. Per subaccount: key sprawl — keys at
 * Twilio that Rotator did not create and that no store stage holds. Then totals.
 */
import type { CredentialKind } from './rotation.ts';
import { toCsv, type CsvValue } from './csv.ts';
// Pure (a formatter with a small cache of dates): a report page formats several times per row, and
// Date#toISOString was the largest single cost of serving one.
import { isoTime } from '../state/iso.ts';

export const DAY_MS = 86_400_000;
export const KEY_SID = /^SK[0-9a-f]{32}$/;

// ---------------------------------------------------------------------------------------------
// Facts in

export interface PolicyFacts {
  name: string;
  /** As configured (ISO 8601), for display: `P90D`. */
  interval: string;
  /** The interval in ms, as the policy module resolves it. */
  intervalMs: number;
  /** Optional hard limit on a key's age (ISO 8601), for display. */
  maxKeyAge: string | null;
  maxKeyAgeMs: number | null;
}

export interface CredentialFacts {
  accountSid: string;
  name: string;
  kind: CredentialKind;
  labels: readonly string[];
  policy: PolicyFacts;
  /** The key the store hands out (its current stage); null before the first rotation. */
  currentKeySid: string | null;
  /** Twilio's date_created of that key (epoch ms); null when Twilio does not list it. */
  keyCreatedAt: number | null;
  lastRotation: { at: number; outcome: string; rotationId?: string } | null;
  /** When the planner will have it rotated by (epoch ms); null when nothing is scheduled. */
  nextDueAt: number | null;
}

export interface TwilioKeyFacts {
  sid: string;
  friendlyName: string;
  /** date_created, epoch ms. */
  dateCreated: number;
}

/** One credential's secret in the store: the key SID each stage holds. */
export interface StoreStages {
  name: string;
  current: string | null;
  pending: string | null;
  previous: string | null;
}

export interface SubaccountFacts {
  accountSid: string;
  friendlyName: string;
  /** Twilio's status: active, suspended, closed. */
  status: string;
  /** The subaccount's keys at Twilio; null when they could not be listed. */
  keys: readonly TwilioKeyFacts[] | null;
  /** The store stages of every credential of this subaccount. */
  stages: readonly StoreStages[];
  /** KEY_NAME_PREFIX: Rotator names each key it creates `<prefix>:<rotationId>`. */
  keyNamePrefix: string;
  /** Ids of the rotations Rotator has on record for this subaccount. */
  rotationIds: ReadonlySet<string> | readonly string[];
}

// ---------------------------------------------------------------------------------------------
// Rows out

export interface CredentialRow {
  accountSid: string;
  credential: string;
  kind: CredentialKind;
  labels: string[];
  subaccountStatus: string;
  policy: string;
  policyInterval: string;
  maxKeyAge: string | null;
  /** The age a key may reach under the policy: maxKeyAge where set, else the interval. */
  allowedKeyAgeDays: number;
  keySid: string | null;
  keyCreatedAt: string | null;
  keyAgeDays: number | null;
  lastRotationAt: string | null;
  lastRotationOutcome: string | null;
  nextDueAt: string | null;
  overdue: boolean;
  /** null when not assessed (closed subaccount). */
  withinPolicy: boolean | null;
  /** Why it is not within policy or not assessed; null when all is well. */
  finding: string | null;
}

export interface KeyRow {
  sid: string;
  friendlyName: string;
  createdAt: string;
  ageDays: number;
}

export interface SubaccountRow {
  accountSid: string;
  friendlyName: string;
  status: string;
  /** How many keys Twilio lists; null when not listed. */
  keysAtTwilio: number | null;
  /** Keys Rotator did not create and no store stage holds. Reported, never deleted by Rotator on its own. */
  sprawl: KeyRow[];
  /** Keys Rotator created for a rotation it knows that no store stage holds: left by a run that died; the subaccount's next rotation deletes them. */
  leftover: Array<KeyRow & { rotationId: string }>;
  finding: string | null;
}

export interface ComplianceSummary {
  credentials: number;
  /** Credentials judged against their policy: all but those of closed subaccounts. */
  assessed: number;
  withinPolicy: number;
  /** Of the assessed, rounded down to 0.1 so that 100 means every one; null when none is assessed. */
  withinPolicyPercent: number | null;
  overdue: number;
  oldestKeyAgeDays: number | null;
  oldestKey: { accountSid: string; credential: string; keySid: string } | null;
  subaccounts: number;
  closedSubaccounts: number;
  sprawlKeys: number;
  leftoverKeys: number;
}

export interface ComplianceReport {
  generatedAt: string;
  summary: ComplianceSummary;
  credentials: CredentialRow[];
  subaccounts: SubaccountRow[];
}

// ---------------------------------------------------------------------------------------------
// Rules

/** Whole days since `from`, rounded down; never negative (a key dated a moment ahead by clock skew is 0 days old). */
export function ageDays(from: number, now: number): number {
  return Math.max(0, Math.floor((now - from) / DAY_MS));
}

/**
 * A closed subaccount is reported as closed and not judged: Twilio refuses every credential of it
 * (20003), so none of its keys can be used or rotated, and it leaves Twilio's list after 30 days.
 * Suspended ones are judged as usual: their keys work again once they are reactivated.
 */
export function isAssessed(subaccountStatus: string): boolean {
  return subaccountStatus !== 'closed';
}

/** The oldest a key may be under a policy: maxKeyAge where set (the hard limit), else the interval. */
export function allowedKeyAgeMs(policy: Pick<PolicyFacts, 'intervalMs' | 'maxKeyAgeMs'>): number {
  return policy.maxKeyAgeMs ?? policy.intervalMs;
}

/**
 * Overdue: the rotation was due and has not happened. Judged against `nextDueAt` (the planner's
 * deadline, which already accounts for windows and maxKeyAge), never for a closed subaccount.
 */
export function isOverdue(c: Pick<CredentialFacts, 'nextDueAt'>, subaccountStatus: string, now: number): boolean {
  return isAssessed(subaccountStatus) && c.nextDueAt !== null && now > c.nextDueAt;
}

/**
 * Within policy: the store hands out a key Twilio knows and it is no older than the policy allows.
 * No key in the store, or a store key Twilio does not list (applications reading it get 401s), is
 * not within policy. Compared in ms, not whole days, so a key one hour past P30D is out.
 */
export function withinPolicy(c: Pick<CredentialFacts, 'currentKeySid' | 'keyCreatedAt' | 'policy'> & Partial<Pick<CredentialFacts, 'kind'>>, now: number): { within: boolean; finding: string | null } {
  if (c.currentKeySid === null) return { within: false, finding: 'no key in the store: never rotated (bootstrap pending)' };
  if (c.keyCreatedAt === null) {
    // Twilio lists no Auth Token and dates none: its age is known from Rotator's own rotation only.
    if (c.kind === 'auth-token') return { within: false, finding: `the Auth Token's age is unknown (Twilio does not date it): rotate it once through Rotator to start its clock` };
    return { within: false, finding: `the store's key ${c.currentKeySid} is not listed at Twilio` };
  }
  const age = now - c.keyCreatedAt;
  const allowed = allowedKeyAgeMs(c.policy);
  if (age > allowed) {
    const limit = c.policy.maxKeyAge !== null ? `maxKeyAge ${c.policy.maxKeyAge}` : `interval ${c.policy.interval}`;
    return { within: false, finding: `key is ${ageDays(c.keyCreatedAt, now)} days old, beyond the policy ${c.policy.name}'s ${limit}` };
  }
  return { within: true, finding: null };
}

export type KeyClass = { kind: 'store'; credential: string; stage: 'current' | 'pending' | 'previous' } | { kind: 'rotator'; rotationId: string } | { kind: 'sprawl' };

/**
 * Whose a key at Twilio is. A key some store stage holds belongs to that credential, whoever made
 * it (an imported key the operator put in the store is not sprawl). Otherwise a FriendlyName
 * `<prefix>:<id>` with an id of a rotation Rotator knows is Rotator's. Anything else is sprawl —
 * including a FriendlyName that merely looks like Rotator's (anyone can type one) and keys of
 * rotations whose records retention has since removed: nothing on record accounts for them.
 */
export function classifyKey(key: Pick<TwilioKeyFacts, 'sid' | 'friendlyName'>, sub: Pick<SubaccountFacts, 'stages' | 'keyNamePrefix' | 'rotationIds'>, knownIds?: ReadonlySet<string>): KeyClass {
  for (const st of sub.stages) {
    for (const stage of ['current', 'pending', 'previous'] as const) {
      if (st[stage] === key.sid) return { kind: 'store', credential: st.name, stage };
    }
  }
  const mine = `${sub.keyNamePrefix}:`;
  if (key.friendlyName.startsWith(mine)) {
    const id = key.friendlyName.slice(mine.length);
    const ids = knownIds ?? toSet(sub.rotationIds);
    if (ids.has(id)) return { kind: 'rotator', rotationId: id };
  }
  return { kind: 'sprawl' };
}

function toSet(ids: ReadonlySet<string> | readonly string[]): ReadonlySet<string> {
  return ids instanceof Set ? ids : new Set(ids as readonly string[]);
}

function iso(ms: number | null): string | null {
  return ms === null ? null : isoTime(ms);
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function keyRow(k: TwilioKeyFacts, now: number): KeyRow {
  return { sid: k.sid, friendlyName: k.friendlyName, createdAt: isoTime(k.dateCreated), ageDays: ageDays(k.dateCreated, now) };
}

/** One credential's row: its facts judged at `now`, its subaccount having `subaccountStatus`. */
export function credentialRow(c: CredentialFacts, subaccountStatus: string, now: number): CredentialRow {
  const judged = isAssessed(subaccountStatus) ? withinPolicy(c, now) : { within: null, finding: 'subaccount closed: its keys no longer work at Twilio; not assessed' };
  return {
    accountSid: c.accountSid,
    credential: c.name,
    kind: c.kind,
    labels: [...c.labels],
    subaccountStatus,
    policy: c.policy.name,
    policyInterval: c.policy.interval,
    maxKeyAge: c.policy.maxKeyAge,
    allowedKeyAgeDays: allowedKeyAgeMs(c.policy) / DAY_MS,
    keySid: c.currentKeySid,
    keyCreatedAt: iso(c.keyCreatedAt),
    keyAgeDays: c.keyCreatedAt === null ? null : ageDays(c.keyCreatedAt, now),
    lastRotationAt: iso(c.lastRotation?.at ?? null),
    lastRotationOutcome: c.lastRotation?.outcome ?? null,
    nextDueAt: iso(c.nextDueAt),
    overdue: isOverdue(c, subaccountStatus, now),
    withinPolicy: judged.within,
    finding: judged.finding,
  };
}

/**
 * The first instant after `now` at which credentialRow(c, subaccountStatus, ·) may read
 * differently, the facts unchanged: the key's next birthday in days (keyAgeDays, and the days a
 * finding names), the first ms past its allowed age (withinPolicy), the first ms past its deadline
 * (overdue). Infinity when none applies. A cache of rendered rows (service/compliance.ts) keeps a
 * row for [now, this) and no longer: every time-dependent field is one of these three.
 */
export function credentialRowChangesAt(c: Pick<CredentialFacts, 'keyCreatedAt' | 'currentKeySid' | 'policy' | 'nextDueAt'>, subaccountStatus: string, now: number): number {
  let at = Infinity;
  if (c.keyCreatedAt !== null) {
    at = c.keyCreatedAt + (Math.max(0, Math.floor((now - c.keyCreatedAt) / DAY_MS)) + 1) * DAY_MS;
    const outAt = c.keyCreatedAt + allowedKeyAgeMs(c.policy) + 1;
    if (c.currentKeySid !== null && outAt > now) at = Math.min(at, outAt);
  }
  if (isAssessed(subaccountStatus) && c.nextDueAt !== null && c.nextDueAt >= now) at = Math.min(at, c.nextDueAt + 1);
  return at;
}

/**
 * The report. Rows in a fixed order — credentials by Account SID then name, subaccounts by SID,
 * keys oldest first — so two reports of the same fleet compare line by line.
 */
export function complianceReport(input: { credentials: Iterable<CredentialFacts>; subaccounts: Iterable<SubaccountFacts>; now: number }): ComplianceReport {
  const { now } = input;
  const subs = new Map<string, SubaccountFacts>();
  for (const s of input.subaccounts) subs.set(s.accountSid, s);

  const credentials: CredentialRow[] = [];
  for (const c of input.credentials) credentials.push(credentialRow(c, subs.get(c.accountSid)?.status ?? 'unknown', now));
  credentials.sort((a, b) => byCodeUnits(a.accountSid, b.accountSid) || byCodeUnits(a.credential, b.credential));

  const subaccounts: SubaccountRow[] = [];
  for (const s of subs.values()) {
    const row: SubaccountRow = { accountSid: s.accountSid, friendlyName: s.friendlyName, status: s.status, keysAtTwilio: s.keys?.length ?? null, sprawl: [], leftover: [], finding: null };
    if (!isAssessed(s.status)) row.finding = 'closed: its keys no longer work at Twilio; not assessed';
    else if (s.keys === null) row.finding = 'keys not listed at Twilio: sprawl unknown';
    else {
      const known = toSet(s.rotationIds);
      const keys = [...s.keys].sort((a, b) => a.dateCreated - b.dateCreated || byCodeUnits(a.sid, b.sid));
      for (const k of keys) {
        const cls = classifyKey(k, s, known);
        if (cls.kind === 'sprawl') row.sprawl.push(keyRow(k, now));
        else if (cls.kind === 'rotator') row.leftover.push({ ...keyRow(k, now), rotationId: cls.rotationId });
      }
      const parts: string[] = [];
      if (row.sprawl.length > 0) parts.push(`${row.sprawl.length} key${row.sprawl.length === 1 ? '' : 's'} not created by Rotator and held by no store stage`);
      if (row.leftover.length > 0) parts.push(`${row.leftover.length} key${row.leftover.length === 1 ? '' : 's'} left by interrupted rotations`);
      row.finding = parts.length > 0 ? parts.join('; ') : null;
    }
    subaccounts.push(row);
  }
  subaccounts.sort((a, b) => byCodeUnits(a.accountSid, b.accountSid));

  return { generatedAt: new Date(now).toISOString(), summary: summarize(credentials, subaccounts), credentials, subaccounts };
}

function summarize(credentials: readonly CredentialRow[], subaccounts: readonly SubaccountRow[]): ComplianceSummary {
  let assessed = 0;
  let within = 0;
  let overdue = 0;
  let oldest: CredentialRow | null = null;
  for (const c of credentials) {
    if (c.withinPolicy === null) continue;
    assessed++;
    if (c.withinPolicy) within++;
    if (c.overdue) overdue++;
    if (c.keyAgeDays !== null && (oldest === null || c.keyAgeDays > oldest.keyAgeDays!)) oldest = c;
  }
  return {
    credentials: credentials.length,
    assessed,
    withinPolicy: within,
    // Rounded down: 99.96% must not read as 100% to an auditor.
    withinPolicyPercent: assessed === 0 ? null : Math.floor((within * 1000) / assessed) / 10,
    overdue,
    oldestKeyAgeDays: oldest?.keyAgeDays ?? null,
    oldestKey: oldest ? { accountSid: oldest.accountSid, credential: oldest.credential, keySid: oldest.keySid! } : null,
    subaccounts: subaccounts.length,
    closedSubaccounts: subaccounts.filter((s) => !isAssessed(s.status)).length,
    sprawlKeys: subaccounts.reduce((n, s) => n + s.sprawl.length, 0),
    leftoverKeys: subaccounts.reduce((n, s) => n + s.leftover.length, 0),
  };
}

// ---------------------------------------------------------------------------------------------
// CSV

export const COMPLIANCE_CSV_COLUMNS = [
  'record',
  'account_sid',
  'subaccount_name',
  'subaccount_status',
  'credential',
  'kind',
  'labels',
  'policy',
  'policy_interval',
  'max_key_age',
  'allowed_key_age_days',
  'key_sid',
  'key_name',
  'key_created_at',
  'key_age_days',
  'last_rotation_at',
  'last_rotation_outcome',
  'next_due_at',
  'overdue',
  'within_policy',
  'keys_at_twilio',
  'sprawl_keys',
  'finding',
] as const;

type CsvRecord = Partial<Record<(typeof COMPLIANCE_CSV_COLUMNS)[number], CsvValue>>;

/**
 * The report as one CSV table, grouped by subaccount: a `subaccount` record, its `credential`
 * records, then its `sprawl-key` and `leftover-key` records; columns that do not apply to a record
 * are empty. Labels are joined by spaces (labels contain none). The summary is left out: every
 * figure in it is a count over these rows.
 */
export function complianceCsv(report: ComplianceReport): string {
  const bySub = new Map<string, CredentialRow[]>();
  for (const c of report.credentials) {
    const list = bySub.get(c.accountSid);
    if (list) list.push(c);
    else bySub.set(c.accountSid, [c]);
  }
  const subRows = new Map(report.subaccounts.map((s) => [s.accountSid, s]));
  const sids = [...new Set([...subRows.keys(), ...bySub.keys()])].sort(byCodeUnits);
  const records: CsvRecord[] = [];
  for (const sid of sids) {
    const s = subRows.get(sid);
    const sub = { account_sid: sid, subaccount_name: s?.friendlyName ?? null, subaccount_status: s?.status ?? 'unknown' };
    records.push({ record: 'subaccount', ...sub, keys_at_twilio: s?.keysAtTwilio ?? null, sprawl_keys: s && s.keysAtTwilio !== null && isAssessed(s.status) ? s.sprawl.length : null, finding: s?.finding ?? 'not in the inventory' });
    for (const c of bySub.get(sid) ?? []) {
      records.push({
        record: 'credential',
        ...sub,
        subaccount_status: c.subaccountStatus,
        credential: c.credential,
        kind: c.kind,
        labels: c.labels.join(' '),
        policy: c.policy,
        policy_interval: c.policyInterval,
        max_key_age: c.maxKeyAge,
        allowed_key_age_days: c.allowedKeyAgeDays,
        key_sid: c.keySid,
        key_created_at: c.keyCreatedAt,
        key_age_days: c.keyAgeDays,
        last_rotation_at: c.lastRotationAt,
        last_rotation_outcome: c.lastRotationOutcome,
        next_due_at: c.nextDueAt,
        overdue: c.overdue,
        within_policy: c.withinPolicy,
        finding: c.finding,
      });
    }
    for (const k of s?.sprawl ?? []) {
      records.push({ record: 'sprawl-key', ...sub, key_sid: k.sid, key_name: k.friendlyName, key_created_at: k.createdAt, key_age_days: k.ageDays, finding: 'not created by Rotator and held by no store stage' });
    }
    for (const k of s?.leftover ?? []) {
      records.push({ record: 'leftover-key', ...sub, key_sid: k.sid, key_name: k.friendlyName, key_created_at: k.createdAt, key_age_days: k.ageDays, finding: `left by rotation ${k.rotationId}; its subaccount's next rotation deletes it` });
    }
  }
  return toCsv(
    COMPLIANCE_CSV_COLUMNS,
    records.map((r) => COMPLIANCE_CSV_COLUMNS.map((col) => r[col] ?? null)),
  );
}

// ---------------------------------------------------------------------------------------------
// Deleting a sprawl key

export type SprawlDeleteVerdict = { ok: true } | { ok: false; status: 400 | 404 | 409; code: string; reason: string };

/**
 * May an admin delete this key? Only a sprawl key, named twice. Input first (400): a well-formed
 * key SID, and `confirm` repeating it exactly — the explicit action the issue asks for, so a
 * mistyped or replayed request cannot delete another key. Then the world (409/404), read just
 * before: never a key any store stage holds (current: applications use it now; pending: a rotation
 * is staging it; previous: applications may still cache it until the drain ends); never a key of a
 * rotation Rotator knows (it cleans those up itself, in step with the rotation); nothing in a
 * closed subaccount or one whose keys could not be listed; and the key must be listed at Twilio.
 */
export function checkSprawlKeyDelete(request: { keySid: unknown; confirm: unknown }, sub: SubaccountFacts): SprawlDeleteVerdict {
  const { keySid, confirm } = request;
  if (typeof keySid !== 'string' || !KEY_SID.test(keySid)) {
    return { ok: false, status: 400, code: 'invalid_key_sid', reason: `keySid must be an API key SID ("SK" and 32 lower-case hex digits)` };
  }
  if (confirm !== keySid) {
    return { ok: false, status: 400, code: 'confirmation_required', reason: `confirm must repeat the key SID ${keySid} exactly to delete it` };
  }
  const cls = classifyKey({ sid: keySid, friendlyName: sub.keys?.find((k) => k.sid === keySid)?.friendlyName ?? '' }, sub);
  if (cls.kind === 'store') {
    const why = { current: 'applications read it now', pending: 'a rotation is staging it', previous: 'applications may still use it until the drain ends' }[cls.stage];
    return { ok: false, status: 409, code: 'key_in_store', reason: `${keySid} is the store's ${cls.stage} key of credential ${cls.credential} (${why}); Rotator never deletes it as sprawl` };
  }
  if (!isAssessed(sub.status)) return { ok: false, status: 409, code: 'subaccount_closed', reason: `subaccount ${sub.accountSid} is closed: its keys no longer work and cannot be deleted` };
  if (sub.keys === null) return { ok: false, status: 409, code: 'keys_unknown', reason: `the keys of ${sub.accountSid} could not be listed at Twilio; try again` };
  if (!sub.keys.some((k) => k.sid === keySid)) return { ok: false, status: 404, code: 'key_not_found', reason: `${keySid} is not a key of subaccount ${sub.accountSid}` };
  if (cls.kind === 'rotator') return { ok: false, status: 409, code: 'rotator_key', reason: `${keySid} was created by rotation ${cls.rotationId}; Rotator deletes its own keys as that rotation finishes or is undone` };
  return { ok: true };
}
