import { checkSprawlKeyDelete, type SprawlDeleteVerdict, type SubaccountFacts } from '../domain/compliance.ts';
import { isTransient } from '../domain/errors.ts';
import type { AccountRepository } from '../state/accounts.ts';
import type { CredentialRepository } from '../state/credentials.ts';
import type { ComplianceFacts } from '../state/compliance.ts';
import type { TwilioKeyOps } from '../twilio/admin.ts';
import type { ComplianceScanner } from './compliance-scan.ts';

/**
 * An admin deleting a sprawl key (a key at Twilio that Rotator did not create and that no store
 * stage holds). The report may be hours old, so the decision is made on facts read right before the
 * delete: the subaccount's keys listed at Twilio now, the stages of every credential of the
 * subaccount (and of its `default` path) read from the store now, and the rotations on record. A
 * key any of those stages holds, or one Rotator created for a rotation it knows, is refused.
 */

export type SprawlDeleteResult =
  | { ok: true; result: 'deleted' | 'absent' }
  | { ok: false; status: 400 | 404 | 409 | 502 | 503; code: string; reason: string };

export interface SprawlKeyDeps {
  accounts: Pick<AccountRepository, 'get'>;
  credentials: Pick<CredentialRepository, 'forAccount'>;
  /** Absent, like `twilio`, where this API process has no Twilio credential. */
  scanner?: Pick<ComplianceScanner, 'gather'>;
  facts: Pick<ComplianceFacts, 'put'>;
  /** Absent where this API process has no Twilio credential. */
  twilio?: Pick<TwilioKeyOps, 'deleteKey'>;
  keyNamePrefix: string;
}

export async function deleteSprawlKey(d: SprawlKeyDeps, accountSid: string, request: { keySid: unknown; confirm: unknown }): Promise<SprawlDeleteResult> {
  // Input first (400): no Twilio or store call for a request that cannot be right.
  const input = checkSprawlKeyDelete(request, { accountSid, friendlyName: '', status: 'active', keys: [], stages: [], keyNamePrefix: d.keyNamePrefix, rotationIds: [] });
  if (!input.ok && input.status === 400) return input;
  if (!d.twilio || !d.scanner) return { ok: false, status: 503, code: 'twilio_unavailable', reason: 'this API process has no Twilio credential (TWILIO_ACCOUNT_SID and an admin credential): send the request to one that has, e.g. npm start' };
  const [account, creds] = await Promise.all([d.accounts.get(accountSid), d.credentials.forAccount(accountSid)]);
  if (!account && creds.length === 0) return { ok: false, status: 404, code: 'subaccount_not_found', reason: `${accountSid} is not a subaccount Rotator knows (neither in the inventory nor with a managed credential)` };
  const fresh = await d.scanner.gather(accountSid, account, creds.map((c) => c.name));
  const sub: SubaccountFacts = { accountSid, friendlyName: fresh.friendlyName, status: fresh.status, keys: fresh.keys, stages: fresh.stages, keyNamePrefix: d.keyNamePrefix, rotationIds: fresh.knownRotationIds };
  const verdict: SprawlDeleteVerdict = checkSprawlKeyDelete(request, sub);
  if (!verdict.ok) {
    // What was just read is the freshest view of the subaccount: the report shows it.
    await d.facts.put(fresh);
    return verdict.code === 'keys_unknown' ? { ...verdict, reason: `${verdict.reason}${fresh.note ? ` (${fresh.note})` : ''}` } : verdict;
  }
  const keySid = request.keySid as string;
  let result: 'deleted' | 'absent';
  try {
    result = await d.twilio.deleteKey(accountSid, keySid);
  } catch (err) {
    const reason = `Twilio did not delete ${keySid}: ${(err as Error).message}`;
    return isTransient(err) ? { ok: false, status: 503, code: 'twilio_unavailable', reason: `${reason}; retry shortly` } : { ok: false, status: 502, code: 'twilio_delete_failed', reason };
  }
  const keys = (fresh.keys ?? []).filter((k) => k.sid !== keySid);
  await d.facts.put({ ...fresh, keys, sprawl: Math.max(0, fresh.sprawl - 1) });
  return { ok: true, result };
}
