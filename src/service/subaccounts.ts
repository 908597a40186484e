import { subaccountVerdict, type SubaccountVerdict } from '../domain/subaccount.ts';
import type { AccountRepository } from '../state/accounts.ts';
import type { TwilioKeyOps } from '../twilio/admin.ts';

/** What the API asks before it creates a rotation record. */
export interface SubaccountChecker {
  /** Throws a transient RotatorError when Twilio could not be asked (the API answers 503). */
  check(accountSid: string): Promise<SubaccountVerdict>;
}

export interface SubaccountGuardOptions {
  accounts: Pick<AccountRepository, 'get' | 'upsertMany'>;
  /** TWILIO_ACCOUNT_SID, when this process has it. */
  parentSid?: string;
  /** A direct lookup with the parent's admin credential, when this process has one. */
  twilio?: Pick<TwilioKeyOps, 'fetchAccount'>;
  now?: () => number;
}

/**
 * The API's answer to "is this an active subaccount of the parent?", before any record or lock
 * exists (the worker asks Twilio again in create-secondary, before it creates anything).
 *
 * The API may run without Twilio credentials (`npm run api`), so its first source is the
 * subaccount inventory the workers sync from Twilio's account list, which names each entry's owner.
 * An entry the sync confirmed as an active subaccount is enough. Otherwise — unknown to the
 * inventory, confirmed by nothing but a finished rotation, or not active there — a process with
 * the admin credential asks Twilio directly (and records what it learnt in the inventory); one
 * without refuses, saying how the inventory learns of new subaccounts. Refusing what cannot be
 * confirmed is deliberate: the alternative is a record, a lock and a failure at the worker.
 */
export class SubaccountGuard implements SubaccountChecker {
  readonly #o: SubaccountGuardOptions;

  constructor(opts: SubaccountGuardOptions) {
    this.#o = opts;
  }

  async check(accountSid: string): Promise<SubaccountVerdict> {
    const { accounts, parentSid, twilio } = this.#o;
    if (parentSid !== undefined && accountSid === parentSid) return subaccountVerdict(accountSid, parentSid, undefined);
    const known = await accounts.get(accountSid);
    const confirmed = known?.ownerAccountSid ? { accountSid, ownerAccountSid: known.ownerAccountSid, status: known.status } : undefined;
    if (confirmed && confirmed.status === 'active') {
      const verdict = subaccountVerdict(accountSid, parentSid, confirmed);
      if (verdict.ok) return verdict;
    }
    if (twilio) {
      const seen = await twilio.fetchAccount(accountSid);
      if (seen && parentSid !== undefined && seen.ownerAccountSid === parentSid && seen.accountSid !== parentSid) {
        await accounts.upsertMany([{ accountSid, friendlyName: seen.friendlyName, status: seen.status, ownerAccountSid: seen.ownerAccountSid }], (this.#o.now ?? Date.now)());
      }
      return subaccountVerdict(accountSid, parentSid, seen);
    }
    const verdict = subaccountVerdict(accountSid, parentSid, confirmed);
    if (verdict.ok || verdict.code !== 'subaccount_not_found') return verdict;
    return {
      ...verdict,
      message: `${verdict.message}: the subaccount inventory (synced from Twilio by the workers every ACCOUNT_SYNC_SECONDS) does not list it, and this API process has no Twilio credential to look it up; a subaccount created since the last sync is known after the next one`,
    };
  }
}
