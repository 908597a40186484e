import type { FleetEntry } from './fleet.ts';
import { credentialStatus } from './fleet-status.ts';

/**
 * The fleet view's filters (GET /v1/credentials), and a batch's `selector: {filter}`: one predicate,
 * so "rotate these N" starts exactly the credentials the dashboard listed.
 */
export interface FleetFilter {
  accountSid?: string;
  label?: string;
  policy?: string;
  overdue?: boolean;
  paused?: boolean;
  failed?: boolean;
  /** Part of the id (`AC…/name`) or of the current key SID, ignoring case. */
  needle?: string;
}

export function matchesFleetFilter(e: FleetEntry, f: FleetFilter, now: number): boolean {
  const c = e.credential;
  if (f.accountSid !== undefined && c.accountSid !== f.accountSid) return false;
  if (f.label !== undefined && !e.labels.includes(f.label)) return false;
  if (f.policy !== undefined && e.assignment.policy.name !== f.policy) return false;
  if (f.paused !== undefined && (e.paused !== null) !== f.paused) return false;
  if (f.failed !== undefined && (c.lastRotation?.outcome === 'failed') !== f.failed) return false;
  if (f.needle !== undefined && !e.id.toLowerCase().includes(f.needle) && !(c.currentKeySid ?? '').toLowerCase().includes(f.needle)) return false;
  if (f.overdue !== undefined && credentialStatus(e, now).overdue !== f.overdue) return false;
  return true;
}

/** A dashboard search box's `q`: a subaccount SID selects that subaccount, anything else is a needle. */
export function filterOfQuery(q: { accountSid?: string; q?: string; label?: string; policy?: string; overdue?: boolean; paused?: boolean; failed?: boolean }): FleetFilter | null {
  const bySid = q.q !== undefined && /^AC[0-9a-f]{32}$/.test(q.q);
  if (bySid && q.accountSid !== undefined && q.accountSid !== q.q) return null;
  return {
    accountSid: bySid ? q.q : q.accountSid,
    needle: q.q !== undefined && !bySid ? q.q.toLowerCase() : undefined,
    label: q.label,
    policy: q.policy,
    overdue: q.overdue,
    paused: q.paused,
    failed: q.failed,
  };
}
