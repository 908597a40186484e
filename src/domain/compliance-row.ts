/**
 * A credential's compliance row split into what does not depend on the clock (rendered once, when
 * the row's inputs change, and stored) and the four fields that do (keyAgeDays, overdue,
 * withinPolicy, finding), which `rowJson` fills in at read time from stored timestamps. Joined,
 * the text is exactly JSON.stringify({ ...credentialRow(facts, status, now), scannedAt }): the
 * report's row, in the schema's field order (test/unit/compliance-rows.test.ts checks it).
 */
import { ageDays, allowedKeyAgeMs, credentialRow, isAssessed, type CredentialFacts } from './compliance.ts';

export interface RowTemplate {
  /** `{"accountSid":…,"keyCreatedAt":…,"keyAgeDays":` */
  head: string;
  /** `,"lastRotationAt":…,"nextDueAt":…,"overdue":` */
  mid: string;
  /** `,"scannedAt":…}` */
  tail: string;
  keyCreatedAt: number | null;
  nextDueAt: number | null;
  assessed: boolean;
  allowedMs: number;
  /** `"withinPolicy":…,"finding":…` when the clock cannot change them (closed, no key, key not listed); '' otherwise. */
  judged: string;
  /** The finding's text after the key's age, JSON-escaped, without the opening quote: ` days old, beyond …"`. */
  beyond: string;
  policy: string;
  labels: readonly string[];
}

/** The row's parts for a credential whose subaccount has `subaccountStatus`, scanned at `scannedAt` (ISO, or null). */
export function rowTemplate(c: CredentialFacts, subaccountStatus: string, scannedAt: string | null): RowTemplate {
  // The row at an instant where nothing is time dependent, only for its fixed fields.
  const r = credentialRow(c, subaccountStatus, 0);
  const head = {
    accountSid: r.accountSid,
    credential: r.credential,
    kind: r.kind,
    labels: r.labels,
    subaccountStatus: r.subaccountStatus,
    policy: r.policy,
    policyInterval: r.policyInterval,
    maxKeyAge: r.maxKeyAge,
    allowedKeyAgeDays: r.allowedKeyAgeDays,
    keySid: r.keySid,
    keyCreatedAt: r.keyCreatedAt,
  };
  const mid = { lastRotationAt: r.lastRotationAt, lastRotationOutcome: r.lastRotationOutcome, nextDueAt: r.nextDueAt };
  const assessed = isAssessed(subaccountStatus);
  let judged = '';
  if (!assessed || c.currentKeySid === null || c.keyCreatedAt === null) judged = `"withinPolicy":${JSON.stringify(r.withinPolicy)},"finding":${JSON.stringify(r.finding)}`;
  const limit = c.policy.maxKeyAge !== null ? `maxKeyAge ${c.policy.maxKeyAge}` : `interval ${c.policy.interval}`;
  return {
    head: `${JSON.stringify(head).slice(0, -1)},"keyAgeDays":`,
    mid: `,${JSON.stringify(mid).slice(1, -1)},"overdue":`,
    tail: `,"scannedAt":${JSON.stringify(scannedAt)}}`,
    keyCreatedAt: c.keyCreatedAt,
    nextDueAt: c.nextDueAt,
    assessed,
    allowedMs: allowedKeyAgeMs(c.policy),
    judged,
    beyond: JSON.stringify(` days old, beyond the policy ${c.policy.name}'s ${limit}`).slice(1),
    policy: r.policy,
    labels: r.labels,
  };
}

/** Whether the row is overdue at `now` (isOverdue's rule, from the stored deadline). */
export function rowOverdue(t: Pick<RowTemplate, 'assessed' | 'nextDueAt'>, now: number): boolean {
  return t.assessed && t.nextDueAt !== null && now > t.nextDueAt;
}

/** The row's JSON text at `now`: withinPolicy's and credentialRow's rules on the stored timestamps. */
export function rowJson(t: RowTemplate, now: number): string {
  const age = t.keyCreatedAt === null ? -1 : ageDays(t.keyCreatedAt, now);
  let judged = t.judged;
  if (judged === '') judged = now - t.keyCreatedAt! > t.allowedMs ? `"withinPolicy":false,"finding":"key is ${age}${t.beyond}` : '"withinPolicy":true,"finding":null';
  return `${t.head}${age < 0 ? 'null' : age}${t.mid}${rowOverdue(t, now)},${judged}${t.tail}`;
}

// ---------------------------------------------------------------------------------------------
// As stored: one line of fields separated by U+001F, which JSON text never holds raw (JSON.stringify
// escapes every control character), so no field needs escaping. Labels are separated by U+001E.

const SEP = '\x1f';

/** The stored text of a row rendered at `stamp` (the policies version and the subaccount's generation, `v:gen`). */
export function encodeRow(stamp: string, t: RowTemplate): string {
  return [stamp, t.head, t.keyCreatedAt ?? '', t.mid, t.nextDueAt ?? '', t.assessed ? '1' : '', t.allowedMs, t.judged, t.beyond, t.tail, t.policy, t.labels.join('\x1e')].join(SEP);
}

export function decodeRow(text: string): RowTemplate {
  const f = text.split(SEP);
  return {
    head: f[1]!,
    keyCreatedAt: f[2] === '' ? null : Number(f[2]),
    mid: f[3]!,
    nextDueAt: f[4] === '' ? null : Number(f[4]),
    assessed: f[5] === '1',
    allowedMs: Number(f[6]),
    judged: f[7]!,
    beyond: f[8]!,
    tail: f[9]!,
    policy: f[10]!,
    labels: f[11] === '' ? [] : f[11]!.split('\x1e'),
  };
}
