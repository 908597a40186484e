import { planRotation, type CredentialClock, type Plan } from '../domain/planner.ts';
import type { AssignmentSource, CompiledPolicy } from '../domain/policy.ts';
import type { CredentialKind } from '../domain/credential.ts';
import { isoTime } from '../state/iso.ts';
import type { FleetEntry } from './fleet.ts';

const DAY_MS = 86_400_000;

/** What a key's age counts from, best first. */
export type KeyAgeFrom = 'key_created' | 'last_rotation' | 'first_seen';

/**
 * One managed credential as people read it (GET /v1/accounts/{sid}, GET /v1/credentials): its key
 * and how old it is, its last rotation, the policy that applies and why, its deadline and next slot,
 * and whether anything stops the planner. The order of the fields is CredentialStatusT's.
 */
export interface CredentialStatus {
  id: string;
  accountSid: string;
  name: string;
  kind: CredentialKind;
  subaccountStatus: string;
  labels: string[];
  currentKeySid: string | null;
  keyAgeDays: number;
  keyAgeFrom: KeyAgeFrom;
  keySince: string;
  lastRotatedAt: string | null;
  lastRotation: { id: string; at: string; outcome: string } | null;
  policy: { name: string; source: AssignmentSource; reason: string };
  policyOverride: string | null;
  deadline: string | null;
  deadlineBy: 'interval' | 'max key age' | null;
  nextRotationAt: string | null;
  notScheduled: string | null;
  late: boolean;
  overdue: boolean;
  paused: boolean;
  pausedBy: 'credential' | 'account' | null;
}

/**
 * Key age counts from the best evidence Rotator has: Twilio's date_created of the current key,
 * else the last successful rotation (the key is at most that old), else when Rotator first saw the
 * credential (a lower bound: the key may be older) — `keyAgeFrom` says which, because an auditor
 * reads "40 days" differently in each case.
 */
export function keyAge(c: FleetEntry['credential'], now: number): { days: number; from: KeyAgeFrom; sinceMs: number } {
  const [from, sinceMs]: [KeyAgeFrom, number] =
    c.keyCreatedAtMs !== null ? ['key_created', c.keyCreatedAtMs] : c.lastRotatedAtMs !== null ? ['last_rotation', c.lastRotatedAtMs] : ['first_seen', c.firstSeenAtMs];
  return { days: Math.max(0, Math.floor((now - sinceMs) / DAY_MS)), from, sinceMs };
}

/**
 * Why the planner starts nothing for this credential, or null when it will at `nextRotationAt`.
 * A paused or excluded credential still has a deadline (the compliance promise), except an
 * excluded one, which the policy takes out of the schedule and the report altogether.
 */
function notScheduled(e: FleetEntry): string | null {
  const p = e.assignment.policy;
  if (p.exclude) return `policy ${p.name} excludes it from the schedule`;
  if (e.subaccountStatus !== 'active') return `the subaccount is ${e.subaccountStatus} at Twilio`;
  if (e.paused === 'credential') return 'the credential is paused';
  if (e.paused === 'account') return 'its subaccount is paused';
  if (!p.autoRotate) return `policy ${p.name} does not rotate automatically (autoRotate: false): rotate it by hand or in a batch`;
  if (e.credential.kind === 'auth-token' && !p.allowAuthToken) return `an Auth Token: policy ${p.name} does not allow scheduled Auth Token rotation (allowAuthToken); an admin rotates it with a confirmation`;
  return null;
}

/**
 * planRotation, remembered: a plan is a pure function of the compiled policy and the credential's
 * clock, and it was most of a fleet page's CPU (4 µs a row, 13 µs with windows: the id's SHA-256
 * and the allowed time before the deadline). Keyed by the compiled policy object (a new catalog
 * version compiles new objects, so an edited policy is never answered from here) and by every
 * input; bounded, emptied when full.
 */
const PLAN_CACHE_MAX = 200_000;
let planCache = new WeakMap<CompiledPolicy, Map<string, Plan>>();
let planCached = 0;

export function cachedPlan(policy: CompiledPolicy, c: CredentialClock): Plan {
  let byClock = planCache.get(policy);
  if (!byClock) planCache.set(policy, (byClock = new Map()));
  const key = `${c.id} ${c.firstSeenMs} ${c.lastRotatedMs ?? ''} ${c.keyCreatedMs ?? ''}`;
  let plan = byClock.get(key);
  if (!plan) {
    if (planCached >= PLAN_CACHE_MAX) {
      planCache = new WeakMap();
      planCached = 0;
      planCache.set(policy, (byClock = new Map()));
    }
    plan = planRotation(policy, c);
    byClock.set(key, plan);
    planCached++;
  }
  return plan;
}

export function credentialStatus(e: FleetEntry, now: number): CredentialStatus {
  const c = e.credential;
  const policy = e.assignment.policy;
  const age = keyAge(c, now);
  const why = notScheduled(e);
  const plan = policy.exclude ? null : cachedPlan(policy, { id: e.id, firstSeenMs: c.firstSeenAtMs, lastRotatedMs: c.lastRotatedAtMs, keyCreatedMs: c.keyCreatedAtMs });
  return {
    id: e.id,
    accountSid: c.accountSid,
    name: c.name,
    kind: c.kind,
    subaccountStatus: e.subaccountStatus,
    labels: [...e.labels],
    currentKeySid: c.currentKeySid,
    keyAgeDays: age.days,
    keyAgeFrom: age.from,
    keySince: isoTime(age.sinceMs),
    lastRotatedAt: c.lastRotatedAtMs === null ? null : isoTime(c.lastRotatedAtMs),
    lastRotation: c.lastRotation ? { id: c.lastRotation.id, at: isoTime(c.lastRotation.atMs), outcome: c.lastRotation.outcome } : null,
    policy: { name: policy.name, source: e.assignment.source, reason: e.assignment.reason },
    policyOverride: c.policy,
    deadline: plan ? isoTime(plan.deadlineMs) : null,
    deadlineBy: plan ? plan.deadlineBy : null,
    nextRotationAt: plan && why === null ? isoTime(plan.slotMs) : null,
    notScheduled: why,
    late: plan?.late ?? false,
    overdue: plan !== null && now > plan.deadlineMs,
    paused: e.paused !== null,
    pausedBy: e.paused,
  };
}
