import { isTerminal, type HistoryEntry, type RotationRecord } from '../../src/domain/rotation.ts';
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

/** The (step, event) a history entry records, and how many transitions it stands for (retries fold). */
function historyKey(h: HistoryEntry): string {
  return `${h.step}|${h.status}`;
}

/**
 * Every transition in a rotation's history has its audit entry: worker transitions as
 * `step.<event>` entries, and those the API wrote (created, an operator's cancel/rollback, a
 * retry) as the API's request entries. Folded retries count once per retry.
 */
export function checkAuditCoverage(records: readonly RotationRecord[], entries: readonly AuditEntry[]): string[] {
  const byRotation = new Map<string, AuditEntry[]>();
  for (const e of entries) {
    if (!e.rotationId) continue;
    const list = byRotation.get(e.rotationId) ?? [];
    list.push(e);
    byRotation.set(e.rotationId, list);
  }
  const problems: string[] = [];
  for (const rec of records) {
    const have = new Map<string, number>();
    let retryWildcards = 0;
    for (const e of byRotation.get(rec.id) ?? []) {
      let key: string | undefined;
      if (e.kind === 'rotation') key = `${e.step}|${e.action.replace(/^step\./, '')}`;
      else if (e.status !== undefined && e.status >= 200 && e.status < 300) {
        if (e.action === 'rotation.start' && e.detail !== 'idempotent replay') key = 'create-secondary|created';
        else if (e.action === 'rotation.cancel' || e.action === 'rotation.rollback') key = 'rollback|undo';
        else if (e.action === 'rotation.retry') retryWildcards++;
      }
      if (key) have.set(key, (have.get(key) ?? 0) + 1);
    }
    const need = new Map<string, number>();
    for (const h of rec.history) need.set(historyKey(h), (need.get(historyKey(h)) ?? 0) + (h.count ?? 1));
    for (const [key, n] of need) {
      let missing = n - (have.get(key) ?? 0);
      if (missing > 0 && key.endsWith('|retrying')) {
        const used = Math.min(missing, retryWildcards);
        retryWildcards -= used;
        missing -= used;
      }
      if (missing > 0) problems.push(`audit: rotation ${rec.id} of ${rec.accountSid} has ${n} × "${key}" in its history but ${n - missing} in the audit trail`);
    }
  }
  return problems;
}
