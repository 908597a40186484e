import { PermanentError } from '../../src/domain/errors.ts';
import { credentialOf, type RotationRecord } from '../../src/domain/rotation.ts';
import type { StepContext, StepOutcome } from './context.ts';
import { kindSteps } from './kinds/index.ts';

/**
 * Step 4. Retire this rotation's old primary at Twilio — never the store's current or pending
 * credential — then drop the previous stage. For keys that is a delete (an already-deleted key is
 * fine: Twilio 404 → absent); for the Auth Token, promotion already ended the old token, which is
 * checked, and only the store is cleaned.
 */
export async function deleteOldKey(ctx: StepContext, rec: RotationRecord): Promise<StepOutcome> {
  const old = rec.oldKeySid;
  if (!old) return { kind: 'advance', patch: {}, next: 'done', detail: 'no old key (bootstrap)' };
  const path = ctx.secretPath(rec.accountSid, rec.credential);
  ctx.crash('delete-old:start');
  const entry = await ctx.store.read(path);
  if (entry.current?.credential.apiKeySid === old || entry.pending?.credential.apiKeySid === old) {
    throw new PermanentError('refused_delete_current', `refusing to delete ${old}: the store still hands it out for ${credentialOf(rec)}`);
  }
  const detail = await kindSteps(rec).retireOld(ctx, rec, old, entry);
  ctx.crash('delete-old:after-twilio-delete');
  await ctx.store.dropPrevious(path, old);
  ctx.crash('delete-old:done');
  return { kind: 'advance', patch: {}, next: 'done', detail };
}
