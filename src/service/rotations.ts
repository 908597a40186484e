import { canAbandon, canRetry, canUndo, credentialOf, isTerminal, leftBehind, newRotationId, retriedRecord, retryMode, undoRequested, withHistory, type HistoryEntry, type RotationRecord, type UndoAction } from '../domain/rotation.ts';
import type { RotationRepository } from '../state/rotations.ts';
import { DEFAULT_CREDENTIAL, type CredentialKind } from '../domain/credential.ts';
import { authTokenRefusal, type Refusal } from '../domain/auth-token.ts';
import { PermanentError } from '../domain/errors.ts';

/** A start the Auth Token guard refused (domain/auth-token.ts): the API answers `status` with the message. */
export class StartRefusedError extends PermanentError {
  readonly status: Refusal['status'];
  constructor(refusal: Refusal) {
    super(refusal.code, refusal.message);
    this.name = 'StartRefusedError';
    this.status = refusal.status;
  }
}

/** What starting, waking and undoing rotations needs from the queue. */
export interface RotationQueue {
  enqueue(rotationId: string): Promise<void>;
  /** Wake a rotation waiting as a delayed job (a cancel should not wait out the drain). */
  wake(rotationId: string): Promise<void>;
  /** Enqueue again a rotation whose job finished (a retry): the old job is removed first. */
  requeue(rotationId: string): Promise<void>;
}

export interface StartRequest {
  /**
   * A caller-chosen rotation id (a batch claims it before starting): starting again with the same
   * id answers the rotation that id started instead of creating a second one.
   */
  id?: string;
  accountSid: string;
  /** The managed credential of the subaccount to rotate (default `default`); the caller checked its name (isCredentialName). */
  credential?: string;
  /** The batch starting it (trigger `batch`). */
  batchId?: string;
  reason?: string;
  dryRun?: boolean;
  trigger: RotationRecord['trigger'];
  requestedBy?: string;
  /** An emergency rotation: drain `drainSeconds` (default 0) instead of DRAIN_SECONDS. */
  urgent?: boolean;
  drainSeconds?: number;
  /** The caller holds the admin role (API starts; the Auth Token guard needs it). */
  admin?: boolean;
  /** An Auth Token rotation's confirmation: the account SID repeated. */
  confirm?: string;
  /** The policy that applies to the credential allows a schedule or batch to rotate an Auth Token. */
  policyAllowsAuthToken?: boolean;
}

export type StartResult = { started: true; record: RotationRecord } | { started: false; existing: RotationRecord };

export type ActionResult =
  | { ok: true; record: RotationRecord }
  | { ok: false; reason: string; record?: RotationRecord; inFlight?: string; heldByFailed?: boolean; mismatch?: boolean };

export interface RotationServiceOptions {
  /** Where a managed credential's secret lives (SECRET_PATH_TEMPLATE), for what an abandoned rotation may leave behind. */
  secretPath?: (accountSid: string, credential: string) => string;
  keyNamePrefix?: string;
  /** The managed credential's kind (default api-key). */
  kindOf?: (accountSid: string, credential: string) => Promise<CredentialKind>;
  /** Whether an admin enabled Auth Token rotation for the account. */
  authTokenEnabled?: (accountSid: string) => Promise<boolean>;
}

/**
 * Starting and steering rotations: used by the API now, by the scheduler and CLI next.
 */
export class RotationService {
  constructor(
    private readonly repo: RotationRepository,
    private readonly queue: RotationQueue,
    private readonly now: () => number = Date.now,
    private readonly opts: RotationServiceOptions = {},
  ) {}

  /**
   * Start a rotation of the credential (its kind read from the managed credential). An Auth Token
   * rotation passes the guard first, whoever asks (API, planner, batch): throws StartRefusedError.
   */
  async start(req: StartRequest): Promise<StartResult> {
    const at = new Date(this.now()).toISOString();
    const credential = req.credential ?? DEFAULT_CREDENTIAL;
    const kind = (await this.opts.kindOf?.(req.accountSid, credential)) ?? 'api-key';
    if (kind === 'auth-token') {
      const enabled = (await this.opts.authTokenEnabled?.(req.accountSid)) ?? false;
      const refusal = authTokenRefusal({ kind, accountSid: req.accountSid, trigger: req.trigger, enabled, admin: req.admin, confirm: req.confirm, policyAllows: req.policyAllowsAuthToken, dryRun: req.dryRun });
      if (refusal) throw new StartRefusedError(refusal);
    }
    const record: RotationRecord = {
      id: req.id ?? newRotationId(this.now()),
      kind,
      accountSid: req.accountSid,
      credential,
      ...(req.batchId ? { batchId: req.batchId } : {}),
      status: 'pending',
      step: 'create-secondary',
      ...(req.reason ? { reason: req.reason } : {}),
      dryRun: req.dryRun ?? false,
      trigger: req.trigger,
      ...(req.requestedBy ? { requestedBy: req.requestedBy } : {}),
      ...(req.urgent ? { urgent: true, drainSeconds: req.drainSeconds ?? 0 } : {}),
      attempts: 0,
      createdAt: at,
      updatedAt: at,
      rev: 0,
      history: [{ step: 'create-secondary', status: 'created', at }],
    };
    const result = await this.repo.create(record);
    if (!result.created && result.existingId === record.id) {
      // Started before under this id (a retried start): the same rotation, enqueued again in case
      // the first start died before enqueuing (idempotent).
      const same = await this.repo.get(record.id);
      if (!same) throw new Error(`rotation ${record.id} has no record`);
      await this.queue.enqueue(same.id);
      return { started: true, record: same };
    }
    if (!result.created) {
      const existing = await this.repo.get(result.existingId);
      if (!existing) throw new Error(`in-flight rotation ${result.existingId} has no record`);
      // If the process that created it died before enqueuing, this repairs it (idempotent).
      await this.queue.enqueue(existing.id);
      return { started: false, existing };
    }
    await this.queue.enqueue(record.id);
    return { started: true, record };
  }

  /**
   * Cancel or roll back (one undo; domain UndoAction): the request is recorded atomically with the
   * check that allows it, the worker performs the undo, and a rotation sleeping out a drain is
   * woken for it.
   */
  async undo(id: string, action: UndoAction, by?: string): Promise<ActionResult | undefined> {
    let verdict: ActionResult | undefined;
    const at = new Date(this.now()).toISOString();
    const entry = { step: 'rollback' as const, status: 'undo' as const, at, detail: `${action} requested${by ? ` by ${by}` : ''}` };
    const current = await this.repo.get(id);
    if (!current) return undefined;
    const record = await this.repo.update(
      id,
      (r) => {
        const v = canUndo(r, action);
        if (!v.ok) {
          verdict = { ok: false, reason: v.reason, record: r };
          return undefined;
        }
        verdict = undefined;
        return undoRequested(r, action, entry, by);
      },
      entry,
    );
    if (verdict) return verdict;
    await this.queue.wake(id);
    return { ok: true, record };
  }

  /**
   * Retry a failed rotation (domain `retryMode`): a fully undone one restarts from
   * create-secondary, an interrupted undo is finished, one that ran out of attempts resumes its
   * step. It takes its credential's lock again: refused while another rotation of it is in flight.
   */
  async retry(id: string, by?: string): Promise<ActionResult | undefined> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const current = await this.repo.get(id);
      if (!current) return undefined;
      const v = canRetry(current);
      if (!v.ok) return { ok: false, reason: v.reason, record: current };
      const mode = retryMode(current);
      const what = mode === 'restart' ? 'starting again from create-secondary' : mode === 'resume-undo' ? 'finishing the interrupted undo' : `resuming ${current.step}`;
      const step: HistoryEntry['step'] = mode === 'restart' ? 'create-secondary' : mode === 'resume-undo' ? 'rollback' : current.step;
      const entry: HistoryEntry = { step, status: 'retrying', at: new Date(this.now()).toISOString(), detail: `retry requested${by ? ` by ${by}` : ''}: ${what}` };
      const result = await this.repo.restart(current, retriedRecord(current, entry), entry);
      if (result.ok) {
        await this.queue.requeue(id);
        return { ok: true, record: result.record };
      }
      if (result.conflict === 'in_flight') {
        const holder = await this.repo.get(result.existingId);
        const heldByFailed = holder?.status === 'failed';
        const reason = heldByFailed
          ? `rotation ${result.existingId} failed part-way and still holds ${credentialOf(current)}: retry or abandon it first`
          : `rotation ${result.existingId} is in flight for ${credentialOf(current)}; retry this one after it finishes`;
        return { ok: false, reason, record: current, inFlight: result.existingId, heldByFailed };
      }
    }
    throw new Error(`rotation ${id} kept changing during the retry`);
  }

  /**
   * Force-promote (consumer gate, issue 15): an operator tells a rotation waiting in promote to
   * proceed without waiting for its drain or its lagging consumers, who are named in the record
   * (and by the caller in the audit entry). Recorded on the record, so a worker that picks the
   * rotation up after a crash still sees it; the waiting job is woken.
   */
  async forcePromote(id: string, lagging: readonly string[], by?: string): Promise<ActionResult | undefined> {
    let verdict: ActionResult | undefined;
    const at = new Date(this.now()).toISOString();
    const entry: HistoryEntry = { step: 'promote', status: 'waiting', at, detail: `force-promote requested${by ? ` by ${by}` : ''}${lagging.length ? `; lagging consumers: ${lagging.join(', ')}` : ''}` };
    if (!(await this.repo.get(id))) return undefined;
    const record = await this.repo.update(
      id,
      (r) => {
        const refusal = r.step !== 'promote' || isTerminal(r.status) ? `it is ${r.status} in ${r.step}, not waiting in promote` : r.undo ? 'a cancel or rollback is under way' : r.forcePromote ? `it was force-promoted already at ${r.forcePromote.at}` : undefined;
        if (refusal) {
          verdict = { ok: false, reason: refusal, record: r };
          return undefined;
        }
        verdict = undefined;
        return { ...r, forcePromote: { at, ...(by ? { by } : {}), lagging: [...lagging] }, updatedAt: at, history: withHistory(r.history, entry) };
      },
      entry,
    );
    if (verdict) return verdict;
    await this.queue.wake(id);
    return { ok: true, record };
  }

  /**
   * Abandon a failed rotation that still holds its credential (its undo could not finish): an admin
   * confirms the account SID, the credential's lock is released in the same write (holdsCredential
   * is false once abandoned), and the record keeps what may be left behind for the operator to check. Nothing at
   * Twilio or in the store is touched.
   */
  async abandon(id: string, confirm: string, by?: string): Promise<ActionResult | undefined> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const current = await this.repo.get(id);
      if (!current) return undefined;
      if (confirm !== current.accountSid) {
        return { ok: false, reason: `confirm must be this rotation's account SID (${current.accountSid}); got ${confirm}`, record: current, mismatch: true };
      }
      const v = canAbandon(current);
      if (!v.ok) return { ok: false, reason: v.reason, record: current };
      const at = new Date(this.now()).toISOString();
      const left = leftBehind(current, { secretPath: this.opts.secretPath?.(current.accountSid, current.credential) ?? `the store entry of ${credentialOf(current)}`, keyNamePrefix: this.opts.keyNamePrefix });
      const entry: HistoryEntry = { step: current.undo ? 'rollback' : current.step, status: 'abandoned', at, detail: `abandoned${by ? ` by ${by}` : ''}; may be left behind: ${left.join('; ') || 'nothing'}` };
      let changed = false;
      const record = await this.repo.update(
        id,
        (r) => {
          // What is left behind was read from `current`: a record changed since is read again.
          changed = r.rev === current.rev;
          if (!changed) return undefined;
          return { ...r, abandoned: { at, ...(by ? { by } : {}), leftBehind: left }, updatedAt: at, history: withHistory(r.history, entry) };
        },
        entry,
        current,
      );
      if (changed) return { ok: true, record };
    }
    throw new Error(`rotation ${id} kept changing during the abandon`);
  }
}
