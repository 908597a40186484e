import { credentialOf, type RotationRecord } from '../../src/domain/rotation.ts';
import { checkSubaccount } from './check-subaccount.ts';
import type { StepContext } from './context.ts';
import { sortPrefixedKeys, sprawlNote } from './create-secondary.ts';

/**
 * A dry run proves a rotation could run — the account is an active subaccount of the parent, the
 * admin credential may manage keys in it, the store entry is readable — and changes nothing.
 */
export async function dryRunCheck(ctx: StepContext, rec: RotationRecord): Promise<string> {
  await checkSubaccount(ctx, rec);
  const keys = await ctx.twilio.listKeys(rec.accountSid);
  const entry = await ctx.store.read(ctx.secretPath(rec.accountSid, rec.credential));
  const held = new Set([entry.current, entry.pending, entry.previous].filter((v) => v).map((v) => v!.credential.apiKeySid));
  const { sprawl } = await sortPrefixedKeys(ctx, rec, keys, held);
  const current = entry.current?.credential.apiKeySid;
  if (!current) return `dry run: would bootstrap ${credentialOf(rec)} (store empty; ${keys.length} keys at Twilio)${sprawlNote(sprawl)}`;
  const atTwilio = keys.some((k) => k.sid === current);
  return `dry run: would replace ${current}${atTwilio ? '' : ' (WARNING: the store\'s current key is not at Twilio)'}; ${keys.length} keys at Twilio${sprawlNote(sprawl)}`;
}
