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
    /**
     * Who names a policy in an override: a set per policy name of account SIDs (account overrides)
     * and credential ids `AC…/name` (credential overrides), kept by the override writes, so deleting
     * a policy can refuse atomically while one is still named.
     */
    policyUsers: (name: string) => `${prefix}:policy:users:${name}`,
    /** The planner: each scheduled credential's next slot (epoch ms), and the fleet-wide pause. */
    scheduleDue: `${prefix}:schedule:due`,
    schedulePaused: `${prefix}:schedule:paused`,
  };
}
export type RedisKeys = ReturnType<typeof redisKeys>;
