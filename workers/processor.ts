import { hostname } from 'node:os';
import { DelayedError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { describeError, isTransient, TransientError } from '../src/domain/errors.ts';
import { continuesFrom, isTerminal, isUntouched, undoOutcome, withHistory, type HistoryEntry, type RotationRecord, type Step } from '../src/domain/rotation.ts';
import type { RotationRepository } from '../src/state/rotations.ts';
import { isRedisUnavailable } from '../src/state/redis.ts';
import { LostJobError, type HeldLease, type StepLease } from './lease.ts';
import { fencedContext } from './fence.ts';
import type { RotationJobData } from './queue.ts';
import type { StepContext, StepOutcome } from './steps/context.ts';
import { createSecondaryKey } from './steps/create-secondary.ts';
import { operationalizeNewKey } from './steps/operationalize.ts';
import { promoteNewKey } from './steps/promote.ts';
import { deleteOldKey } from './steps/delete-old.ts';
import { undoRotation } from './steps/undo.ts';
import { dryRunCheck } from './steps/dry-run.ts';
import { SubaccountRefusedError } from './steps/check-subaccount.ts';

const STEP_FNS: Record<Exclude<Step, 'done'>, (ctx: StepContext, rec: RotationRecord) => Promise<StepOutcome>> = {
  'create-secondary': createSecondaryKey,
  operationalize: operationalizeNewKey,
  promote: promoteNewKey,
  'delete-old': deleteOldKey,
};

export interface ProcessorDeps {
  repo: RotationRepository;
  ctx: StepContext;
  lease: StepLease;
  log: Logger;
  maxAttempts: number;
  /** Called after every persisted transition (metrics, audit). */
  onTransition?: (rec: RotationRecord, entry: HistoryEntry) => void;
  /**
   * True once this process is shutting down (SIGTERM): a job parks at the next step boundary —
   * back to the queue, due at once — so another worker runs the next step instead of this process
   * holding the whole rotation until it exits.
   */
  stopping?: () => boolean;
}

/**
 * Drives one rotation job: re-reads the record, runs the step it names, persists the outcome, and
 * loops until the rotation finishes or must wait (a delayed job). Delivery is at least once, so
 * every step starts by reading the world and a repeated step is harmless.
 */
export class RotationProcessor {
  readonly #d: ProcessorDeps;
  readonly #by = `${hostname()}:${process.pid}`;

  constructor(deps: ProcessorDeps) {
    this.#d = deps;
  }

  readonly process = async (job: Job<RotationJobData>, token?: string): Promise<void> => {
    const id = job.data.rotationId;
    const lease = await this.#d.lease.acquire(id);
    if (!lease) throw new TransientError('rotation_busy', `another worker is running a step of rotation ${id}`);
    try {
      await this.#run({ job, token, lease, ctx: fencedContext(this.#d.ctx, () => lease.assertHeld()) }, id);
    } finally {
      await lease.release();
    }
  };

  async #run(d: Delivery, id: string): Promise<void> {
    const { repo, log } = this.#d;
    const { job, ctx } = d;
    // The record this loop last wrote is the base of its next write (optimistic concurrency on
    // `rev`); only a concurrent change — a cancel from the API — costs a re-read.
    let rec = await repo.get(id);
    // Every line this job logs names the rotation and the managed credential it rotates.
    const where = rec ? { rotationId: id, accountSid: rec.accountSid, credential: rec.credential } : { rotationId: id };
    for (let steps = 0; ; steps++) {
      if (!rec || isTerminal(rec.status)) return;
      if (steps > 0 && this.#d.stopping?.()) await this.#park(d, rec, where);
      const stepName: Step | 'rollback' = rec.undo ? 'rollback' : rec.step;
      // Read before this run counts an attempt: whether any run of this attempt got this far.
      const untouched = isUntouched(rec);
      try {
        if (rec.dryRun) {
          await this.#finishDryRun(d, rec, rec.undo ? 'cancelled before its checks ran' : await dryRunCheck(ctx, rec));
          return;
        }
        if (rec.undo) {
          const next = await this.#undoPhase(d, rec);
          if (!next) return;
          rec = next;
          continue;
        }
        if (rec.step === 'done') {
          await this.#finish(d, rec, 'succeeded', 'done', 'rotation complete');
          return;
        }
        if (rec.status !== 'running') rec = await this.#write(d, rec, (r) => ({ ...r, status: 'running', attempts: job.attemptsMade + 1 }));
        const step = rec.step as Exclude<Step, 'done'>;
        const startedAt = new Date(ctx.now()).toISOString();
        const outcome = await STEP_FNS[step](ctx, rec);
        if (outcome.kind === 'wait') {
          await this.#wait(d, rec, step, outcome.until, outcome.reason, outcome.patch);
          return;
        }
        // Completing the last step finishes the rotation in the same write.
        const finished = outcome.next === 'done';
        rec = await this.#record(
          d,
          rec,
          { step, status: 'completed', detail: outcome.detail, startedAt },
          (r) => ({ ...r, ...outcome.patch, step: outcome.next, lastError: undefined, ...(finished ? { status: 'succeeded', finishedAt: new Date(ctx.now()).toISOString() } : {}) }),
        );
        if (finished) return;
      } catch (caught) {
        if (caught instanceof DelayedError) throw caught;
        if (caught instanceof LostJobError) {
          // Not a failure of the rotation: the job is another delivery's now, and it carries on.
          log.warn({ ...where, err: { message: caught.message } }, 'lost the job to another worker; leaving the rotation to it');
          throw caught;
        }
        // A write (or read) that Redis did not answer — it is restarting — is retried like any
        // transient failure, never taken for a reason to fail and undo the rotation.
        const err = isRedisUnavailable(caught) ? new TransientError('redis_unavailable', `Redis did not answer (${(caught as Error).message}); retrying`, caught) : caught;
        const e = describeError(err);
        // Writes below start from a fresh read: the failure may have come from a write.
        const current = await repo.get(id);
        if (!current || isTerminal(current.status)) return;
        if (isTransient(err)) {
          const last = job.attemptsMade + 1 >= this.#d.maxAttempts;
          if (last) {
            await this.#finish(d, current, 'failed', undefined, `gave up after ${this.#d.maxAttempts} attempts`, e, stepName);
            log.error({ ...where, step: stepName, err: e }, 'rotation failed: transient errors did not clear');
            return;
          }
          await this.#record(d, current, { step: stepName, status: 'retrying', detail: e.message }, (r) => ({
            ...r,
            attempts: job.attemptsMade + 1,
            lastError: { ...e, at: new Date(ctx.now()).toISOString() },
          }));
          log.warn({ ...where, step: stepName, err: e }, 'step failed; will retry');
          throw err;
        }
        if (current.dryRun || (untouched && caught instanceof SubaccountRefusedError)) {
          // Nothing was changed — a dry run never changes anything; a refusal of the subaccount
          // check in the attempt's first run came before anything was created — so there is
          // nothing to undo and nothing to hold the subaccount for. The undo is recorded as done
          // (domain holdsCredential, retryMode): a retry starts afresh.
          const done = { undo: { reason: 'failure' as const, drain: false, completedAt: new Date(ctx.now()).toISOString() } };
          await this.#finish(d, current, 'failed', undefined, `refused before anything was changed: ${e.message}`, e, current.step, done);
          log.error({ ...where, step: current.step, err: e }, 'rotation refused; nothing was changed');
          return;
        }
        if (current.undo) {
          // The undo itself cannot proceed: stop, and say what is left for the operator.
          const message = `${current.error ? `${current.error.message}; ` : ''}undo stopped: ${e.message}${current.newKeySid ? ` (new key ${current.newKeySid} may remain at Twilio)` : ''}`;
          await this.#finish(d, current, 'failed', undefined, `undo stopped: ${e.message}`, { code: e.code, message }, 'rollback');
          log.error({ ...where, err: e }, 'undo failed');
          return;
        }
        if (current.step === 'delete-old' || current.step === 'done') {
          // Past the point of no return: the old key may already be deleted at Twilio, so an undo
          // would make a dead key current again. Stop here; a retry resumes delete-old.
          await this.#finish(d, current, 'failed', undefined, `delete-old stopped: ${e.message}; retry the rotation to finish deleting the old key`, e, current.step);
          log.error({ ...where, step: current.step, err: e }, 'delete-old failed permanently; not undoing (the old key may be gone)');
          return;
        }
        log.error({ ...where, step: current.step, err: e }, 'step failed permanently; undoing the rotation');
        rec = await this.#record(d, current, { step: current.step, status: 'failed', detail: e.message }, (r) => ({ ...r, error: e, undo: r.undo ?? { reason: 'failure' } }));
      }
    }
  }

  /** One undo phase: the record to continue with, or undefined when the job stops (finished, or waiting as a delayed job). */
  async #undoPhase(d: Delivery, rec: RotationRecord): Promise<RotationRecord | undefined> {
    const outcome = await undoRotation(d.ctx, rec);
    if (outcome.kind === 'persist') {
      return this.#record(d, rec, { step: 'rollback', status: 'undo', detail: outcome.detail }, (r) => ({ ...r, status: 'running', undo: outcome.undo }));
    }
    if (outcome.kind === 'wait') {
      await this.#wait(d, rec, 'rollback', outcome.until, outcome.reason);
      return undefined;
    }
    // Marked complete so a retry of a failed rotation knows it may start afresh (domain retryMode).
    const completed = { undo: { ...rec.undo!, completedAt: new Date(this.#d.ctx.now()).toISOString() } };
    await this.#finish(d, rec, undoOutcome(rec.undo!.reason), undefined, outcome.detail, undefined, 'rollback', completed);
    return undefined;
  }

  async #wait(d: Delivery, rec: RotationRecord, step: Step | 'rollback', until: number, reason: string, patch?: Partial<RotationRecord>): Promise<never> {
    const last = rec.history.at(-1);
    // A re-armed wait (woken early, not yet due) adds no second entry — unless what it waits for
    // changed (the consumer gate: "2 of 3 consumers on the new key" became "3 of 3"), which is
    // news for the history and the events.
    if (rec.status !== 'waiting' || last?.status !== 'waiting' || last.step !== step || (patch && last.detail !== reason)) {
      await this.#record(d, rec, { step, status: 'waiting', detail: reason }, (r) => ({ ...r, ...patch, status: 'waiting' }));
    }
    try {
      await d.job.moveToDelayed(until, d.token);
    } catch (err) {
      if (lostTheJob(err)) throw new LostJobError((err as Error).message);
      throw err;
    }
    // A cancel (or a force-promote) that arrived between the record write and the move found no
    // delayed job to wake.
    const after = await this.#d.repo.get(rec.id);
    if (step !== 'rollback' && (after?.undo || (after?.forcePromote && !rec.forcePromote))) await d.job.promote().catch(() => undefined);
    throw new DelayedError();
  }

  /**
   * Hand the job back between two steps (see ProcessorDeps.stopping): the record says which step is
   * next. The park is a history entry (so in the events and the audit trail: which worker let go
   * of the rotation, when, before which step).
   */
  async #park(d: Delivery, rec: RotationRecord, where: object): Promise<never> {
    const next = rec.undo ? 'rollback' : rec.step;
    await this.#record(d, rec, { step: next, status: 'parked', detail: `worker shutting down: handed back before ${next} for another worker` }, (r) => r);
    // The job is due at once: the worker that takes it must find the step lease free (it would
    // otherwise retry with rotation_busy). This one runs no further step of the rotation.
    await d.lease.release();
    try {
      await d.job.moveToDelayed(Date.now(), d.token);
    } catch (err) {
      if (lostTheJob(err)) throw new LostJobError((err as Error).message);
      throw err;
    }
    this.#d.log.info(where, 'shutting down: parked the rotation between two steps for another worker');
    throw new DelayedError();
  }

  /** Terminal transition. `step` moves the record's step (success); the history names `where` it ended. */
  async #finish(
    d: Delivery,
    rec: RotationRecord,
    status: RotationRecord['status'],
    step: Step | undefined,
    detail: string,
    error?: { code: string; message: string },
    where: Step | 'rollback' = step ?? 'done',
    extra: Partial<RotationRecord> = {},
  ): Promise<void> {
    const now = new Date(this.#d.ctx.now()).toISOString();
    await this.#record(d, rec, { step: where, status: 'finished', detail }, (r) => ({
      ...r,
      status,
      ...(step ? { step } : {}),
      finishedAt: now,
      ...(error ? { error } : {}),
      lastError: undefined,
      ...extra,
    }));
  }

  /**
   * A dry run changes nothing, so a cancel of one has nothing to undo: it ends as the cancel asked
   * (`cancelled`), also when the cancel arrived while the checks ran — the outcome is decided on
   * the record being written, not on the copy read before the checks.
   */
  async #finishDryRun(d: Delivery, rec: RotationRecord, detail: string): Promise<void> {
    const now = new Date(this.#d.ctx.now()).toISOString();
    await this.#record(d, rec, { step: rec.undo ? 'rollback' : 'done', status: 'finished', detail }, (r) =>
      r.undo
        ? { ...r, status: undoOutcome(r.undo.reason), finishedAt: now, lastError: undefined, undo: { ...r.undo, completedAt: now } }
        : { ...r, status: 'succeeded', step: 'done', finishedAt: now, lastError: undefined },
    );
  }

  /**
   * Persist a change with a history entry (and its event); returns the record as written. Only
   * while this delivery holds its lease, and only onto the rotation it last saw (continuesFrom).
   */
  async #record(d: Delivery, base: RotationRecord, what: Omit<HistoryEntry, 'at' | 'by'>, change: (r: RotationRecord) => RotationRecord): Promise<RotationRecord> {
    await d.lease.assertHeld();
    const at = new Date(this.#d.ctx.now()).toISOString();
    const entry: HistoryEntry = { ...what, at, by: this.#by };
    if (!entry.detail) delete entry.detail;
    const rec = await this.#d.repo.update(base.id, (r) => ({ ...change(stillOurs(base, r)), history: withHistory(r.history, entry), updatedAt: at }), entry, base);
    this.#d.onTransition?.(rec, entry);
    return rec;
  }

  /** Persist a change that is not a transition worth a history entry (status running). */
  async #write(d: Delivery, base: RotationRecord, change: (r: RotationRecord) => RotationRecord): Promise<RotationRecord> {
    await d.lease.assertHeld();
    const at = new Date(this.#d.ctx.now()).toISOString();
    return this.#d.repo.update(base.id, (r) => ({ ...change(stillOurs(base, r)), updatedAt: at }), undefined, base);
  }
}

export { LostJobError } from './lease.ts';

/**
 * One delivery of a rotation's job: the BullMQ job and its token, the step lease it holds, and the
 * step context fenced by that lease (fence.ts).
 */
interface Delivery {
  job: Job<RotationJobData>;
  token: string | undefined;
  lease: HeldLease;
  ctx: StepContext;
}

/** `fresh` when it is still the rotation this delivery last saw; LostJobError when another delivery moved it on. */
function stillOurs(base: RotationRecord, fresh: RotationRecord): RotationRecord {
  if (continuesFrom(base, fresh)) return fresh;
  throw new LostJobError(`rotation ${base.id} moved on without this delivery (now ${fresh.status} in ${fresh.undo ? 'rollback' : fresh.step}; this delivery saw ${base.status} in ${base.undo ? 'rollback' : base.step}): another worker has it`);
}

/** BullMQ refusing to move a job this delivery no longer holds (finished-errors.js). */
function lostTheJob(err: unknown): boolean {
  return err instanceof Error && /^(Missing lock for job|Lock mismatch for job|Missing key for job|Job \S+ is not in the \S+ state)/.test(err.message);
}
