import { PermanentError } from '../../src/domain/errors.ts';
import { stagingId, type RotationRecord } from '../../src/domain/rotation.ts';
import type { TwilioApiKeyCredential } from '../../src/domain/secret.ts';
import { checkSubaccount } from './check-subaccount.ts';
import type { StepContext, StepOutcome } from './context.ts';
import { kindSteps } from './kinds/index.ts';
import { sprawlNote } from './kinds/key-family.ts';

export { sortPrefixedKeys, sprawlNote } from './kinds/key-family.ts';

/**
 * Step 1. Check the account is an active subaccount of the parent, create the new credential (a
 * key named `<prefix>:<rotationId>`, or a secondary Auth Token), store its secret as pending
 * before anything else, then prove it works. What is created, and how, is the kind's (kinds/).
 *
 * Resuming after a crash: a pending secret under this rotation id is adopted; what an interrupted
 * run left at Twilio that the store entry does not hold (a key whose secret was lost, a secondary
 * token) is removed before creating (the kind's `cleanup`).
 */
export async function createSecondaryKey(ctx: StepContext, rec: RotationRecord): Promise<StepOutcome> {
  const kind = kindSteps(rec);
  const path = ctx.secretPath(rec.accountSid, rec.credential);
  const entry = await ctx.store.read(path);
  const oldKeySid = rec.oldKeySid !== undefined ? rec.oldKeySid : (entry.current?.credential.apiKeySid ?? (await kind.bootstrapOld(ctx, rec)));

  let credential: TwilioApiKeyCredential;
  let detail: string;
  if (entry.pending?.rotationId === stagingId(rec)) {
    credential = entry.pending.credential;
    detail = `adopted the pending ${kind.noun} of an interrupted run`;
  } else {
    await checkSubaccount(ctx, rec);
    const sprawl = await kind.cleanup(ctx, rec, entry);
    ctx.crash('create-secondary:start');
    credential = await kind.create(ctx, rec, oldKeySid);
    ctx.crash('create-secondary:after-create-key');
    await ctx.store.putPending(path, stagingId(rec), credential);
    ctx.crash('create-secondary:after-store-pending');
    detail = `created${sprawlNote(sprawl)}`;
  }

  if (oldKeySid === credential.apiKeySid) throw new PermanentError('invariant', `new ${kind.noun} ${credential.apiKeySid} equals the old one`);
  const verified = await kind.verify(ctx, { ...rec, oldKeySid }, credential);
  ctx.crash('create-secondary:done');
  return {
    kind: 'advance',
    patch: { newKeySid: credential.apiKeySid, oldKeySid },
    next: 'operationalize',
    detail: `${detail}; ${verified}${oldKeySid ? '' : '; bootstrap'}`,
  };
}
