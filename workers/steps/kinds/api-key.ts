/** Standard API keys through the v2010 Keys API: the kind Rotator started with. */
import { keyName } from '../../../src/domain/rotation.ts';
import type { StepContext } from '../context.ts';
import { verifyWithPropagation } from '../verify.ts';
import type { KindSteps } from './index.ts';
import { deleteOrphanKeys, deleteRotationKeys, dryRunKeys, heldIds, type KeyApi } from './key-family.ts';

const v2010 = (ctx: StepContext): KeyApi => ({
  list: (sid) => ctx.twilio.listKeys(sid),
  remove: (sid, key) => ctx.twilio.deleteKey(sid, key),
});

export const apiKeySteps: KindSteps = {
  noun: 'key',
  bootstrapOld: async () => null,
  cleanup: (ctx, rec, entry) => deleteOrphanKeys(ctx, v2010(ctx), rec, heldIds(entry)),
  async create(ctx, rec) {
    const created = await ctx.twilio.createKey(rec.accountSid, keyName(ctx.keyNamePrefix, rec.id));
    return { accountSid: rec.accountSid, apiKeySid: created.sid, apiKeySecret: created.secret };
  },
  async verify(ctx, _rec, c) {
    await verifyWithPropagation(() => ctx.twilio.verifyKey(c.accountSid, c.apiKeySid, c.apiKeySecret));
    return 'verified';
  },
  // Both keys are valid at Twilio until delete-old: nothing to switch.
  makePrimary: async () => 'new key verified, primary',
  async retireOld(ctx, rec, old) {
    const result = await ctx.twilio.deleteKey(rec.accountSid, old);
    return result === 'deleted' ? 'old key deleted' : 'old key was already gone at Twilio';
  },
  discardNew: (ctx, rec, held) => deleteRotationKeys(ctx, v2010(ctx), rec, held),
  dryRun: (ctx, rec, entry) => dryRunKeys(ctx, v2010(ctx), rec, heldIds(entry), entry.current?.credential.apiKeySid),
};

