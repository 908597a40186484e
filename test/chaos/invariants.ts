import { isTerminal, MAX_HISTORY, type RotationRecord } from '../../src/domain/rotation.ts';
import type { AuditEntry } from '../../src/state/audit.ts';
import type { SecretEntry } from '../../providers/secret-store.ts';
import type { KeyView } from '../emulators/twilio/server.ts';

/** A failed rotation that left work behind (its undo stopped, or it gave up mid-step): an operator retries it. */
export function isUnfinished(rec: RotationRecord): boolean {
  return rec.status === 'failed' && !rec.undo?.completedAt;
}

export function checkAllTerminal(records: readonly RotationRecord[]): string[] {
  return records.filter((r) => !isTerminal(r.status)).map((r) => `rotation ${r.id} of ${r.accountSid} is still ${r.status} at ${r.undo ? 'rollback' : r.step} (${r.lastError?.message ?? 'no error'})`);
}

export function checkNothingUnfinished(records: readonly RotationRecord[]): string[] {
  return records.filter(isUnfinished).map((r) => `rotation ${r.id} of ${r.accountSid} failed and was left unfinished even after an operator retry: ${r.error?.message ?? r.history.at(-1)?.detail ?? '?'}`);
}

export interface AccountEndState {
  accountSid: string;
  entry: SecretEntry;
  keys: KeyView[];
  /** Keys the subaccount had before the run that Rotator did not create. */
  preexisting: Array<{ sid: string; inStore: boolean }>;
}

/**
 * The end state of one subaccount: exactly one key Rotator manages at Twilio, and it is the
 * store's current one (none when the store's current key is a pre-existing one, or the store is
 * empty); no pending or previous stage left; every pre-existing key still there unless it was the
 * store's and got rotated away. Returns the problems and how many keys are orphaned.
 */
export function checkAccount(s: AccountEndState, prefix: string, mustHaveCurrent: boolean): { problems: string[]; orphans: number } {
  const problems: string[] = [];
  let orphans = 0;
  const where = `subaccount ${s.accountSid}`;
  const current = s.entry.current?.credential.apiKeySid;
  const atTwilio = new Set(s.keys.map((k) => k.sid));
  const managed = s.keys.filter((k) => k.friendlyName.startsWith(`${prefix}:`));
  if (s.entry.pending) problems.push(`${where}: the store still has a pending stage (${s.entry.pending.credential.apiKeySid}, rotation ${s.entry.pending.rotationId ?? '?'})`);
  if (s.entry.previous) problems.push(`${where}: the store still has a previous stage (${s.entry.previous.credential.apiKeySid})`);
  if (current && !atTwilio.has(current)) problems.push(`${where}: the store's current key ${current} does not exist at Twilio`);
  if (!current && mustHaveCurrent) problems.push(`${where}: the store lost its current key`);
  for (const k of managed) {
    if (k.sid !== current) {
      orphans++;
      problems.push(`${where}: orphan key ${k.sid} (${k.friendlyName}) at Twilio is not the store's current key (${current ?? 'none'})`);
    }
  }
  for (const p of s.preexisting) {
    if (p.inStore && p.sid !== current && atTwilio.has(p.sid)) {
      orphans++;
      problems.push(`${where}: the pre-existing key ${p.sid} was rotated away but is still valid at Twilio`);
    }
    if (!p.inStore && !atTwilio.has(p.sid)) problems.push(`${where}: Rotator deleted ${p.sid}, a key it never managed`);
  }
  const known = new Set([...managed.map((k) => k.sid), ...s.preexisting.map((p) => p.sid)]);
  for (const k of s.keys) if (!known.has(k.sid)) problems.push(`${where}: unexpected key ${k.sid} (${k.friendlyName}) at Twilio`);
  return { problems, orphans };
}

/**
 * Every transition in a rotation's history has its entry in the audit chain (kind `rotation`,
 * action `step.<event>`, at the transition's own time) — those the workers made and those the API
 * made (created, cancel or rollback requested, retry). Folded retries count once per retry. Also
 * returns how many transitions were audited more than once (harmless, but worth knowing).
 */
export function checkAuditCoverage(records: readonly RotationRecord[], entries: readonly AuditEntry[]): { problems: string[]; duplicates: number } {
  const have = new Map<string, number>();
  for (const e of entries) {
    if (e.kind !== 'rotation' || !e.rotationId) continue;
    const key = `${e.rotationId}|${e.step}|${e.action}`;
    have.set(key, (have.get(key) ?? 0) + 1);
  }
  const problems: string[] = [];
  let duplicates = 0;
  for (const rec of records) {
    const need = new Map<string, number>();
    for (const h of rec.history) {
      const key = `${rec.id}|${h.step}|step.${h.status}`;
      need.set(key, (need.get(key) ?? 0) + (h.count ?? 1));
    }
    for (const [key, n] of need) {
      const got = have.get(key) ?? 0;
      const [, step, action] = key.split('|');
      if (got < n) problems.push(`audit: rotation ${rec.id} of ${rec.accountSid} has ${n} × ${step} ${action} in its history but ${got} in the audit chain`);
      // History keeps the first entry and the newest ones: more in the chain is expected only then.
      else if (got > n && rec.history.length < MAX_HISTORY) duplicates += got - n;
    }
  }
  return { problems, duplicates };
}
