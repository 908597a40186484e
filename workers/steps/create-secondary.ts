import { PermanentError } from '../../src/domain/errors.ts';
import { stagingId, type RotationRecord } from '../../src/domain/rotation.ts';
import type { TwilioApiKeyCredential } from '../../src/domain/secret.ts';
import { keyName, type StepContext, type StepOutcome } from './context.ts';
import { verifyWithPropagation } from './verify.ts';

/**
 * Step 1. Create the new key with FriendlyName `<prefix>:<rotationId>`, store its secret as pending
 * before anything else, then prove it works.
 *
 * Resuming after a crash: a pending secret under this rotation id is adopted; a key at Twilio named
 * for this rotation that the store does not hold has a lost secret and is deleted before creating.
 */
export async function createSecondaryKey(ctx: StepContext, rec: RotationRecord): Promise<StepOutcome> {
  const path = ctx.secretPath(rec.accountSid);
  const entry = await ctx.store.read(path);
  const held = new Set([entry.current, entry.pending, entry.previous].filter((v) => v).map((v) => v!.credential.apiKeySid));
  const oldKeySid = rec.oldKeySid !== undefined ? rec.oldKeySid : (entry.current?.credential.apiKeySid ?? null);

  let credential: TwilioApiKeyCredential;
  let detail: string;
  if (entry.pending?.rotationId === stagingId(rec)) {
    credential = entry.pending.credential;
    detail = 'adopted the pending key of an interrupted run';
  } else {
    await deleteOrphans(ctx, rec, held);
    ctx.crash('create-secondary:start');
    const created = await ctx.twilio.createKey(rec.accountSid, keyName(ctx.keyNamePrefix, rec.id));
    ctx.crash('create-secondary:after-create-key');
    credential = { accountSid: rec.accountSid, apiKeySid: created.sid, apiKeySecret: created.secret };
    await ctx.store.putPending(path, stagingId(rec), credential);
    ctx.crash('create-secondary:after-store-pending');
    detail = 'created';
  }

  if (oldKeySid === credential.apiKeySid) throw new PermanentError('invariant', `new key ${credential.apiKeySid} equals the old key`);
  await verifyWithPropagation(ctx, credential);
  ctx.crash('create-secondary:done');
  return {
    kind: 'advance',
    patch: { newKeySid: credential.apiKeySid, oldKeySid },
    next: 'operationalize',
    detail: `${detail}; verified${oldKeySid ? '' : '; bootstrap'}`,
  };
}

/**
 * Keys Rotator created that no stage of the store holds have no use: their secret is lost (a run
 * died between Twilio's answer and the store write) or an undo could not finish. Only one
 * rotation per subaccount runs at a time, so none of them can belong to a live rotation.
 */
async function deleteOrphans(ctx: StepContext, rec: RotationRecord, held: Set<string>): Promise<void> {
  const mine = `${ctx.keyNamePrefix}:`;
  const keys = await ctx.twilio.listKeys(rec.accountSid);
  for (const key of keys) {
    if (key.friendlyName.startsWith(mine) && !held.has(key.sid)) await ctx.twilio.deleteKey(rec.accountSid, key.sid);
  }
}
