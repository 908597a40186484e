/**
 * Rotation records and their legal transitions. Pure: no I/O, no clock of its own.
 */
import { credentialId, DEFAULT_CREDENTIAL, type CredentialKind } from './credential.ts';
import type { Pickup } from './consumers.ts';

export type { CredentialKind } from './credential.ts';
export const STEPS = ['create-secondary', 'operationalize', 'promote', 'delete-old', 'done'] as const;
export type Step = (typeof STEPS)[number];

export const STATUSES = ['pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled', 'rolled_back'] as const;
export type RotationStatus = (typeof STATUSES)[number];

export const TERMINAL: ReadonlySet<RotationStatus> = new Set(['succeeded', 'failed', 'cancelled', 'rolled_back']);


export type UndoReason = 'cancel' | 'rollback' | 'failure';

/**
 * Undoing a rotation that did not reach delete-old: put the old key back as current, wait a drain
 * if applications may have picked up the new key, then delete the new key at Twilio.
 */
export interface UndoState {
  reason: UndoReason;
  /** Set, before the store is touched, when the new key was (or may have been) current. */
  drain?: boolean;
  /** When the new key may be deleted (ISO), once the old key is current again. */
  deleteAfter?: string;
  requestedBy?: string;
  /** When an operator's cancel or rollback was accepted (ISO); absent for a failure's undo. */
  requestedAt?: string;
  /** Set when the undo finished (the old key is current again, the new key gone): a retry may start afresh. */
  completedAt?: string;
}

/** `parked`: a worker shutting down handed the rotation back between two steps, for another worker. */
export type HistoryEvent = 'created' | 'started' | 'completed' | 'waiting' | 'retrying' | 'failed' | 'undo' | 'finished' | 'abandoned' | 'parked';

/** An admin gave up on a failed rotation (POST /v1/rotations/{id}/abandon): it no longer holds its credential. */
export interface AbandonState {
  at: string;
  by?: string;
  /** What the rotation may have left behind at Twilio and in the store, for the operator to check. */
  leftBehind: string[];
}

export interface HistoryEntry {
  step: Step | 'rollback';
  status: HistoryEvent;
  at: string;
  detail?: string;
  /** When the step began (completed entries): with `at`, the interval it ran. */
  startedAt?: string;
  /** Which worker ran it (host:pid), for tracing. */
  by?: string;
  /** Consecutive retries folded into one entry. */
  count?: number;
}

export interface RotationError {
  code: string;
  message: string;
}

export interface RotationRecord {
  id: string;
  kind: CredentialKind;
  accountSid: string;
  /** The managed credential's name within the subaccount (`default` for records of earlier versions, which had one per subaccount). */
  credential: string;
  status: RotationStatus;
  step: Step;
  reason?: string;
  dryRun: boolean;
  trigger: 'api' | 'schedule' | 'demo' | 'batch';
  requestedBy?: string;
  /** The batch that started this rotation (trigger `batch`): its runner is woken when the rotation ends. */
  batchId?: string;
  /** An emergency rotation after a leak (admin only): the drain is `drainSeconds`, not DRAIN_SECONDS. */
  urgent?: boolean;
  /** The drain an urgent rotation asked for (seconds, capped at DRAIN_SECONDS). */
  drainSeconds?: number;
  /** The key this rotation replaces; null for a bootstrap (the store was empty). Decided in create-secondary. */
  oldKeySid?: string | null;
  newKeySid?: string;
  operationalizedAt?: string;
  /** When the drain ends and promote may proceed (ISO). */
  promoteAfter?: string;
  /** The consumer gate's last look (issue 15): k of n live consumers on the new key, and who lags. */
  consumers?: Pickup & { at: string };
  /** An operator told promote to proceed without waiting (audited, with the consumers lagging then). */
  forcePromote?: { at: string; by?: string; lagging: string[] };
  undo?: UndoState;
  abandoned?: AbandonState;
  attempts: number;
  /** How many times a retry started this rotation afresh (each attempt stages under its own id). */
  restarts?: number;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
  error?: RotationError;
  lastError?: RotationError & { at: string };
  /** Optimistic-concurrency revision; every write increments it. */
  rev: number;
  history: HistoryEntry[];
}

export const MAX_HISTORY = 60;

/**
 * The id a rotation's pending secret is staged under. A restarted rotation stages under a new one:
 * stores keep what was staged before (AWS keeps the version, and refuses a different value under
 * the same ClientRequestToken), so an attempt must never reuse an earlier attempt's id.
 */
export function stagingId(rec: Pick<RotationRecord, 'id' | 'restarts'>): string {
  return rec.restarts ? `${rec.id}-r${rec.restarts}` : rec.id;
}

export function isTerminal(status: RotationStatus): boolean {
  return TERMINAL.has(status);
}

/**
 * Whether a rotation holds its managed credential (the per-credential lock): while in flight, and
 * also after failing part-way — its undo stopped, or it gave up mid-step — until a retry finishes
 * it. The store entry and Twilio are then half-way: a new rotation built on that state would push
 * the old key out of the store while it is still valid at Twilio, and the later retry of the
 * failed one would undo the new one's work. Dry runs change nothing and never hold the credential
 * once finished. Other credentials of the subaccount have their own store entries and keys, so they
 * are not held.
 */
export function holdsCredential(rec: Pick<RotationRecord, 'status' | 'dryRun' | 'undo' | 'abandoned'>): boolean {
  if (!isTerminal(rec.status)) return true;
  return rec.status === 'failed' && !rec.dryRun && !rec.undo?.completedAt && !rec.abandoned;
}

/** `AC…/name`: how messages name the credential a rotation rotates. */
export function credentialOf(rec: Pick<RotationRecord, 'accountSid' | 'credential'>): string {
  return credentialId({ accountSid: rec.accountSid, name: rec.credential ?? DEFAULT_CREDENTIAL });
}

/**
 * Whether `fresh` (the record as stored now) is still the rotation a worker last saw as `base`, so
 * that the worker's write of its step's outcome may land. What may have happened meanwhile is only
 * what the API may add while a step runs: a cancel or rollback request (before delete-old) and a
 * force-promote. Anything else — the step moved, the undo went a phase further, the rotation
 * finished or was retried — means another delivery of the job is running the rotation (this one
 * lost its lease: a stall, or Redis restarting) and the write must not land: applied to the newer
 * record it would move the rotation back a step, or ask for an undo of a rotation past delete-old,
 * which would make its already deleted old key current again.
 */
export function continuesFrom(base: RotationRecord, fresh: RotationRecord): boolean {
  if (fresh.step !== base.step || isTerminal(fresh.status) || (fresh.restarts ?? 0) !== (base.restarts ?? 0)) return false;
  const a = base.undo;
  const b = fresh.undo;
  if (!a) return !b || (b.drain === undefined && b.deleteAfter === undefined && b.completedAt === undefined);
  return !!b && b.reason === a.reason && b.drain === a.drain && b.deleteAfter === a.deleteAfter && b.completedAt === undefined;
}

/**
 * Whether no run of this attempt has reached its first step yet: pending at create-secondary with
 * no attempt counted (the processor counts one before it runs a step, and a retry that starts
 * afresh resets the count). A refusal then — the subaccount check fails — has changed nothing:
 * there is nothing to undo and nothing for the rotation to hold.
 */
export function isUntouched(rec: Pick<RotationRecord, 'status' | 'step' | 'undo' | 'attempts'>): boolean {
  return rec.status === 'pending' && rec.step === 'create-secondary' && !rec.undo && rec.attempts === 0;
}

/**
 * The drain this rotation waits between operationalize and promote. An urgent rotation (a leaked
 * key) asks for a shorter one, down to 0: consumers that cache the credential longer fail until
 * they re-read the store — the price of killing the leaked key in seconds. Never longer than the
 * configured drain.
 */
export function drainMsOf(rec: Pick<RotationRecord, 'urgent' | 'drainSeconds'>, configuredMs: number): number {
  if (!rec.urgent) return configuredMs;
  return Math.min(configuredMs, Math.max(0, (rec.drainSeconds ?? 0) * 1000));
}

/** The FriendlyName of a key a rotation creates: `<prefix>:<rotationId>`. */
export function keyName(prefix: string, rotationId: string): string {
  return `${prefix}:${rotationId}`;
}

const KEY_NAME_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The rotation id a key's FriendlyName names, when it is exactly `<prefix>:<rotation id>`; else
 * undefined. Whether that rotation is one of ours is for the rotation records to say: a name alone
 * proves nothing (another deployment with the same prefix, or a person, may have chosen it).
 */
export function rotationIdInKeyName(prefix: string, friendlyName: string): string | undefined {
  if (!friendlyName.startsWith(`${prefix}:`)) return undefined;
  const id = friendlyName.slice(prefix.length + 1);
  return KEY_NAME_ID.test(id) ? id : undefined;
}

export function nextStep(step: Step, bootstrap: boolean): Step {
  switch (step) {
    case 'create-secondary':
      return 'operationalize';
    case 'operationalize':
      // A bootstrap has no old key: steps 1–2 only.
      return bootstrap ? 'done' : 'promote';
    case 'promote':
      return 'delete-old';
    default:
      return 'done';
  }
}

/** Append to history, folding consecutive retries of one step into a single counted entry. */
export function withHistory(history: HistoryEntry[], entry: HistoryEntry): HistoryEntry[] {
  const last = history.at(-1);
  if (entry.status === 'retrying' && last && last.status === 'retrying' && last.step === entry.step) {
    const folded = { ...entry, count: (last.count ?? 1) + 1 };
    return [...history.slice(0, -1), folded];
  }
  const next = [...history, entry];
  // Keep the first entry (creation) and the most recent ones.
  return next.length > MAX_HISTORY ? [next[0] as HistoryEntry, ...next.slice(next.length - MAX_HISTORY + 1)] : next;
}

export type ActionVerdict = { ok: true } | { ok: false; reason: string };

/**
 * Cancel and rollback are one undo (workers/steps/undo.ts), allowed in the same states; they
 * differ only in what the operator meant and so in how the rotation ends: `cancelled` or
 * `rolled_back`. What the undo does depends on how far the rotation got, not on which was asked:
 * before operationalize the new key was never current, so the pending secret is dropped and the
 * new key deleted at once; after it, the old key is made current again and the new key is deleted
 * only after a drain (applications may hold it). From delete-old on both are refused.
 */
export type UndoAction = 'cancel' | 'rollback';

/** Cancel or roll back: possible until delete-old starts, after which the old key may already be gone. */
export function canUndo(rec: RotationRecord, action: UndoAction): ActionVerdict {
  if (isTerminal(rec.status)) return { ok: false, reason: `rotation is already ${rec.status}` };
  if (rec.undo) return { ok: false, reason: `rotation is already being undone (${rec.undo.reason})` };
  if (rec.step === 'delete-old' || rec.step === 'done') {
    return { ok: false, reason: `rotation has reached ${rec.step}: the old key is being deleted, so it can no longer be ${action === 'cancel' ? 'cancelled' : 'rolled back'}` };
  }
  return { ok: true };
}

export function canRetry(rec: RotationRecord): ActionVerdict {
  if (rec.status !== 'failed') return { ok: false, reason: `only a failed rotation can be retried; this one is ${rec.status}` };
  if (rec.abandoned) return { ok: false, reason: `rotation was abandoned at ${rec.abandoned.at}; start a new rotation instead` };
  return { ok: true };
}

/** Abandon: only a failed rotation that still holds its credential (its undo did not finish). */
export function canAbandon(rec: RotationRecord): ActionVerdict {
  if (rec.status !== 'failed') return { ok: false, reason: `only a failed rotation can be abandoned; this one is ${rec.status}` };
  if (rec.abandoned) return { ok: false, reason: `rotation was already abandoned at ${rec.abandoned.at}` };
  if (!holdsCredential(rec)) return { ok: false, reason: `rotation does not hold ${credentialOf(rec)} (nothing was left half-done): there is nothing to abandon` };
  return { ok: true };
}

/**
 * What a failed rotation may have left behind when it is abandoned, read from how far it got: the
 * operator checks these by hand. The next rotation of the credential deletes a leftover key of this
 * rotation that no stage of the credential's store entry holds (its name is this rotation's), but it cannot decide for the
 * operator which key applications should use.
 */
export function leftBehind(rec: RotationRecord, where: { secretPath: string; keyNamePrefix?: string }): string[] {
  const out: string[] = [];
  const name = keyName(where.keyNamePrefix ?? '<prefix>', rec.id);
  const pending = `a pending version staged under ${stagingId(rec)} at ${where.secretPath}`;
  const undo = rec.undo;
  const oldRestored = !!undo?.deleteAfter;
  if (rec.step === 'delete-old' || rec.step === 'done') {
    if (rec.oldKeySid) out.push(`old key ${rec.oldKeySid} may still be valid at Twilio in ${rec.accountSid}, and held as the previous version at ${where.secretPath}`);
    return out;
  }
  if (!rec.newKeySid) {
    out.push(`an API key named ${name} may exist at Twilio in ${rec.accountSid} (created by a run that stopped before recording it)`);
    out.push(pending);
    return out;
  }
  const mayBeCurrent = !oldRestored && (rec.operationalizedAt !== undefined || undo?.drain === true || rec.step === 'promote');
  if (mayBeCurrent) {
    out.push(`new key ${rec.newKeySid} may be the current version at ${where.secretPath} (applications may use it); it is valid at Twilio`);
    if (rec.oldKeySid) out.push(`old key ${rec.oldKeySid} is still valid at Twilio and may be held as the previous version`);
  } else {
    out.push(`new key ${rec.newKeySid} may remain at Twilio in ${rec.accountSid}`);
    out.push(pending);
  }
  return out;
}

/**
 * How a failed rotation is retried:
 *  - `restart`: it failed and its undo finished (old key current, new key deleted): a fresh attempt
 *    from create-secondary.
 *  - `resume-undo`: its undo stopped part-way: finish the undo first (a later retry restarts).
 *  - `resume`: transient errors outlasted the job's attempts with nothing undone: carry on from
 *    the step it was in.
 */
export type RetryMode = 'restart' | 'resume-undo' | 'resume';

export function retryMode(rec: RotationRecord): RetryMode {
  if (!rec.undo) return 'resume';
  return rec.undo.completedAt ? 'restart' : 'resume-undo';
}

/** The record a retry writes (status pending, ready to be enqueued again). */
export function retriedRecord(rec: RotationRecord, entry: HistoryEntry): RotationRecord {
  const mode = retryMode(rec);
  const base: RotationRecord = { ...rec, status: 'pending', updatedAt: entry.at, history: withHistory(rec.history, entry) };
  delete base.finishedAt;
  delete base.lastError;
  if (mode === 'resume-undo') return base;
  delete base.error;
  if (mode === 'resume') return base;
  const fresh: RotationRecord = { ...base, step: 'create-secondary', attempts: 0, restarts: (rec.restarts ?? 0) + 1 };
  for (const k of ['oldKeySid', 'newKeySid', 'operationalizedAt', 'promoteAfter', 'undo', 'consumers', 'forcePromote'] as const) delete fresh[k];
  return fresh;
}

/**
 * The record once a cancel or rollback is accepted: written in the same update that the check ran
 * on, so from that answer on the record says an undo is coming, even while a step still runs or
 * the job sleeps out a drain (its status and step say where the rotation was; the worker picks the
 * undo up at its next turn).
 */
export function undoRequested(rec: RotationRecord, action: UndoAction, entry: HistoryEntry, by?: string): RotationRecord {
  return {
    ...rec,
    undo: { reason: action, requestedAt: entry.at, ...(by ? { requestedBy: by } : {}) },
    updatedAt: entry.at,
    history: withHistory(rec.history, entry),
  };
}

/** An operator's accepted cancel or rollback, as the API shows it. */
export interface UndoRequest {
  action: UndoAction;
  at: string;
  by: string | null;
}

/**
 * The request behind a record's undo, or null (none asked, or the undo is a failure's). A record
 * written before `requestedAt` existed takes the time of its "… requested" history entry.
 */
export function undoRequestOf(rec: Pick<RotationRecord, 'undo' | 'history' | 'updatedAt'>): UndoRequest | null {
  const undo = rec.undo;
  if (!undo || (undo.reason !== 'cancel' && undo.reason !== 'rollback')) return null;
  const at = undo.requestedAt ?? rec.history.findLast((h) => h.status === 'undo' && h.detail?.startsWith(`${undo.reason} requested`))?.at ?? rec.updatedAt;
  return { action: undo.reason, at, by: undo.requestedBy ?? null };
}

/** The status a finished undo leaves. */
export function undoOutcome(reason: UndoReason): RotationStatus {
  return reason === 'cancel' ? 'cancelled' : reason === 'rollback' ? 'rolled_back' : 'failed';
}

/** RFC 9562 UUIDv7: time-ordered (lists sort by creation), 36 chars (valid as an AWS ClientRequestToken). */
export function newRotationId(now: number = Date.now(), rand: Uint8Array = crypto.getRandomValues(new Uint8Array(10))): string {
  const b = new Uint8Array(16);
  let t = now;
  for (let i = 5; i >= 0; i--) {
    b[i] = t % 256;
    t = Math.floor(t / 256);
  }
  b.set(rand, 6);
  b[6] = 0x70 | ((b[6] ?? 0) & 0x0f);
  b[8] = 0x80 | ((b[8] ?? 0) & 0x3f);
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export const ROTATION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
export const ACCOUNT_SID = /^AC[0-9a-f]{32}$/;

/** The public view (SPEC.md GET /v1/rotations/{id}). */
export interface PublicRotation {
  id: string;
  kind: CredentialKind;
  accountSid: string;
  credential: string;
  status: RotationStatus;
  step: Step;
  oldKeySid: string | null;
  newKeySid: string | null;
  reason: string | null;
  dryRun: boolean;
  trigger: string;
  requestedBy: string | null;
  createdAt: string;
  updatedAt: string;
  operationalizedAt: string | null;
  promoteAfter: string | null;
  finishedAt: string | null;
  attempts: number;
  undo: { reason: UndoReason; deleteAfter: string | null } | null;
  /** Set from the moment a cancel or rollback is accepted (the status still says where the rotation is). */
  undoRequested: UndoRequest | null;
  history: HistoryEntry[];
  error?: RotationError;
  lastError?: RotationError & { at: string };
  /** Detail only (not in list items): whether it holds its credential — in flight, or failed part-way and not abandoned. The name predates managed credentials. */
  holdsSubaccount: boolean;
  urgent: boolean;
  drainSeconds: number | null;
  abandoned: AbandonState | null;
  /** Detail only: "k of n consumers on the new key" as promote last saw it, with the laggards; null before promote looked. */
  consumers: (Pickup & { at: string }) | null;
  forcePromote: { at: string; by?: string; lagging: string[] } | null;
}

export function publicRotation(rec: RotationRecord): PublicRotation {
  return {
    id: rec.id,
    kind: rec.kind,
    accountSid: rec.accountSid,
    credential: rec.credential,
    status: rec.status,
    step: rec.step,
    oldKeySid: rec.oldKeySid ?? null,
    newKeySid: rec.newKeySid ?? null,
    reason: rec.reason ?? null,
    dryRun: rec.dryRun,
    trigger: rec.trigger,
    requestedBy: rec.requestedBy ?? null,
    createdAt: rec.createdAt,
    updatedAt: rec.updatedAt,
    operationalizedAt: rec.operationalizedAt ?? null,
    promoteAfter: rec.promoteAfter ?? null,
    finishedAt: rec.finishedAt ?? null,
    attempts: rec.attempts,
    undo: rec.undo ? { reason: rec.undo.reason, deleteAfter: rec.undo.deleteAfter ?? null } : null,
    undoRequested: undoRequestOf(rec),
    history: rec.history,
    // Only the schema's fields: list pages serialize this with JSON.stringify, not the schema.
    ...(rec.error ? { error: { code: rec.error.code, message: rec.error.message } } : {}),
    ...(rec.lastError ? { lastError: { code: rec.lastError.code, message: rec.lastError.message, at: rec.lastError.at } } : {}),
    holdsSubaccount: holdsCredential(rec),
    urgent: rec.urgent === true,
    drainSeconds: rec.drainSeconds ?? null,
    abandoned: rec.abandoned ? { at: rec.abandoned.at, ...(rec.abandoned.by ? { by: rec.abandoned.by } : {}), leftBehind: [...rec.abandoned.leftBehind] } : null,
    consumers: rec.consumers ? { onNewKey: rec.consumers.onNewKey, total: rec.consumers.total, lagging: rec.consumers.lagging.map((l) => ({ ...l })), at: rec.consumers.at } : null,
    forcePromote: rec.forcePromote ? { at: rec.forcePromote.at, ...(rec.forcePromote.by ? { by: rec.forcePromote.by } : {}), lagging: [...rec.forcePromote.lagging] } : null,
  };
}

/** Fields of the detail view that list items leave out (they are stored and served as cut text: see encodeRecord). */
type DetailOnly = 'history' | 'holdsSubaccount' | 'urgent' | 'drainSeconds' | 'abandoned' | 'consumers' | 'forcePromote';

/** A list item (GET /v1/rotations): the public view without its history and detail-only fields, properties in the schema's order. */
export type RotationSummary = Omit<PublicRotation, DetailOnly>;

export function rotationSummary(rec: RotationRecord): RotationSummary {
  const { history: _history, holdsSubaccount: _holds, urgent: _urgent, drainSeconds: _drain, abandoned: _abandoned, consumers: _consumers, forcePromote: _force, ...summary } = publicRotation(rec);
  return summary;
}
