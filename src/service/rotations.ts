import { canUndo, newRotationId, withHistory, type RotationRecord } from '../domain/rotation.ts';
import type { RotationRepository } from '../state/rotations.ts';

/** What starting, waking and undoing rotations needs from the queue. */
export interface RotationQueue {
  enqueue(rotationId: string): Promise<void>;
  /** Wake a rotation waiting as a delayed job (a cancel should not wait out the drain). */
  wake(rotationId: string): Promise<void>;
}

export interface StartRequest {
  accountSid: string;
  reason?: string;
  dryRun?: boolean;
  trigger: RotationRecord['trigger'];
  requestedBy?: string;
}

export type StartResult = { started: true; record: RotationRecord } | { started: false; existing: RotationRecord };

export type ActionResult = { ok: true; record: RotationRecord } | { ok: false; reason: string; record?: RotationRecord };

/**
 * Starting and steering rotations: used by the API now, by the scheduler and CLI next.
 */
export class RotationService {
  constructor(
    private readonly repo: RotationRepository,
    private readonly queue: RotationQueue,
    private readonly now: () => number = Date.now,
  ) {}

  async start(req: StartRequest): Promise<StartResult> {
    const at = new Date(this.now()).toISOString();
    const record: RotationRecord = {
      id: newRotationId(this.now()),
      kind: 'api-key',
      accountSid: req.accountSid,
      status: 'pending',
      step: 'create-secondary',
      ...(req.reason ? { reason: req.reason } : {}),
      dryRun: req.dryRun ?? false,
      trigger: req.trigger,
      ...(req.requestedBy ? { requestedBy: req.requestedBy } : {}),
      attempts: 0,
      createdAt: at,
      updatedAt: at,
      rev: 0,
      history: [{ step: 'create-secondary', status: 'created', at, detail: req.reason ? `requested: ${req.reason}` : 'requested' }],
    };
    const result = await this.repo.create(record);
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

  /** Cancel or roll back: the worker performs the undo; a waiting rotation is woken for it. */
  async undo(id: string, action: 'cancel' | 'rollback', by?: string): Promise<ActionResult | undefined> {
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
        return {
          ...r,
          undo: { reason: action, ...(by ? { requestedBy: by } : {}) },
          updatedAt: at,
          history: withHistory(r.history, entry),
        };
      },
      entry,
    );
    if (verdict) return verdict;
    await this.queue.wake(id);
    return { ok: true, record };
  }
}
