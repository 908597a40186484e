import type { RotationRecord } from '../../src/domain/rotation.ts';
import type { StepContext } from './context.ts';

/**
 * A dry run proves a rotation could run — the admin credential may manage keys in the subaccount,
 * the store entry is readable — and changes nothing.
 */
export async function dryRunCheck(ctx: StepContext, rec: RotationRecord): Promise<string> {
  const keys = await ctx.twilio.listKeys(rec.accountSid);
  const entry = await ctx.store.read(ctx.secretPath(rec.accountSid));
  const current = entry.current?.credential.apiKeySid;
  if (!current) return `dry run: would bootstrap ${rec.accountSid} (store empty; ${keys.length} keys at Twilio)`;
  const atTwilio = keys.some((k) => k.sid === current);
  return `dry run: would replace ${current}${atTwilio ? '' : ' (WARNING: the store\'s current key is not at Twilio)'}; ${keys.length} keys at Twilio`;
}
