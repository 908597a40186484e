/**
 * Every Redis key Rotator writes, in one place. `prefix` may be hash-tagged (`{rotator}`) so all
 * keys land in one Redis Cluster slot, as BullMQ and our Lua scripts require.
 */
export function redisKeys(prefix: string) {
  return {
    rotation: (id: string) => `${prefix}:rot:${id}`,
    allRotations: `${prefix}:rots`,
    accountRotations: (accountSid: string) => `${prefix}:acct:${accountSid}:rots`,
    byStatus: (status: string) => `${prefix}:status:${status}`,
    accountLock: (accountSid: string) => `${prefix}:lock:${accountSid}`,
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
    /** The planner: each scheduled credential's next slot (epoch ms), and the fleet-wide pause. */
    scheduleDue: `${prefix}:schedule:due`,
    schedulePaused: `${prefix}:schedule:paused`,
    /** Batches (state/batches.ts): `batch:<id>` the record, `:plan` and `:items` beside it; a list index by creation time. */
    batch: (id: string) => `${prefix}:batch:${id}`,
    batches: `${prefix}:batches`,
    /** Set when something a sleeping batch runner waits for happened (a rotation ended, an operator acted). */
    batchWake: (id: string) => `${prefix}:batch:${id}:wake`,
  };
}
export type RedisKeys = ReturnType<typeof redisKeys>;
