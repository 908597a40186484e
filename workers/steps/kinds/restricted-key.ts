/**
 * Restricted API keys through IAM v1 (`/v1/Keys`, `KeyType=restricted`). The new key gets exactly
 * the old key's policy: read from the old key, applied at creation, read back from the new key and
 * compared, then proved by a call the policy allows, made with the new key.
 */
import { PermanentError } from '../../../src/domain/errors.ts';
import { credentialOf, keyName, type RotationRecord } from '../../../src/domain/rotation.ts';
import { samePolicy, type KeyPolicy } from '../../../src/twilio/kinds.ts';
import type { StepContext } from '../context.ts';
import { verifyWithPropagation } from '../verify.ts';
import type { KindSteps } from './index.ts';
import { credentialOps } from './ops.ts';
import { deleteOrphanKeys, deleteRotationKeys, dryRunKeys, heldIds, type KeyApi } from './key-family.ts';

const iam = (ctx: StepContext): KeyApi => {
  const ops = credentialOps(ctx, 'restricted-key');
  return { list: (sid) => ops.listIamKeys(sid), remove: (sid, key) => ops.deleteIamKey(sid, key) };
};

/** The old key's policy: the one the new key must carry. */
async function oldPolicy(ctx: StepContext, rec: RotationRecord, oldId: string | null | undefined): Promise<KeyPolicy> {
  if (!oldId) {
    throw new PermanentError('restricted_key_bootstrap', `${credentialOf(rec)} is a restricted-key credential but its store entry holds no key to copy the policy from: adopt the restricted key your applications use first, its SID and secret as JSON on stdin: npm run adopt-key -- ${rec.accountSid} ${rec.credential}`);
  }
  const policy = await credentialOps(ctx, 'restricted-key').fetchKeyPolicy(rec.accountSid, oldId);
  if (policy === undefined) throw new PermanentError('restricted_key_old_missing', `the old key ${oldId} of ${credentialOf(rec)} is not at Twilio: its policy cannot be copied`);
  if (policy === null) throw new PermanentError('restricted_key_not_restricted', `the old key ${oldId} of ${credentialOf(rec)} has no policy (not a restricted key): give the credential kind api-key`);
  return policy;
}

export const restrictedKeySteps: KindSteps = {
  noun: 'restricted key',
  bootstrapOld: async () => null,
  cleanup: (ctx, rec, entry) => deleteOrphanKeys(ctx, iam(ctx), rec, heldIds(entry)),
  async create(ctx, rec, oldId) {
    const policy = await oldPolicy(ctx, rec, oldId);
    const created = await credentialOps(ctx, 'restricted-key').createRestrictedKey(rec.accountSid, keyName(ctx.keyNamePrefix, rec.id), policy);
    return { accountSid: rec.accountSid, apiKeySid: created.sid, apiKeySecret: created.secret };
  },
  async verify(ctx, rec, c) {
    const ops = credentialOps(ctx, 'restricted-key');
    const wanted = await oldPolicy(ctx, rec, rec.oldKeySid);
    const actual = await ops.fetchKeyPolicy(rec.accountSid, c.apiKeySid);
    if (!samePolicy(wanted, actual)) {
      throw new PermanentError('restricted_key_policy_mismatch', `new key ${c.apiKeySid} of ${credentialOf(rec)} does not carry the old key ${rec.oldKeySid}'s policy exactly`);
    }
    const call = await verifyWithPropagation(() => ops.verifyRestrictedKey(c.accountSid, c.apiKeySid, c.apiKeySecret, wanted));
    return `verified (${call}); policy identical to ${rec.oldKeySid}'s`;
  },
  makePrimary: async () => 'new restricted key verified, primary',
  async retireOld(ctx, rec, old) {
    const result = await credentialOps(ctx, 'restricted-key').deleteIamKey(rec.accountSid, old);
    return result === 'deleted' ? 'old restricted key deleted' : 'old restricted key was already gone at Twilio';
  },
  discardNew: (ctx, rec, held) => deleteRotationKeys(ctx, iam(ctx), rec, held),
  async dryRun(ctx, rec, entry) {
    const current = entry.current?.credential.apiKeySid;
    const base = await dryRunKeys(ctx, iam(ctx), rec, heldIds(entry), current);
    if (!current) return `${base}; WARNING: a restricted key cannot be bootstrapped (no policy to copy): adopt the current one first (npm run adopt-key -- ${rec.accountSid} ${rec.credential})`;
    const policy = await credentialOps(ctx, 'restricted-key').fetchKeyPolicy(rec.accountSid, current);
    const allow = policy && Array.isArray(policy.allow) ? (policy.allow as unknown[]).length : 0;
    return `${base}; the new key would copy ${current}'s policy (${allow} permission(s))`;
  },
};
