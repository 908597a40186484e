import type { Logger } from 'pino';
import { isTerminal, type RotationRecord } from '../domain/rotation.ts';
import type { CredentialRepository } from '../state/credentials.ts';
import { DEFAULT_CREDENTIAL } from '../domain/credential.ts';
import type { AccountRepository } from '../state/accounts.ts';
import type { TwilioKeyOps } from '../twilio/admin.ts';

/**
 * The inventory of managed subaccounts: what Twilio lists under the parent, refreshed by every
 * worker at start and then periodically, plus what each successful rotation changes.
 */
export async function syncAccounts(twilio: Pick<TwilioKeyOps, 'listSubaccounts'>, accounts: AccountRepository, now: number = Date.now()): Promise<{ seen: number; added: number }> {
  const subs = await twilio.listSubaccounts();
  const added = await accounts.upsertMany(
    subs.map((s) => ({ accountSid: s.sid, friendlyName: s.friendlyName, status: s.status, ownerAccountSid: s.ownerAccountSid })),
    now,
  );
  return { seen: subs.length, added };
}

/** Run the sync now and every `intervalMs` (0: only now). Failures are logged and retried at the next tick. */
export function startAccountSync(opts: { twilio: Pick<TwilioKeyOps, 'listSubaccounts'>; accounts: AccountRepository; log: Logger; intervalMs: number }): { stop(): void; ran: Promise<void> } {
  const run = async (): Promise<void> => {
    try {
      const r = await syncAccounts(opts.twilio, opts.accounts);
      opts.log.info(r, 'subaccount inventory synced');
    } catch (err) {
      opts.log.warn({ err: { message: (err as Error).message, code: (err as { code?: string }).code } }, 'subaccount inventory sync failed; will retry');
    }
  };
  const ran = run();
  const timer = opts.intervalMs > 0 ? setInterval(() => void run(), opts.intervalMs) : undefined;
  timer?.unref();
  return { stop: () => timer && clearInterval(timer), ran };
}

/**
 * A finished rotation (not a dry run) is its credential's last; a success makes its new key the
 * current one. The key's creation time is when create-secondary completed (Twilio's date_created
 * is within that step); the compliance report refreshes it from Twilio's own list.
 */
export async function recordFinishedRotation(credentials: CredentialRepository, accounts: AccountRepository, rec: RotationRecord): Promise<void> {
  if (!isTerminal(rec.status) || rec.dryRun) return;
  const created = rec.history.find((h) => h.step === 'create-secondary' && h.status === 'completed')?.at;
  await credentials.recordFinished(rec, created ? Date.parse(created) : null);
  // The subaccount's record shows its `default` credential's key, as earlier versions did.
  if (rec.status === 'succeeded' && rec.newKeySid && rec.credential === DEFAULT_CREDENTIAL) await accounts.recordRotation(rec.accountSid, rec.newKeySid, rec.finishedAt ?? rec.updatedAt);
}
