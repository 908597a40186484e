import { hostname } from 'node:os';
import { DelayedError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { describeError, isTransient, PermanentError, TransientError } from '../src/domain/errors.ts';
import { isTerminal, undoOutcome, withHistory, type HistoryEntry, type RotationRecord, type Step } from '../src/domain/rotation.ts';
import type { RotationRepository } from '../src/state/rotations.ts';
import type { StepLease } from './lease.ts';
import type { RotationJobData } from './queue.ts';
import type { StepContext, StepOutcome } from './steps/context.ts';
import { createSecondaryKey } from './steps/create-secondary.ts';
import { operationalizeNewKey } from './steps/operationalize.ts';
import { promoteNewKey } from './steps/promote.ts';
import { deleteOldKey } from './steps/delete-old.ts';
import { undoRotation } from './steps/undo.ts';
import { dryRunCheck } from './steps/dry-run.ts';

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
    const release = await this.#d.lease.acquire(id);
    if (!release) throw new TransientError('rotation_busy', `another worker is running a step of rotation ${id}`);
    try {
      await this.#run(job, token, id);
    } finally {
      await release();
    }
  };

  async #run(job: Job<RotationJobData>, token: string | undefined, id: string): Promise<void> {
    const { repo, ctx, log } = this.#d;
    for (;;) {
      const rec = await repo.get(id);
      if (!rec || isTerminal(rec.status)) return;
      const stepName: Step | 'rollback' = rec.undo ? 'rollback' : rec.step;
      try {
        if (rec.dryRun) {
          const detail = await dryRunCheck(ctx, rec);
          await this.#finish(id, 'succeeded', 'done', detail);
          return;
        }
        if (rec.undo) {
          if (await this.#undoPhase(job, token, rec)) return;
          continue;
        }
        if (rec.step === 'done') {
          await this.#finish(id, 'succeeded', 'done', 'rotation complete');
          return;
        }
        await this.#record(id, rec.step, 'started', undefined, (r) => ({ ...r, status: 'running', attempts: job.attemptsMade + 1 }));
        const outcome = await STEP_FNS[rec.step](ctx, rec);
        if (outcome.kind === 'wait') {
          await this.#wait(job, token, id, rec.step, outcome.until, outcome.reason);
          return;
        }
        await this.#record(id, rec.step, 'completed', outcome.detail, (r) => ({ ...r, ...outcome.patch, step: outcome.next, lastError: undefined }));
      } catch (err) {
        if (err instanceof DelayedError) throw err;
        const e = describeError(err);
        if (isTransient(err)) {
          const last = job.attemptsMade + 1 >= this.#d.maxAttempts;
          if (last) {
            await this.#finish(id, 'failed', undefined, `gave up after ${this.#d.maxAttempts} attempts`, e, stepName);
            log.error({ rotationId: id, step: stepName, err: e }, 'rotation failed: transient errors did not clear');
            return;
          }
          await this.#record(id, stepName, 'retrying', e.message, (r) => ({ ...r, lastError: { ...e, at: new Date(ctx.now()).toISOString() } }));
          log.warn({ rotationId: id, step: stepName, err: e }, 'step failed; will retry');
          throw err;
        }
        if (rec.undo) {
          // The undo itself cannot proceed: stop, and say what is left for the operator.
          await this.#finish(id, 'failed', undefined, `undo stopped: ${e.message}`, {
            code: e.code,
            message: `${rec.error ? `${rec.error.message}; ` : ''}undo stopped: ${e.message}${rec.newKeySid ? ` (new key ${rec.newKeySid} may remain at Twilio)` : ''}`,
          }, 'rollback');
          log.error({ rotationId: id, err: e }, 'undo failed');
          return;
        }
        log.error({ rotationId: id, step: rec.step, err: e }, 'step failed permanently; undoing the rotation');
        await this.#record(id, rec.step, 'failed', e.message, (r) => ({ ...r, error: e, undo: r.undo ?? { reason: 'failure' } }));
      }
    }
  }

  /** One undo phase. True when the job should stop (finished, or waiting as a delayed job). */
  async #undoPhase(job: Job<RotationJobData>, token: string | undefined, rec: RotationRecord): Promise<boolean> {
    const outcome = await undoRotation(this.#d.ctx, rec);
    if (outcome.kind === 'persist') {
      await this.#record(rec.id, 'rollback', 'undo', outcome.detail, (r) => ({ ...r, status: 'running', undo: outcome.undo }));
      return false;
    }
    if (outcome.kind === 'wait') {
      await this.#wait(job, token, rec.id, 'rollback', outcome.until, outcome.reason);
      return true;
    }
    await this.#finish(rec.id, undoOutcome(rec.undo!.reason), undefined, outcome.detail, undefined, 'rollback');
    return true;
  }

  async #wait(job: Job<RotationJobData>, token: string | undefined, id: string, step: Step | 'rollback', until: number, reason: string): Promise<void> {
    await this.#record(id, step, 'waiting', reason, (r) => ({ ...r, status: 'waiting' }), true);
    await job.moveToDelayed(until, token);
    // A cancel that arrived between the record write and the move found no delayed job to wake.
    const after = await this.#d.repo.get(id);
    if (step !== 'rollback' && after?.undo) await job.promote().catch(() => undefined);
    throw new DelayedError();
  }

  /** Terminal transition. `step` moves the record's step (success); the history names `where` it ended. */
  async #finish(
    id: string,
    status: RotationRecord['status'],
    step: Step | undefined,
    detail: string,
    error?: { code: string; message: string },
    where: Step | 'rollback' = step ?? 'done',
  ): Promise<void> {
    const now = new Date(this.#d.ctx.now()).toISOString();
    await this.#record(id, where, 'finished', detail, (r) => ({
      ...r,
      status,
      ...(step ? { step } : {}),
      finishedAt: now,
      ...(error ? { error } : {}),
      lastError: undefined,
    }));
  }

  async #record(
    id: string,
    step: Step | 'rollback',
    status: HistoryEntry['status'],
    detail: string | undefined,
    change: (r: RotationRecord) => RotationRecord,
    onlyIfNew = false,
  ): Promise<void> {
    const at = new Date(this.#d.ctx.now()).toISOString();
    const entry: HistoryEntry = { step, status, at, ...(detail ? { detail } : {}), by: this.#by };
    const rec = await this.#d.repo.update(
      id,
      (r) => {
        const last = r.history.at(-1);
        // A re-armed wait (woken early, not yet due) should not add an entry each time.
        const history = onlyIfNew && last?.status === status && last.step === step ? r.history : withHistory(r.history, entry);
        return { ...change(r), history, updatedAt: at };
      },
      entry,
    );
    this.#d.onTransition?.(rec, entry);
  }
}

export function assertNever(x: never): never {
  throw new PermanentError('invariant', `unexpected ${String(x)}`);
}
