/**
 * Policy overrides and pauses, written the same way on a subaccount's record (state/accounts.ts)
 * and on a credential's (state/credentials.ts): each policy keeps a set of the overrides naming it,
 * so a policy still in use cannot be deleted (PolicyRepository.deleteUnlessUsed).
 */

/**
 * Lua: `set_override(rec, field, arg, member, setPrefix)` sets `rec[field]` from `arg` ('' keeps it,
 * '-' clears it, else the policy name) and moves `member` between the policies' override sets.
 */
export const SET_OVERRIDE = `
local function set_override(rec, field, arg, member, setPrefix)
  if arg == '' then return end
  local old = rec[field]
  if arg == '-' then rec[field] = nil else rec[field] = arg end
  if old ~= rec[field] then
    if old then redis.call('SREM', setPrefix .. old, member) end
    if rec[field] then redis.call('SADD', setPrefix .. rec[field], member) end
  end
end
`;

/** A patch's policy and pause as script arguments: '' leaves the field, '-' / '0' clears it. */
export function overrideArgs(change: { policy?: string | null; paused?: boolean }): { policy: string; paused: string } {
  return {
    policy: change.policy === undefined ? '' : change.policy === null ? '-' : change.policy,
    paused: change.paused === undefined ? '' : change.paused ? '1' : '0',
  };
}
