/**
 * Every Redis key Rotator writes, in one place. `prefix` may be hash-tagged (`{rotator}`) so all
 * keys land in one Redis Cluster slot, as BullMQ and our Lua scripts require.
 */
import { DEFAULT_CREDENTIAL } from '../domain/credential.ts';

export function redisKeys(prefix: string) {
  return {
    rotation: (id: string) => `${prefix}:rot:${id}`,
    allRotations: `${prefix}:rots`,
    accountRotations: (accountSid: string) => `${prefix}:acct:${accountSid}:rots`,
    byStatus: (status: string) => `${prefix}:status:${status}`,
    /**
     * A managed credential's in-flight lock (one rotation at a time per credential). The `default`
     * credential keeps the key earlier versions used for the whole subaccount, so a rotation in
     * flight across an upgrade still holds its lock.
     */
    credentialLock: (accountSid: string, name: string) => (name === DEFAULT_CREDENTIAL ? `${prefix}:lock:${accountSid}` : `${prefix}:lock:${accountSid}:${name}`),
    stepLease: (id: string) => `${prefix}:lease:${id}`,
    idempotency: (key: string) => `${prefix}:idem:${key}`,
    events: `${prefix}:events`,
    /** Hash-chained audit stream, and the hash of its last entry (so a deleted tail is detectable). */
    audit: `${prefix}:audit`,
    auditHead: `${prefix}:audit:head`,
    /** Managed subaccounts: one JSON string each, a lexical index, and an index by next rotation due. */
    account: (accountSid: string) => `${prefix}:account:${accountSid}`,
    accounts: `${prefix}:accounts`,
    accountsDue: `${prefix}:accounts:due`,
    /**
     * Managed credentials (issue 13): one small JSON string each under `cred:<accountSid>/<name>`,
     * and one lexical index of every credential id (`AC…/name`), so a subaccount's credentials are
     * the ZRANGEBYLEX range `[AC…/` … `[AC…/\xff` and the fleet pages by id.
     */
    credential: (id: string) => `${prefix}:cred:${id}`,
    credentials: `${prefix}:creds`,
    /** Named rotation policies: a hash name → policy JSON, and a counter bumped on every change (caches compare it). */
    policies: `${prefix}:policies`,
    policiesVersion: `${prefix}:policies:v`,
    /**
     * Who names a policy in an override: a set per policy name of account SIDs (account overrides)
     * and credential ids `AC…/name` (credential overrides), kept by the override writes, so deleting
     * a policy can refuse atomically while one is still named.
     */
    policyUsers: (name: string) => `${prefix}:policy:users:${name}`,
    /** The planner: each scheduled credential's next slot (epoch ms), and the fleet-wide pause. */
    scheduleDue: `${prefix}:schedule:due`,
    schedulePaused: `${prefix}:schedule:paused`,
    /**
     * The compliance scan (service/compliance-scan.ts): per subaccount what it last found (its keys
     * at Twilio, the store stages of its credentials), a lexical index of the subaccounts scanned and
     * one of those with sprawl or leftover keys, the last finished scan with its totals, the lock
     * that keeps one scan running at a time, and the time of the last on-demand request.
     */
    complianceFacts: (accountSid: string) => `${prefix}:compliance:sub:${accountSid}`,
    complianceScanned: `${prefix}:compliance:subs`,
    complianceSprawl: `${prefix}:compliance:sprawl`,
    complianceLastScan: `${prefix}:compliance:scan`,
    complianceScanLock: `${prefix}:compliance:scan:lock`,
    complianceScanRequest: `${prefix}:compliance:scan:request`,
    /**
     * Each credential's compliance row, rendered when its inputs change (state/compliance-rows.ts):
     * the row by credential id, a generation per subaccount bumped by every write that changes one of
     * its rows' inputs, the subaccounts whose rows wait to be rendered, the policies version every row
     * was last rendered at (with the re-render's cursor), and the lock one renderer at a time holds.
     */
    complianceRow: (id: string) => `${prefix}:compliance:row:${id}`,
    complianceRowGen: `${prefix}:compliance:rows:gen`,
    complianceRowDirty: `${prefix}:compliance:rows:dirty`,
    complianceRowsVersion: `${prefix}:compliance:rows:v`,
    complianceRowsWalk: `${prefix}:compliance:rows:walk`,
    complianceRowsLock: `${prefix}:compliance:rows:lock`,
    /**
     * The planner's other indexes (state/schedule.ts): claimed credentials (id → lease end), each
     * scheduled credential's deadline, its slot again per policy (the forecast counts these; the due
     * set's score becomes a lease once claimed) with a hash of which policy holds it, credentials
     * held back after a failed rotation (id → retry time), the last tick, and the paged rebuild.
     */
    scheduleLeased: `${prefix}:schedule:leased`,
    scheduleDeadlines: `${prefix}:schedule:deadlines`,
    scheduleByPolicy: (policy: string) => `${prefix}:schedule:policy:${policy}`,
    schedulePolicyOf: `${prefix}:schedule:policy-of`,
    scheduleFailing: `${prefix}:schedule:failing`,
    scheduleState: `${prefix}:schedule:state`,
    scheduleRebuild: `${prefix}:schedule:rebuild`,
    scheduleRebuildLock: `${prefix}:schedule:rebuild:lock`,
    /** Batches (state/batches.ts): `batch:<id>` the record, `:plan` and `:items` beside it; a list index by creation time. */
    batch: (id: string) => `${prefix}:batch:${id}`,
    batches: `${prefix}:batches`,
    /** Set when something a sleeping batch runner waits for happened (a rotation ended, an operator acted). */
    batchWake: (id: string) => `${prefix}:batch:${id}:wake`,
    /** A dashboard session (src/state/sessions.ts), under the SHA-256 of its id: the id itself is never stored. */
    session: (idHash: string) => `${prefix}:session:${idHash}`,
  };
}
export type RedisKeys = ReturnType<typeof redisKeys>;
