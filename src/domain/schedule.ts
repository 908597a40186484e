/**
 * What the planner does with one managed credential, decided from what Rotator knows about it:
 * when it is next looked at (its slot, planner.ts), or that the planner leaves it alone. Pure, as
 * planner.ts is: the replan after a finished rotation, the paged rebuild after a policy change and
 * each tick (which decides again from fresh state before starting anything) all call this, so a
 * stale entry in the due set can cost a look, never a wrong start.
 */
import type { CompiledPolicy } from './policy.ts';
import type { CredentialKind } from './credential.ts';
import { planRotation, startTime, type Plan } from './planner.ts';
import { DAY_MS } from './duration.ts';

export interface SchedulingSubject {
  /** `<accountSid>/<name>`. */
  id: string;
  /** The credential's kind (default api-key): an Auth Token is scheduled only where its policy allows it. */
  kind?: CredentialKind;
  policy: CompiledPolicy;
  /** The credential or its subaccount is paused (FleetEntry.paused). */
  paused: 'credential' | 'account' | null;
  /** Twilio's status of the subaccount (`active` when unknown). */
  subaccountStatus: string;
  firstSeenMs: number;
  lastRotatedMs: number | null;
  keyCreatedMs: number | null;
  currentKeySid: string | null;
  lastRotation: { id: string; atMs: number; outcome: string } | null;
}

export type NotScheduledReason = 'excluded' | 'manual only' | 'paused' | 'subaccount not active' | 'auth token not allowed by policy';

export type Scheduling =
  | { scheduled: false; why: NotScheduledReason }
  | {
      scheduled: true;
      /** When the planner next looks at it: the slot, the bootstrap time or the retry after a failure. */
      atMs: number;
      plan: Plan;
      why: 'slot' | 'bootstrap' | 'retry after failure';
      /** Set when the last rotation failed and the retry, not the slot, decides when. */
      failure?: { rotationId: string; outcome: string; atMs: number; retryAtMs: number };
    };

/**
 * The planner's decision for one credential.
 *
 * - An Auth Token whose policy does not say `allowAuthToken: true`: never scheduled (domain/auth-token.ts).
 * - Excluded, `autoRotate: false`, paused, or a subaccount Twilio no longer lists as active: not
 *   scheduled (a rotation of a closed or suspended subaccount can only fail).
 * - Never rotated successfully and no current key (newly managed, e.g. MANAGE_NEW_SUBACCOUNTS=all):
 *   due from the moment Rotator first saw it — a bootstrap gives it its first key.
 * - Otherwise its slot (planRotation: deadline, spread by the id's hash, inside the windows).
 * - A last rotation that did not succeed (failed, cancelled, rolled back) holds the credential back
 *   until `retryAfterFailureMs` after it: without this a failing credential would be started again
 *   on every tick, hammering Twilio and flooding the history with the same failure.
 */
export function scheduleOf(s: SchedulingSubject, opts: { retryAfterFailureMs: number }): Scheduling {
  if (s.policy.exclude) return { scheduled: false, why: 'excluded' };
  if (!s.policy.autoRotate) return { scheduled: false, why: 'manual only' };
  if (s.kind === 'auth-token' && !s.policy.allowAuthToken) return { scheduled: false, why: 'auth token not allowed by policy' };
  if (s.paused) return { scheduled: false, why: 'paused' };
  if (s.subaccountStatus !== 'active') return { scheduled: false, why: 'subaccount not active' };
  const plan = planRotation(s.policy, { id: s.id, firstSeenMs: s.firstSeenMs, lastRotatedMs: s.lastRotatedMs, keyCreatedMs: s.keyCreatedMs });
  const bootstrap = s.currentKeySid === null && s.lastRotatedMs === null;
  const baseAt = bootstrap ? s.firstSeenMs : plan.slotMs;
  const last = s.lastRotation;
  const failedSinceSuccess = last !== null && last.outcome !== 'succeeded' && (s.lastRotatedMs === null || last.atMs > s.lastRotatedMs);
  if (failedSinceSuccess) {
    const retryAtMs = last.atMs + opts.retryAfterFailureMs;
    if (retryAtMs > baseAt) return { scheduled: true, atMs: retryAtMs, plan, why: 'retry after failure', failure: { rotationId: last.id, outcome: last.outcome, atMs: last.atMs, retryAtMs } };
  }
  return { scheduled: true, atMs: baseAt, plan, why: bootstrap ? 'bootstrap' : 'slot' };
}

/**
 * When a due credential may start, asked by a tick at `now`: now if its policy allows now, else the
 * next allowed instant (a tick that runs late never starts a rotation outside its window or in a
 * blackout just because the slot passed; the entry is re-slotted there instead).
 */
export function allowedStart(policy: CompiledPolicy, atMs: number, nowMs: number): number {
  return startTime(policy, { slotMs: atMs }, nowMs);
}

/**
 * Whether the planner has stopped ticking: no tick for three intervals (one late tick is a busy
 * worker; three is a planner nobody runs, or a Job Scheduler that stopped).
 */
export function plannerStalled(lastTickMs: number | null, tickMs: number, nowMs: number): boolean {
  return lastTickMs === null || nowMs - lastTickMs > 3 * tickMs;
}

/** One forecast day: the UTC date and the half-open range [fromMs, toMs) of it that lies in the forecast. */
export interface ForecastRange {
  date: string;
  fromMs: number;
  toMs: number;
}

/**
 * The UTC days of a forecast of `days` days from `now`: the first starts just after now (slots at
 * or before now are due now, reported apart), the last ends `days` × 24 h after now, every date in
 * between listed so a chart has no gaps. Counting a range is one ZCOUNT, so the forecast costs
 * O(days), not O(fleet).
 */
export function forecastRanges(nowMs: number, days: number): ForecastRange[] {
  const endMs = nowMs + days * DAY_MS + 1;
  const out: ForecastRange[] = [];
  for (let from = nowMs + 1; from < endMs; ) {
    const dayEnd = (Math.floor(from / DAY_MS) + 1) * DAY_MS;
    const to = Math.min(dayEnd, endMs);
    out.push({ date: new Date(from).toISOString().slice(0, 10), fromMs: from, toMs: to });
    from = to;
  }
  return out;
}
