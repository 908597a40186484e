/**
 * Consumer pickup tracking (issue 15): applications report which key SID of a managed credential
 * they use, and promote waits for them instead of guessing with a fixed drain. Pure: no I/O, no
 * clock (`now` is passed in).
 */

/** How an application names itself in heartbeats: logged, shown to operators, a Redis hash field. */
export const CONSUMER_NAME = /^[A-Za-z0-9_.:@-]{1,128}$/;
export const CONSUMER_NAME_RULE = '1–128 letters, digits, "_", ".", ":", "@" or "-" (e.g. billing-api@pod-7f9c)';

/** One consumer of a managed credential, as last reported. Never a secret: a key SID only. */
export interface ConsumerReport {
  consumer: string;
  credential: string;
  keySid: string;
  /** When its last heartbeat arrived (ms since epoch). */
  lastSeen: number;
  /** The token (principal) that sent it. */
  by: string;
}

/** How far a rotation's consumers have moved: "k of n consumers on the new key", and who lags. */
export interface Pickup {
  onNewKey: number;
  total: number;
  /** The live consumers still reporting another key, with the key they report. */
  lagging: Array<{ consumer: string; keySid: string; lastSeen: string }>;
}

/** Whether a report is still live: a consumer that stops reporting for `expiryMs` no longer counts. */
export function isLive(r: Pick<ConsumerReport, 'lastSeen'>, now: number, expiryMs: number): boolean {
  return now - r.lastSeen < expiryMs;
}

export function pickupOf(consumers: readonly ConsumerReport[], newKeySid: string): Pickup {
  const lagging = consumers
    .filter((c) => c.keySid !== newKeySid)
    .sort((a, b) => a.consumer.localeCompare(b.consumer))
    .map((c) => ({ consumer: c.consumer, keySid: c.keySid, lastSeen: new Date(c.lastSeen).toISOString() }));
  return { onNewKey: consumers.length - lagging.length, total: consumers.length, lagging };
}

/** "2 of 3 consumers on the new key; lagging: app-3 (SK…)": how waits, events and audit entries say it. */
export function describePickup(p: Pickup, maxNames = 10): string {
  const head = `${p.onNewKey} of ${p.total} consumer${p.total === 1 ? '' : 's'} on the new key`;
  if (p.lagging.length === 0) return head;
  const names = p.lagging.slice(0, maxNames).map((l) => `${l.consumer} (${l.keySid})`);
  const more = p.lagging.length > maxNames ? ` and ${p.lagging.length - maxNames} more` : '';
  return `${head}; lagging: ${names.join(', ')}${more}`;
}

/** A policy's consumer gate, compiled (policy.ts `consumerGate`). */
export interface ConsumerGatePolicy {
  /** The least time between operationalize and promote, however fast the consumers move. */
  minDrainMs: number;
  /** How long promote waits for lagging consumers after operationalize. */
  maxWaitMs: number;
  /** What happens then: keep the rotation waiting with the lagging consumers named, or promote anyway. */
  onMaxWait: 'hold' | 'promote';
}

export type GateDecision =
  | { kind: 'promote'; pickup: Pickup | null; detail: string }
  | { kind: 'wait'; until: number; pickup: Pickup | null; reason: string };

export interface GateInput {
  policy: ConsumerGatePolicy | null;
  /** The live consumers of the credential. */
  consumers: readonly ConsumerReport[];
  newKeySid: string;
  operationalizedAt: number;
  /** The configured drain's end (DRAIN_SECONDS after operationalize): the guess the gate replaces. */
  drainEndsAt: number;
  now: number;
  /** When the gate looks again while nothing wakes it (a heartbeat that moves a consumer wakes it at once). */
  recheckMs: number;
  /** When each lagging consumer expires if it stops reporting: the gate looks again then. */
  expiryMs: number;
}

/**
 * When promote may proceed. Without a consumer gate in the policy, or with no live consumer to ask,
 * the drain is all there is (the consumers that do not report are what DRAIN_SECONDS is for). With
 * live consumers: once the policy's minimum drain has passed and every one of them reports the new
 * key, at once, even long before DRAIN_SECONDS; until the maximum wait, the rotation waits for the
 * laggards; after it, it holds (still waiting, the laggards named, looked at again now and then:
 * a laggard that moves or expires releases it) or promotes, as the policy says.
 */
export function decideGate(i: GateInput): GateDecision {
  if (!i.policy || i.consumers.length === 0) {
    if (i.now < i.drainEndsAt) return { kind: 'wait', until: i.drainEndsAt, pickup: null, reason: `drain until ${new Date(i.drainEndsAt).toISOString()}` };
    return { kind: 'promote', pickup: null, detail: i.policy ? 'no live consumer reports: drain passed' : 'drain passed' };
  }
  const pickup = pickupOf(i.consumers, i.newKeySid);
  const minEnds = i.operationalizedAt + i.policy.minDrainMs;
  if (i.now < minEnds) return { kind: 'wait', until: minEnds, pickup, reason: `minimum drain until ${new Date(minEnds).toISOString()}; ${describePickup(pickup)}` };
  if (pickup.lagging.length === 0) return { kind: 'promote', pickup, detail: `every live consumer on the new key (${describePickup(pickup)})` };
  const maxEnds = i.operationalizedAt + i.policy.maxWaitMs;
  const laggardExpires = Math.min(...i.consumers.filter((c) => c.keySid !== i.newKeySid).map((c) => c.lastSeen + i.expiryMs));
  const recheck = Math.min(i.now + i.recheckMs, laggardExpires);
  if (i.now < maxEnds) return { kind: 'wait', until: Math.min(recheck, maxEnds), pickup, reason: `waiting for consumers: ${describePickup(pickup)}` };
  if (i.policy.onMaxWait === 'promote') return { kind: 'promote', pickup, detail: `maximum wait passed, promoting as the policy says: ${describePickup(pickup)}` };
  return { kind: 'wait', until: recheck, pickup, reason: `held after the maximum wait: ${describePickup(pickup)} (force-promote to proceed)` };
}
