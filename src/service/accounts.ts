import type { Logger } from 'pino';
import { isTerminal, type RotationRecord } from '../domain/rotation.ts';
import { credentialId, DEFAULT_CREDENTIAL } from '../domain/credential.ts';
import type { CredentialRepository } from '../state/credentials.ts';
import type { AccountRepository } from '../state/accounts.ts';
import type { TwilioKeyOps } from '../twilio/admin.ts';

/**
 * What the inventory does with a subaccount it has not been told to manage (MANAGE_NEW_SUBACCOUNTS):
 * `off` records it and nothing more; `label` manages its `default` credential once it has a label;
 * `all` manages every active subaccount's `default` credential (the planner bootstraps one that has
 * no current key). Managing is never undone automatically: removing the last label or switching the
 * mode back leaves a managed credential managed (stop it with pause or a policy that excludes it).
 */
export const MANAGE_MODES = ['off', 'label', 'all'] as const;
export type ManageMode = (typeof MANAGE_MODES)[number];

/** Whether the inventory manages this subaccount's `default` credential on its own. Only active subaccounts: a suspended or closed one cannot be rotated. */
export function managedOnSight(mode: ManageMode, account: { status: string; labels: readonly string[] }): boolean {
  if (account.status !== 'active') return false;
  return mode === 'all' || (mode === 'label' && account.labels.length > 0);
}

export interface SyncResult {
  /** Subaccounts Twilio listed. */
  seen: number;
  /** Of those, new to the inventory. */
  added: number;
  /** `default` credentials the sync started managing (MANAGE_NEW_SUBACCOUNTS). */
  managed: number;
  /** Active subaccounts the sync saw whose default credential is not managed (label or add them). */
  unmanaged: number;
}

export interface SyncOptions {
  /** With `credentials`, what to do with subaccounts not managed yet (default `off`). */
  manage?: ManageMode;
  credentials?: Pick<CredentialRepository, 'ensure' | 'getMany'>;
  /** Told which credentials the sync started managing (the planner schedules them). */
  onFleetChange?: (credentialIds: string[]) => Promise<void>;
}

/**
 * The inventory of managed subaccounts: what Twilio lists under the parent, refreshed by every
 * worker at start and then periodically, plus what each successful rotation changes.
 */
export async function syncAccounts(twilio: Pick<TwilioKeyOps, 'listSubaccounts'>, accounts: AccountRepository, now: number = Date.now(), opts: SyncOptions = {}): Promise<SyncResult> {
  const subs = await twilio.listSubaccounts();
  const added = await accounts.upsertMany(
    subs.map((s) => ({ accountSid: s.sid, friendlyName: s.friendlyName, status: s.status, ownerAccountSid: s.ownerAccountSid })),
    now,
  );
  let managed = 0;
  let unmanaged = 0;
  const mode = opts.manage ?? 'off';
  if (opts.credentials) {
    const creds = opts.credentials;
    const started: string[] = [];
    const active = subs.filter((s) => s.status === 'active').map((s) => s.sid);
    // A page at a time: one MGET of accounts (labels), one of credentials, then the ensures in flight together.
    for (let i = 0; i < active.length; i += 500) {
      const sids = active.slice(i, i + 500);
      const [records, existing] = await Promise.all([accounts.getMany(sids), creds.getMany(sids.map((sid) => credentialId({ accountSid: sid, name: DEFAULT_CREDENTIAL })))]);
      const labels = new Map(records.map((r) => [r.accountSid, r.labels]));
      const missing = sids.filter((_, j) => existing[j] === undefined);
      const wanted = missing.filter((sid) => managedOnSight(mode, { status: 'active', labels: labels.get(sid) ?? [] }));
      unmanaged += missing.length - wanted.length;
      const created = await Promise.all(wanted.map((sid) => creds.ensure({ accountSid: sid, name: DEFAULT_CREDENTIAL }, { now })));
      wanted.forEach((sid, j) => {
        if (created[j]) started.push(credentialId({ accountSid: sid, name: DEFAULT_CREDENTIAL }));
      });
    }
    managed = started.length;
    if (started.length && opts.onFleetChange) await opts.onFleetChange(started);
  }
  return { seen: subs.length, added, managed, unmanaged };
}

/** Run the sync now and every `intervalMs` (0: only now). Failures are logged and retried at the next tick. */
export function startAccountSync(opts: { twilio: Pick<TwilioKeyOps, 'listSubaccounts'>; accounts: AccountRepository; log: Logger; intervalMs: number } & SyncOptions): { stop(): void; ran: Promise<void> } {
  let told = false;
  const run = async (): Promise<void> => {
    try {
      const mode = opts.manage ?? 'off';
      const r = await syncAccounts(opts.twilio, opts.accounts, Date.now(), opts);
      opts.log.info({ ...r, manage: mode }, 'subaccount inventory synced');
      // Once per process: an operator upgrading with the default `off` learns why nothing rotates them.
      if (r.unmanaged > 0 && opts.credentials && !told) {
        told = true;
        const how = mode === 'label' ? 'label them (PATCH /v1/accounts/{sid}), add them (POST /v1/accounts/{sid}/credentials) or set MANAGE_NEW_SUBACCOUNTS=all' : 'add them (POST /v1/accounts/{sid}/credentials), or set MANAGE_NEW_SUBACCOUNTS=label (manage labelled ones) or all';
        opts.log.info(`${r.unmanaged} active subaccounts are in the inventory but not managed (MANAGE_NEW_SUBACCOUNTS=${mode}): nothing rotates them until you ${how}`);
      }
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
