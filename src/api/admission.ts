import { isTransient, RotatorError } from '../domain/errors.ts';
import type { SubaccountChecker } from '../service/subaccounts.ts';
import { HttpError } from './errors.ts';

/**
 * Refuse, before a record, a lock or a managed credential exists, an account that is not an active
 * subaccount of the parent: 404 unknown, 422 not rotatable (the parent, suspended, closed), 503
 * when Twilio could not be asked, 502 when Twilio refused the lookup itself (the admin credential:
 * the message says what to fix).
 */
export async function admitSubaccount(subaccounts: SubaccountChecker, sid: string): Promise<void> {
  let verdict;
  try {
    verdict = await subaccounts.check(sid);
  } catch (err) {
    if (isTransient(err)) throw new HttpError(503, 'subaccount_check_unavailable', `could not confirm with Twilio that ${sid} is a subaccount of the parent (${(err as Error).message}); retry shortly`);
    if (err instanceof RotatorError) throw new HttpError(502, 'subaccount_check_failed', `could not check ${sid} at Twilio: ${err.message}`);
    throw err;
  }
  if (!verdict.ok) throw new HttpError(verdict.code === 'subaccount_not_found' ? 404 : 422, verdict.code, verdict.message);
}
