/**
 * A credential's compliance row split into what does not depend on the clock (its values, rendered
 * once when the row's inputs change, and stored) and the four fields that do (keyAgeDays, overdue,
 * withinPolicy, finding), which `storedRowText` fills in at read time from stored timestamps, in
 * one template over the stored text (the reader keeps the result while it holds). The text is exactly
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

/**
 * A row's JSON text at an instant, and what a reader needs to keep it: the text holds from `at` until
 * `until` (exclusive; the next day of key age, the first ms past the allowed age, the first ms past
 * the deadline: credentialRowChangesAt's rule), and what the page's filters read.
 */
export interface RowText {
  /** The row's JSON text, flat (see `flat`), holding no part of the text it was read from. */
  json: string;
  /** The stamp it was stored with (state/compliance-rows.ts): the row holds while its stamp is the current one. */
  stamp: string;
  at: number;
  until: number;
  overdue: boolean;
  /** JSON texts, for the label and policy filters. */
  labels: string;
  policy: string;
}

/**
 * The row of credential `accountSid`/`name` at `now`, from its stored text (encodeRow's, stamp
 * first); null when the text is in another layout (render it again). One split of the stored text
 * and one template: the clock's fields are worked out here, from the stored timestamps, by
 * withinPolicy's, isOverdue's and ageDays's rules. Exactly JSON.stringify({ ...credentialRow(facts,
 * status, now), scannedAt }) (test/unit/compliance-page.test.ts).
 */
export function storedRowText(accountSid: string, name: string, stored: string, now: number): RowText | null {
  const f = stored.split(SEP);
  if (f.length !== FIELDS || f[1] !== ROW_FORMAT) return null;
  const status = f[4]!;
  const assessed = status !== CLOSED;
  const allowed = Number(f[12]);
  const created = f[13] === '' ? null : Number(f[13]);
  const due = f[14] === '' ? null : Number(f[14]);
  const age = created === null ? -1 : ageDays(created, now);
  const overdue = assessed && due !== null && now > due;
  let judged = f[15]!;
  let until = Infinity;
  if (created !== null) until = created + (age + 1) * DAY_MS;
  if (judged === '') {
    // Assessed, with a key and its date: the key's age decides.
    const outAt = created! + allowed + 1;
    if (outAt > now) {
      judged = '"withinPolicy":true,"finding":null';
      until = Math.min(until, outAt);
    } else judged = `"withinPolicy":false,"finding":${JSON.stringify(`key is ${age} days old, beyond the policy ${JSON.parse(f[5]!) as string}'s ${beyondLimit(f[7]!, f[6]!)}`)}`;
  } else judged = `"withinPolicy":${assessed ? 'false' : 'null'},"finding":${judged}`;
  if (assessed && due !== null && due >= now) until = Math.min(until, due + 1);
  const json = flat(
    `{"accountSid":${JSON.stringify(accountSid)},"credential":${JSON.stringify(name)},"kind":${f[2]},"labels":${f[3]},"subaccountStatus":${status},"policy":${f[5]},"policyInterval":${f[6]},"maxKeyAge":${f[7]},"allowedKeyAgeDays":${allowed / DAY_MS},"keySid":${f[8]},"keyCreatedAt":${isoText(created)},"keyAgeDays":${age < 0 ? 'null' : age},"lastRotationAt":${f[9]},"lastRotationOutcome":${f[10]},"nextDueAt":${isoText(due)},"overdue":${overdue},${judged},"scannedAt":${f[11]}}`,
  );
  return { json, stamp: detached(f[0]!), at: now, until, overdue, labels: detached(f[3]!), policy: detached(f[5]!) };
}

const CLOSED = JSON.stringify('closed');

/** The limit an out-of-policy finding names, from the row's maxKeyAge and policyInterval (JSON texts). */
function beyondLimit(maxKeyAge: string, policyInterval: string): string {
  const max = JSON.parse(maxKeyAge) as string | null;
  return max !== null ? `maxKeyAge ${max}` : `interval ${JSON.parse(policyInterval) as string}`;
}

/**
 * `s` as one flat string. A string built by concatenation is a tree of its pieces until something
 * reads it character by character, which makes V8 flatten it in place (and let go of the pieces,
 * here slices of the whole page's reply): a kept row is joined into every page that shows it, and
 * joining flat ones cost a page a quarter as much (measured).
 */
function flat(s: string): string {
  s.charCodeAt(0);
  return s;
}

/**
 * A copy of `s` that holds nothing else: V8 makes a piece of a split string (13 characters or more)
 * a slice that keeps the whole string it came from alive, here a page's reply.
 */
export function detached(s: string): string {
  return s.length < 13 ? s : flat(`${s} `).slice(0, -1);
}

function isoText(ms: number | null): string {
  return ms === null ? 'null' : `"${isoTime(ms)}"`;
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
