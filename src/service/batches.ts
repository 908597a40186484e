import type { Logger } from 'pino';
import {
  adoptRotation,
  cancelBatch,
  claimStarts,
  createBatch,
  decide,
  inFlightRotations,
  isFinished,
  notRotatable,
  outcomeOfRotation,
  parseBatchRequest,
  parseCredentialId,
  pauseBatch,
  recordOutcomes,
  resumeBatch,
  selectCredentials,
  skipCredentials,
  type ActionResult,
  type BatchEvent,
  type BatchState,
  type Checked,
  type FleetCredential,
  type BatchSelector,
  type Selection,
} from '../domain/batch.ts';
import type { CredentialKind } from '../domain/credential.ts';
import { filterOfQuery, matchesFleetFilter } from './fleet-filter.ts';
import { isTerminal, newRotationId, undoRequestOf, type RotationRecord } from '../domain/rotation.ts';
import type { AuditFields, AuditLog } from '../state/audit.ts';
import type { BatchRepository, StoredBatch } from '../state/batches.ts';
import type { RotationRepository } from '../state/rotations.ts';
import type { RotationService } from './rotations.ts';
import type { FleetDirectory } from './fleet.ts';

/**
 * Batches (issue 13 item 5): the API's side (create from the fleet, operators' actions) and the
 * runner a worker drives, one BullMQ job per batch (workers/batch-worker.ts). All decisions are the
 * domain's (src/domain/batch.ts); this is the I/O around them.
 */

/** What the batch service needs from the batch queue. */
export interface BatchQueue {
  /** Enqueue the batch's runner job (idempotent: the job id is the batch id). */
  enqueue(batchId: string): Promise<void>;
  /** Something the runner waits for happened: run it now rather than at its next wake-up. */
  wake(batchId: string): Promise<void>;
}

export type BatchAction = 'pause' | 'resume' | 'cancel';

const ACTIONS: Record<BatchAction, (s: BatchState, at: number, by: string | null) => ActionResult> = {
  pause: pauseBatch,
  resume: resumeBatch,
  cancel: cancelBatch,
};

export interface BatchServiceDeps {
  batches: BatchRepository;
  fleet: Pick<FleetDirectory, 'entries'>;
  queue: BatchQueue;
  now?: () => number;
}

export class BatchService {
  readonly #d: BatchServiceDeps;
  readonly #now: () => number;

  constructor(deps: BatchServiceDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  /**
   * Check the request, select from the fleet as it is now, plan the waves, store the batch and
   * enqueue its runner. Field errors (400) name what is wrong, including a selection that matches
   * nothing that can be rotated.
   */
  async create(body: unknown, by: string | null): Promise<Checked<BatchState>> {
    const parsed = parseBatchRequest(body);
    if (!parsed.ok) return parsed;
    const selected = await this.#select(parsed.value);
    if (!selected.ok) return selected;
    const at = this.#now();
    const created = createBatch({ id: newRotationId(at), request: parsed.value, credentials: selected.value.ids, at, by });
    if (!created.ok) return created;
    if (!(await this.#d.batches.create(created.value))) throw new Error(`batch id ${created.value.id} is taken`);
    await this.#d.queue.enqueue(created.value.id);
    return created;
  }

  /** What a batch of this request would rotate now, without starting it (the dashboard's count before "rotate these N"). */
  async preview(body: unknown): Promise<Checked<Selection>> {
    const parsed = parseBatchRequest(body);
    if (!parsed.ok) return parsed;
    return this.#select(parsed.value);
  }

  /** The fleet as it is now, narrowed by a `filter` selector with the fleet view's own predicate. */
  async #select(request: { selector: BatchSelector; kinds?: readonly CredentialKind[] }): Promise<Checked<Selection>> {
    const filter = typeof request.selector === 'object' && 'filter' in request.selector ? filterOfQuery(request.selector.filter) : undefined;
    const now = this.#now();
    const fleet: FleetCredential[] = [];
    for await (const page of this.#d.fleet.entries()) {
      for (const e of page) {
        if (filter === null || (filter && !matchesFleetFilter(e, filter, now))) continue;
        fleet.push({ accountSid: e.credential.accountSid, name: e.credential.name, labels: e.labels, subaccountStatus: e.subaccountStatus, paused: e.paused !== null, kind: e.credential.kind, allowAuthToken: e.assignment.policy.allowAuthToken });
      }
    }
    return selectCredentials(request.selector, fleet, request.kinds);
  }

  get(id: string): Promise<StoredBatch | undefined> {
    return this.#d.batches.get(id);
  }

  list(opts: { limit: number; cursor?: string }): ReturnType<BatchRepository['list']> {
    return this.#d.batches.list(opts);
  }

  /**
   * Pause, resume or cancel: applied under optimistic concurrency (a runner's claim racing it
   * loses and is decided again on the new state), then the runner is woken to act on it (a
   * cancel's undo requests). Undefined for no such batch.
   */
  async act(id: string, action: BatchAction, by: string | null): Promise<{ ok: true; batch: StoredBatch; changed: boolean } | { ok: false; reason: string } | undefined> {
    let refusal: string | undefined;
    let changed = false;
    const done = await this.#d.batches.update(id, (s) => {
      const r = ACTIONS[action](s, this.#now(), by);
      refusal = r.ok ? undefined : r.reason;
      changed = r.ok && r.changed;
      return r.ok && r.changed ? r : undefined;
    });
    if (!done) return undefined;
    if (refusal) return { ok: false, reason: refusal };
    if (changed) await this.#d.queue.wake(id);
    const batch = await this.#d.batches.get(id);
    if (!batch) return undefined;
    return { ok: true, batch, changed };
  }
}

// ---------------------------------------------------------------------------------------------
// The runner

export interface BatchRunnerDeps {
  batches: BatchRepository;
  rotations: Pick<RotationService, 'start' | 'undo'>;
  repo: Pick<RotationRepository, 'getMany'>;
  /** For re-checking, just before a start, that a credential is still managed and rotatable. */
  fleet: Pick<FleetDirectory, 'join' | 'credentials'>;
  audit: Pick<AuditLog, 'append'>;
  log: Logger;
  now?: () => number;
  /**
   * Rotations of one batch in flight at once. The Twilio cap (TWILIO_MAX_CONCURRENCY, a Redis-wide
   * gate) paces the requests whatever this is; this keeps claims few, so a pause takes hold
   * quickly and a wave's failures show before most of it has started.
   */
  maxInFlight: number;
  /** Starts (Redis writes and enqueues) made at once. */
  startConcurrency?: number;
  /**
   * A wake-up at the latest this long after the last look while rotations are in flight: a
   * rotation's end wakes the runner (BatchQueue.wake), this covers a wake lost with a process.
   */
  pollMs?: number;
  /** A claim without a rotation record this old, in a stopped batch, is taken as never started. */
  startGraceMs?: number;
}

export type RunResult = { done: true } | { done: false; wakeAt: number };

/**
 * Audit actions of what a batch does by itself (an operator's actions are audited by the API). The
 * audit relay (service/audit-relay.ts) appends the same entry from the events stream when the
 * runner died between storing the change and appending it.
 */
export const SYSTEM_AUDIT: Partial<Record<BatchEvent['type'], string>> = { halted: 'batch.halted', completed: 'batch.completed' };

/** The audit entry of a batch's own decision: the same fields whichever process writes it. */
export function batchAuditFields(batchId: string, action: string, detail: string): AuditFields {
  return { kind: 'batch', actor: 'system', action, batchId, detail };
}

/** A paused or planned batch with nothing in flight still looks now and then (its wake may be lost). */
const IDLE_POLL_MS = 60_000;

export class BatchRunner {
  readonly #d: Required<Omit<BatchRunnerDeps, 'now'>> & { now: () => number };
  /** Rotations this process already asked to cancel (a refusal is not asked again). */
  readonly #cancelAsked = new Set<string>();

  constructor(deps: BatchRunnerDeps) {
    this.#d = { startConcurrency: 16, pollMs: 5_000, startGraceMs: 30_000, now: Date.now, ...deps };
  }

  /**
   * Do everything the batch allows now — record outcomes, ask cancelled rotations to undo, skip,
   * claim and start — and say when to look again. Safe to run twice at once or again after a
   * crash at any line: every write is compare-and-set on the batch's revision, a claim is stored
   * before its rotation starts, and a start with the claimed rotation id is idempotent.
   */
  async run(id: string): Promise<RunResult> {
    const { batches, log } = this.#d;
    let plan: string[] | undefined;
    for (let round = 0; round < 10_000; round++) {
      const s = await batches.view(id, plan);
      if (!s) return { done: true };
      plan = s.credentials;
      if (isFinished(s)) return { done: true };
      const now = this.#d.now();

      // 1. How the rotations in flight ended; claims whose start never happened.
      const inFlight = inFlightRotations(s);
      const records = new Map((await this.#d.repo.getMany(inFlight.map((f) => f.rotationId))).map((r) => [r.id, r]));
      const outcomes = [];
      const unstarted: Array<{ credentialId: string; rotationId: string }> = [];
      for (const f of inFlight) {
        const rec = records.get(f.rotationId);
        if (!rec) {
          unstarted.push(f);
          continue;
        }
        const outcome = isTerminal(rec.status) ? outcomeOfRotation(rec.status) : null;
        if (outcome) outcomes.push({ ...f, outcome, ...(rec.error ? { detail: `${rec.error.code}: ${rec.error.message}`.slice(0, 300) } : {}) });
      }
      const stopped = s.status === 'halted' || s.status === 'cancelled' || s.status === 'completed';
      if (stopped) {
        // Nothing new starts in a stopped batch; a claim never started (its start died, long enough
        // ago not to be racing) ends as cancelled: nothing was done for it.
        for (const f of unstarted) {
          const item = s.items[f.credentialId];
          if (item?.startedAt !== null && item?.startedAt !== undefined && now - item.startedAt >= this.#d.startGraceMs) {
            outcomes.push({ ...f, outcome: 'cancelled' as const, detail: `never started: the batch was ${s.status} first` });
          }
        }
      }
      if (outcomes.length > 0) {
        const t = recordOutcomes(s, outcomes, now);
        for (const r of t.refused) log.warn({ batchId: id, credentialId: r.credentialId }, `batch outcome not recorded: ${r.reason}`);
        if (t.state !== s) {
          await this.#save(s, t);
          continue;
        }
      }
      if (!stopped && unstarted.length > 0) {
        // A claim stored, then the process died before (or while) starting it: start it now, with
        // the same rotation id (idempotent).
        await this.#start(s, unstarted);
      }

      // 2. A cancelled batch asks its rotations in flight to undo; one past the point of no return
      //    refuses and finishes: nothing is left half-way either way.
      if (s.status === 'cancelled') await this.#cancelInFlight(s, [...records.values()]);

      // 3. What to start.
      const d = decide(s, now, { maxInFlight: this.#d.maxInFlight });
      if (d.start.length > 0) {
        const skips = await this.#unrotatable(d.start);
        const k = skips.length > 0 ? skipCredentials(d.state, skips, now) : undefined;
        if (k && k.recorded.length > 0) {
          await this.#save(s, { state: k.state, events: [...d.events, ...k.events] });
          continue;
        }
        const claims = d.start.map((credentialId) => ({ credentialId, rotationId: newRotationId(now) }));
        const c = claimStarts(d.state, claims, now);
        if (c.claimed.length > 0) {
          // Stored before anything starts: a claim that loses a race (a pause, a cancel) starts nothing.
          if (!(await this.#save(s, { state: c.state, events: [...d.events, ...c.events] }))) continue;
          const claimed = new Set(c.claimed);
          await this.#start(c.state, claims.filter((x) => claimed.has(x.credentialId)));
          continue;
        }
        for (const r of c.refused) log.warn({ batchId: id, credentialId: r.credentialId }, `batch claim refused: ${r.reason}`);
      }
      if (d.state !== s) {
        await this.#save(s, d);
        continue;
      }
      // 4. Nothing to do until a rotation ends, a bake is over, or an operator acts.
      const busy = inFlight.length > 0;
      const wakeAt = Math.min(d.wakeAt ?? Infinity, now + (busy ? this.#d.pollMs : IDLE_POLL_MS));
      return { done: false, wakeAt };
    }
    throw new Error(`batch ${id}: the runner went round 10000 times without settling`);
  }

  async #save(prev: BatchState, t: { state: BatchState; events: BatchEvent[] }): Promise<boolean> {
    const ok = await this.#d.batches.save(prev, t);
    if (!ok) return false;
    for (const e of t.events) {
      this.#d.log.info({ batchId: prev.id, event: e.type, wave: e.wave }, `batch ${prev.id}: ${e.detail}`);
      const action = SYSTEM_AUDIT[e.type];
      if (action) {
        await this.#d.audit.append(batchAuditFields(prev.id, action, e.detail), e.at).catch((err: Error) => {
          this.#d.log.error({ batchId: prev.id, err: { message: err.message } }, 'audit append failed');
        });
      }
    }
    return true;
  }

  /** Credentials that are no longer managed, or whose subaccount was closed or paused since the batch was planned. */
  async #unrotatable(ids: string[]): Promise<Array<{ credentialId: string; reason: string }>> {
    const found = await this.#d.fleet.credentials.getMany(ids);
    const present = found.filter((c): c is NonNullable<typeof c> => c !== undefined);
    const entries = new Map((await this.#d.fleet.join(present)).map((e) => [e.id, e]));
    const skips: Array<{ credentialId: string; reason: string }> = [];
    for (const id of ids) {
      const e = entries.get(id);
      if (!e) {
        skips.push({ credentialId: id, reason: 'no longer managed' });
        continue;
      }
      const why = notRotatable({ accountSid: e.credential.accountSid, name: e.credential.name, labels: e.labels, subaccountStatus: e.subaccountStatus, paused: e.paused !== null, kind: e.credential.kind, allowAuthToken: e.assignment.policy.allowAuthToken });
      if (why) skips.push({ credentialId: id, reason: why });
    }
    return skips;
  }

  /** Start claimed rotations, a few at a time. */
  async #start(s: BatchState, claims: Array<{ credentialId: string; rotationId: string }>): Promise<void> {
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < claims.length) {
        const claim = claims[next++]!;
        await this.#startOne(s, claim).catch((err: Error) => {
          // Left claimed without a record: the next round starts it again with the same id.
          this.#d.log.warn({ batchId: s.id, credentialId: claim.credentialId, err: { message: err.message } }, 'batch could not start a rotation; will try again');
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#d.startConcurrency, claims.length) }, lane));
  }

  async #startOne(s: BatchState, claim: { credentialId: string; rotationId: string }): Promise<void> {
    const ref = parseCredentialId(claim.credentialId);
    const result = await this.#d.rotations.start({
      id: claim.rotationId,
      accountSid: ref.accountSid,
      credential: ref.name,
      batchId: s.id,
      trigger: 'batch',
      // The selection and the skip check before this start left in only Auth Tokens whose policy allows it.
      policyAllowsAuthToken: true,
      reason: `batch ${s.id}: ${s.reason}`,
      dryRun: s.dryRun,
      ...(s.requestedBy ? { requestedBy: s.requestedBy } : {}),
    });
    if (result.started) return;
    const other = result.existing;
    // Another rotation of this very credential is in flight (the planner's, a manual one): the
    // batch follows it instead of rotating the credential twice.
    if ((other.credential ?? 'default') === ref.name) {
      await this.#d.batches.update(s.id, (cur) => {
        const r = adoptRotation(cur, claim.credentialId, claim.rotationId, other.id, this.#d.now());
        return r.ok && r.state !== cur ? { state: r.state, events: [] } : undefined;
      });
      return;
    }
    // Another credential of the subaccount holds its lock (locks per subaccount, before
    // per-credential ones): left claimed, started again once that rotation ends.
  }

  async #cancelInFlight(s: BatchState, records: RotationRecord[]): Promise<void> {
    for (const rec of records) {
      if (isTerminal(rec.status) || undoRequestOf(rec) || this.#cancelAsked.has(rec.id)) continue;
      // A memo of refusals only: forgetting it costs one more refused request per rotation.
      if (this.#cancelAsked.size >= 10_000) this.#cancelAsked.clear();
      this.#cancelAsked.add(rec.id);
      const r = await this.#d.rotations.undo(rec.id, 'cancel', `batch ${s.id}`);
      if (r && !r.ok) this.#d.log.info({ batchId: s.id, rotationId: rec.id }, `batch cancelled; rotation ${rec.id} finishes instead: ${r.reason}`);
    }
  }
}
