import { PermanentError } from '../../src/domain/errors.ts';
import { subaccountVerdict } from '../../src/domain/subaccount.ts';
import type { RotationRecord } from '../../src/domain/rotation.ts';
import type { StepContext } from './context.ts';

/**
 * The subaccount check failed: the account is the parent, another parent's, unknown to Twilio, or
 * not active. Thrown before anything is created in the run that checks (see isUntouched: when no
 * earlier run of the attempt got this far, nothing was changed at all).
 */
export class SubaccountRefusedError extends PermanentError {
  constructor(code: string, message: string) {
    super(code, message);
    this.name = 'SubaccountRefusedError';
  }
}

/**
 * Before create-secondary creates anything: ask Twilio, with the parent's admin credential,
 * whether the account is an active subaccount of the configured parent. The API asked already, but
 * from an inventory that may be stale, and records can be created without the API (scheduler,
 * demo). Read-only, so a repeated run is harmless.
 */
export async function checkSubaccount(ctx: Pick<StepContext, 'twilio' | 'parentAccountSid'>, rec: Pick<RotationRecord, 'accountSid'>): Promise<void> {
  const seen = rec.accountSid === ctx.parentAccountSid ? undefined : await ctx.twilio.fetchAccount(rec.accountSid);
  const verdict = subaccountVerdict(rec.accountSid, ctx.parentAccountSid, seen);
  if (verdict.ok) return;
  // Twilio shows the parent neither an account that does not exist nor one it may not act on.
  const why = verdict.code === 'subaccount_not_found' ? ' (Twilio does not show it to the parent\'s admin credential: no such account, another parent\'s, or the credential is refused on it)' : '';
  throw new SubaccountRefusedError(verdict.code, `${verdict.message}${why}; refused before creating a key`);
}
