/**
 * A credential's compliance row split into what does not depend on the clock (its values, rendered
 * once when the row's inputs change, and stored) and the four fields that do (keyAgeDays, overdue,
 * withinPolicy, finding), which `rowJson` fills in at read time from stored timestamps, into a
 * template built once from the values and kept by the reader. Joined, the text is exactly
 * JSON.stringify({ ...credentialRow(facts, status, now), scannedAt }): the report's row, in the
 * schema's field order (test/unit/compliance-page.test.ts checks it).
 *
 * Stored compact: the values alone, by position, each as its JSON text (strings quoted and
 * escaped, so a value never needs escaping again when the row is joined), without the field
 * names, the account SID and credential name (the row's key says them) or anything another field
 * gives (allowedKeyAgeDays from allowedMs, whether the subaccount is judged from its status).
 */
import { ageDays, allowedKeyAgeMs, credentialRow, DAY_MS, isAssessed, type CredentialFacts } from './compliance.ts';
import { isoTime } from '../state/iso.ts';

/** The row's values that do not depend on the clock, as stored: each string its JSON text. */
export interface RowValues {
  kind: string;
  labels: string;
  subaccountStatus: string;
  policy: string;
  policyInterval: string;
  maxKeyAge: string;
  keySid: string;
  lastRotationAt: string;
  lastRotationOutcome: string;
  scannedAt: string;
  /** The oldest the key may be under the policy (allowedKeyAgeDays × a day). */
  allowedMs: number;
  keyCreatedAt: number | null;
  nextDueAt: number | null;
  /** The finding's JSON text when the clock cannot change it (closed, no key, key not listed); '' when the key's age decides. */
  finding: string;
}

/** The row's values for a credential whose subaccount has `subaccountStatus`, scanned at `scannedAt` (ISO, or null). */
export function rowValues(c: CredentialFacts, subaccountStatus: string, scannedAt: string | null): RowValues {
  // The row at an instant where nothing is time dependent, only for its fixed fields.
  const r = credentialRow(c, subaccountStatus, 0);
  const fixed = !isAssessed(subaccountStatus) || c.currentKeySid === null || c.keyCreatedAt === null;
  return {
    kind: JSON.stringify(r.kind),
    labels: JSON.stringify(r.labels),
    subaccountStatus: JSON.stringify(subaccountStatus),
    policy: JSON.stringify(r.policy),
    policyInterval: JSON.stringify(r.policyInterval),
    maxKeyAge: JSON.stringify(r.maxKeyAge),
    keySid: JSON.stringify(r.keySid),
    lastRotationAt: JSON.stringify(r.lastRotationAt),
    lastRotationOutcome: JSON.stringify(r.lastRotationOutcome),
    scannedAt: JSON.stringify(scannedAt),
    allowedMs: allowedKeyAgeMs(c.policy),
    keyCreatedAt: c.keyCreatedAt,
    nextDueAt: c.nextDueAt,
    finding: fixed ? JSON.stringify(r.finding) : '',
  };
}

/** A row ready to join at any instant: its JSON text around the clock's fields, built once from its values and kept. */
export interface RowTemplate {
  /** `{"accountSid":…,"keyCreatedAt":…,"keyAgeDays":` */
  head: string;
  /** `,"lastRotationAt":…,"nextDueAt":…,"overdue":` */
  mid: string;
  /** `,"scannedAt":…}` */
  tail: string;
  /** `"withinPolicy":…,"finding":…` when the clock cannot change them; '' when the key's age decides. */
  judged: string;
  keyCreatedAt: number | null;
  nextDueAt: number | null;
  assessed: boolean;
  allowedMs: number;
  /** JSON texts: for filters and the out-of-policy finding. */
  policy: string;
  policyInterval: string;
  maxKeyAge: string;
  labels: string;
  /** Memo: the labels as a list (a filter by label), the text of an out-of-policy finding after the age. */
  labelList?: readonly string[];
  beyond?: string;
}

/** The template of credential `accountSid`/`name`'s row from its values. */
export function rowTemplate(accountSid: string, name: string, v: RowValues): RowTemplate {
  const assessed = isAssessed(JSON.parse(v.subaccountStatus) as string);
  return {
    head: flat(
      `{"accountSid":${JSON.stringify(accountSid)},"credential":${JSON.stringify(name)},"kind":${v.kind},"labels":${v.labels},"subaccountStatus":${v.subaccountStatus},"policy":${v.policy},"policyInterval":${v.policyInterval},"maxKeyAge":${v.maxKeyAge},"allowedKeyAgeDays":${v.allowedMs / DAY_MS},"keySid":${v.keySid},"keyCreatedAt":${isoText(v.keyCreatedAt)},"keyAgeDays":`,
    ),
    mid: flat(`,"lastRotationAt":${v.lastRotationAt},"lastRotationOutcome":${v.lastRotationOutcome},"nextDueAt":${isoText(v.nextDueAt)},"overdue":`),
    tail: `,"scannedAt":${v.scannedAt}}`,
    judged: v.finding === '' ? '' : `"withinPolicy":${assessed ? 'false' : 'null'},"finding":${v.finding}`,
    keyCreatedAt: v.keyCreatedAt,
    nextDueAt: v.nextDueAt,
    assessed,
    allowedMs: v.allowedMs,
    policy: v.policy,
    policyInterval: v.policyInterval,
    maxKeyAge: v.maxKeyAge,
    labels: v.labels,
  };
}

/**
 * `s` as one flat string. A string built by concatenation is a tree of its pieces until something
 * reads it character by character, which makes V8 flatten it in place: a kept template is joined
 * into every page that shows it, and joining flat ones cost a page a quarter as much (measured).
 */
function flat(s: string): string {
  s.charCodeAt(0);
  return s;
}

function isoText(ms: number | null): string {
  return ms === null ? 'null' : `"${isoTime(ms)}"`;
}

/** Whether the row is overdue at `now` (isOverdue's rule, from the stored deadline). */
export function rowOverdue(t: Pick<RowTemplate, 'assessed' | 'nextDueAt'>, now: number): boolean {
  return t.assessed && t.nextDueAt !== null && now > t.nextDueAt;
}

/** The row's labels (memoised on it: a filtered page examines many rows). */
export function rowLabels(t: RowTemplate): readonly string[] {
  return (t.labelList ??= JSON.parse(t.labels) as string[]);
}

/** The row's JSON text at `now`: withinPolicy's and credentialRow's rules on the stored timestamps. */
export function rowJson(t: RowTemplate, now: number): string {
  const age = t.keyCreatedAt === null ? -1 : ageDays(t.keyCreatedAt, now);
  let judged = t.judged;
  if (judged === '') judged = now - t.keyCreatedAt! > t.allowedMs ? `"withinPolicy":false,"finding":"key is ${age}${beyond(t)}` : '"withinPolicy":true,"finding":null';
  return `${t.head}${age < 0 ? 'null' : age}${t.mid}${rowOverdue(t, now)},${judged}${t.tail}`;
}

/** withinPolicy's finding after the key's age, JSON-escaped, without the opening quote: ` days old, beyond …"`. */
function beyond(t: RowTemplate): string {
  if (t.beyond === undefined) {
    const maxKeyAge = JSON.parse(t.maxKeyAge) as string | null;
    const limit = maxKeyAge !== null ? `maxKeyAge ${maxKeyAge}` : `interval ${JSON.parse(t.policyInterval) as string}`;
    t.beyond = JSON.stringify(` days old, beyond the policy ${JSON.parse(t.policy) as string}'s ${limit}`).slice(1);
  }
  return t.beyond;
}

// ---------------------------------------------------------------------------------------------
// As stored: `<stamp>␟c2␟<value>␟<value>…`, fields separated by U+001F, which JSON text never holds
// raw (JSON.stringify escapes every control character), so no value needs escaping. `c2` names the
// layout: a row stored in any other (the first one held each row's whole JSON text with its field
// names, three times the bytes) is not decoded but rendered again from its inputs, as a stale one is.

const SEP = '\x1f';
/** The stored rows' layout. Changing it makes every row stored before it stale (rendered again). */
export const ROW_FORMAT = 'c2';
const FIELDS = 16;

/** The stored text of a row rendered at `stamp` (the policies version and the subaccount's generation, `v:gen`). */
export function encodeRow(stamp: string, t: RowValues): string {
  return [
    stamp,
    ROW_FORMAT,
    t.kind,
    t.labels,
    t.subaccountStatus,
    t.policy,
    t.policyInterval,
    t.maxKeyAge,
    t.keySid,
    t.lastRotationAt,
    t.lastRotationOutcome,
    t.scannedAt,
    t.allowedMs,
    t.keyCreatedAt ?? '',
    t.nextDueAt ?? '',
    t.finding,
  ].join(SEP);
}

/** A row's values from its stored text; null when it is in another layout (render it again). */
export function decodeRow(text: string): RowValues | null {
  const f = text.split(SEP);
  if (f.length !== FIELDS || f[1] !== ROW_FORMAT) return null;
  return {
    kind: f[2]!,
    labels: f[3]!,
    subaccountStatus: f[4]!,
    policy: f[5]!,
    policyInterval: f[6]!,
    maxKeyAge: f[7]!,
    keySid: f[8]!,
    lastRotationAt: f[9]!,
    lastRotationOutcome: f[10]!,
    scannedAt: f[11]!,
    allowedMs: Number(f[12]),
    keyCreatedAt: f[13] === '' ? null : Number(f[13]),
    nextDueAt: f[14] === '' ? null : Number(f[14]),
    finding: f[15]!,
  };
}
