/**
 * What may be rotated: an active subaccount of the configured parent, and nothing else. Pure: the
 * callers (the API, the worker's create-secondary) look the account up and ask here.
 */

/** An account as Twilio (or the inventory synced from it) describes it. */
export interface SeenAccount {
  accountSid: string;
  /** Twilio's owner_account_sid: the parent for a subaccount, the account itself for a parent. */
  ownerAccountSid: string;
  /** active, suspended or closed. */
  status: string;
}

export type SubaccountRefusalCode = 'not_a_subaccount' | 'subaccount_not_found' | 'subaccount_inactive';

export type SubaccountVerdict = { ok: true } | { ok: false; code: SubaccountRefusalCode; message: string };

/**
 * Whether `sid` may be rotated. `parentSid` is the configured parent (TWILIO_ACCOUNT_SID) when the
 * caller knows it; `seen` is the account as looked up, undefined when nobody could find it.
 *
 * Why each refusal: the parent itself is never rotated (its keys are the admin's, and Twilio lists
 * it among its own accounts, so an unfiltered list would offer it); an account owned by another
 * parent is out of the admin credential's reach and not ours to touch; an unknown SID would be
 * accepted and fail later, after a record and a lock exist; a suspended or closed subaccount
 * refuses every key operation.
 */
export function subaccountVerdict(sid: string, parentSid: string | undefined, seen: SeenAccount | undefined): SubaccountVerdict {
  if (parentSid !== undefined && sid === parentSid) {
    return { ok: false, code: 'not_a_subaccount', message: `${sid} is the parent account (TWILIO_ACCOUNT_SID): Rotator rotates the keys of its subaccounts only` };
  }
  if (!seen) {
    return { ok: false, code: 'subaccount_not_found', message: `${sid} is not a known subaccount of the parent account${parentSid ? ` ${parentSid}` : ''}` };
  }
  if (seen.ownerAccountSid === seen.accountSid) {
    return { ok: false, code: 'not_a_subaccount', message: `${sid} is a parent (top-level) account, not a subaccount: Rotator rotates the keys of subaccounts only` };
  }
  if (parentSid !== undefined && seen.ownerAccountSid !== parentSid) {
    return { ok: false, code: 'not_a_subaccount', message: `${sid} belongs to another parent account (${seen.ownerAccountSid}), not to ${parentSid}` };
  }
  if (seen.status !== 'active') {
    return { ok: false, code: 'subaccount_inactive', message: `subaccount ${sid} is ${seen.status} at Twilio; reactivate it before rotating its key` };
  }
  return { ok: true };
}
