import type { RotationRecord } from '../../src/domain/rotation.ts';
import { checkSubaccount } from './check-subaccount.ts';
import type { StepContext } from './context.ts';
import { kindSteps } from './kinds/index.ts';

/**
 * A dry run proves a rotation could run — the account is an active subaccount of the parent, the
 * admin credential may manage its credentials, the store entry is readable — and changes nothing.
 * What it reports is the kind's (an Auth Token's lists what depends on the token).
 */
export async function dryRunCheck(ctx: StepContext, rec: RotationRecord): Promise<string> {
  await checkSubaccount(ctx, rec);
  const entry = await ctx.store.read(ctx.secretPath(rec.accountSid, rec.credential));
  return kindSteps(rec).dryRun(ctx, rec, entry);
}
