import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { classifyKey, type ComplianceSummary, type StoreStages, type TwilioKeyFacts } from '../domain/compliance.ts';
import { DEFAULT_CREDENTIAL } from '../domain/credential.ts';
import type { SecretStore } from '../../providers/secret-store.ts';
import type { AccountRecord, AccountRepository } from '../state/accounts.ts';
import type { CredentialRepository, ManagedCredential } from '../state/credentials.ts';
import type { PolicyRepository } from '../state/policies.ts';
import type { ComplianceFacts, LastScan, ScannedSubaccount } from '../state/compliance.ts';
import type { TwilioKeyOps } from '../twilio/admin.ts';
import { judgeBatch, type ComplianceReader } from './compliance.ts';
import { runPeriodically, type Periodic } from './periodic.ts';

/**
 * The compliance scan: what GET /v1/compliance reports on, gathered by workers because it costs one
 * Twilio request per subaccount. For every subaccount (the inventory's, and any with a managed
 * credential) it lists the keys at Twilio — through the admin client, so the Redis-wide Twilio cap
 * holds — reads the store stages of each credential (and of the `default` path, which every
 * subaccount may hold without a record), classifies the keys, and stores the facts with the time
 * it read them. It refreshes each credential's key date (credentials.setKeyCreated) and keeps the
 * report's totals as of the scan's end. One scan at a time across all processes (a Redis lock
 * renewed while it runs). A subaccount whose keys could not be listed is stored as such (keys:
 * null, with the reason), never as clean; a closed one is not listed at all (Twilio refuses it).
 */

export interface ScanDeps {
  facts: ComplianceFacts;
  reader: Pick<ComplianceReader, 'groups'>;
  accounts: Pick<AccountRepository, 'getMany'>;
  credentials: Pick<CredentialRepository, 'getMany' | 'forAccount' | 'setKeyCreated'>;
  policies: Pick<PolicyRepository, 'catalog'>;
  twilio: Pick<TwilioKeyOps, 'listKeys'>;
  store: Pick<SecretStore, 'read'>;
  secretPath: (accountSid: string, name: string) => string;
  keyNamePrefix: string;
  knownRotations: (accountSid: string, ids: readonly string[]) => Promise<Set<string>>;
  log: Logger;
  now?: () => number;
  /** Subaccounts scanned at once (each is one Twilio list and a few store reads); the Twilio cap still applies. */
  concurrency?: number;
  /** The lock's time to live; renewed at a third of it while the scan runs. */
  lockMs?: number;
}

export class ComplianceScanner {
  readonly #d: ScanDeps;
  readonly #now: () => number;

  constructor(deps: ScanDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  /**
   * What a subaccount holds now: its keys at Twilio and the stages of its credentials. Also what
   * the sprawl delete re-checks right before it deletes. Twilio errors become `keys: null` with the
   * reason; a store that cannot be read leaves the keys unclassifiable, so they are dropped too.
   */
  async gather(accountSid: string, account: AccountRecord | undefined, credentialNames: readonly string[]): Promise<ScannedSubaccount> {
    const status = account?.status ?? 'active';
    const scannedAtMs = this.#now();
    const names = [...new Set([DEFAULT_CREDENTIAL, ...credentialNames])].sort();
    let note: string | null = null;
    let stages: StoreStages[] = [];
    try {
      stages = await Promise.all(
        names.map(async (name) => {
          const e = await this.#d.store.read(this.#d.secretPath(accountSid, name));
          return { name, current: e.current?.credential.apiKeySid ?? null, pending: e.pending?.credential.apiKeySid ?? null, previous: e.previous?.credential.apiKeySid ?? null };
        }),
      );
    } catch (err) {
      note = `the store could not be read (${(err as Error).message})`;
    }
    let keys: TwilioKeyFacts[] | null = null;
    if (note === null && status === 'closed') note = 'closed at Twilio';
    else if (note === null && status === 'suspended') note = 'suspended at Twilio (its keys cannot be listed until it is reactivated)';
    else if (note === null) {
      try {
        keys = (await this.#d.twilio.listKeys(accountSid)).map((k) => ({ sid: k.sid, friendlyName: k.friendlyName, dateCreated: k.dateCreated ? k.dateCreated.getTime() : scannedAtMs }));
      } catch (err) {
        note = `Twilio did not list them (${(err as { code?: string }).code ?? 'error'}: ${(err as Error).message})`;
      }
    }
    const mine = `${this.#d.keyNamePrefix}:`;
    const named = (keys ?? []).filter((k) => k.friendlyName.startsWith(mine)).map((k) => k.friendlyName.slice(mine.length));
    const known = [...(named.length ? await this.#d.knownRotations(accountSid, named) : new Set<string>())].sort();
    let sprawl = 0;
    let leftover = 0;
    const sub = { stages, keyNamePrefix: this.#d.keyNamePrefix, rotationIds: known };
    for (const k of keys ?? []) {
      const cls = classifyKey(k, sub).kind;
      if (cls === 'sprawl') sprawl++;
      else if (cls === 'rotator') leftover++;
    }
    return { accountSid, friendlyName: account?.friendlyName ?? '', status, scannedAtMs, keys, note, stages, knownRotationIds: known, sprawl, leftover };
  }

  /** Run one scan unless another process is running one: 'busy' then. */
  async scanOnce(trigger = 'schedule'): Promise<LastScan | 'busy'> {
    const lockMs = this.#d.lockMs ?? 60_000;
    const startedAtMs = this.#now();
    const token = `${startedAtMs}:${hostname()}/${process.pid}/${randomUUID()}`;
    if (!(await this.#d.facts.lock(token, lockMs))) return 'busy';
    let lost = false;
    const renew = setInterval(() => {
      this.#d.facts.renew(token, lockMs).then(
        (ok) => void (lost ||= !ok),
        () => undefined,
      );
    }, Math.max(100, Math.floor(lockMs / 3)));
    renew.unref();
    try {
      this.#d.log.info({ trigger }, 'compliance scan started');
      const result = await this.#scan(startedAtMs, () => lost);
      await this.#d.facts.setLastScan(result);
      this.#d.log.info({ subaccounts: result.subaccounts, notListed: result.notListed, sprawlKeys: result.summary.sprawlKeys, overdue: result.summary.overdue, ms: result.durationMs }, 'compliance scan finished');
      return result;
    } finally {
      clearInterval(renew);
      await this.#d.facts.unlock(token).catch(() => undefined);
    }
  }

  async #scan(startedAtMs: number, lost: () => boolean): Promise<LastScan> {
    const catalog = await this.#d.policies.catalog();
    const seen = new Set<string>();
    let listed = 0;
    let notListed = 0;
    let credentialCount = 0;
    const totals: ComplianceSummary[] = [];
    for await (const groups of this.#d.reader.groups(100)) {
      if (lost()) throw new Error('compliance scan lost its lock (another process took over)');
      const sids = groups.map((g) => g.accountSid);
      const ids = groups.flatMap((g) => g.credentialIds);
      const [accountList, credList] = await Promise.all([this.#d.accounts.getMany(sids), this.#d.credentials.getMany(ids)]);
      const accounts = new Map(accountList.map((a) => [a.accountSid, a]));
      const creds = credList.filter((c): c is ManagedCredential => c !== undefined);
      const scanned = new Map<string, ScannedSubaccount>();
      await eachLimited(groups, this.#d.concurrency ?? 4, async (g) => {
        const names = creds.filter((c) => c.accountSid === g.accountSid).map((c) => c.name);
        const f = await this.gather(g.accountSid, accounts.get(g.accountSid), names);
        await this.#d.facts.put(f);
        scanned.set(g.accountSid, f);
      });
      for (const f of scanned.values()) {
        seen.add(f.accountSid);
        if (f.keys === null) notListed++;
        else listed++;
      }
      await this.#refreshKeyDates(creds, scanned);
      credentialCount += creds.length;
      totals.push(judgeBatch({ credentials: creds, accounts, scanned, sids, catalog, keyNamePrefix: this.#d.keyNamePrefix, now: this.#now() }).summary);
    }
    await this.#d.facts.removeExcept(seen);
    const finishedAtMs = this.#now();
    return {
      startedAt: new Date(startedAtMs).toISOString(),
      finishedAt: new Date(finishedAtMs).toISOString(),
      durationMs: finishedAtMs - startedAtMs,
      subaccounts: seen.size,
      listed,
      notListed,
      credentials: credentialCount,
      summary: addSummaries(totals),
    };
  }

  /** Twilio's date_created of each credential's current key, where the store still holds the key the record names. */
  async #refreshKeyDates(creds: readonly ManagedCredential[], scanned: ReadonlyMap<string, ScannedSubaccount>): Promise<void> {
    for (const c of creds) {
      const f = scanned.get(c.accountSid);
      if (!f?.keys || c.currentKeySid === null) continue;
      const stage = f.stages.find((s) => s.name === c.name);
      if (stage?.current !== c.currentKeySid) continue;
      const key = f.keys.find((k) => k.sid === c.currentKeySid);
      if (key && key.dateCreated !== c.keyCreatedAtMs) await this.#d.credentials.setKeyCreated(c, key.sid, key.dateCreated);
    }
  }
}

/** The totals of a whole scan from those of its batches. */
export function addSummaries(parts: readonly ComplianceSummary[]): ComplianceSummary {
  const s: ComplianceSummary = { credentials: 0, assessed: 0, withinPolicy: 0, withinPolicyPercent: null, overdue: 0, oldestKeyAgeDays: null, oldestKey: null, subaccounts: 0, closedSubaccounts: 0, sprawlKeys: 0, leftoverKeys: 0 };
  for (const p of parts) {
    s.credentials += p.credentials;
    s.assessed += p.assessed;
    s.withinPolicy += p.withinPolicy;
    s.overdue += p.overdue;
    s.subaccounts += p.subaccounts;
    s.closedSubaccounts += p.closedSubaccounts;
    s.sprawlKeys += p.sprawlKeys;
    s.leftoverKeys += p.leftoverKeys;
    if (p.oldestKeyAgeDays !== null && (s.oldestKeyAgeDays === null || p.oldestKeyAgeDays > s.oldestKeyAgeDays)) {
      s.oldestKeyAgeDays = p.oldestKeyAgeDays;
      s.oldestKey = p.oldestKey;
    }
  }
  // As the domain rounds it: down, so that 100 means every one.
  s.withinPolicyPercent = s.assessed === 0 ? null : Math.floor((s.withinPolicy * 1000) / s.assessed) / 10;
  return s;
}

/**
 * Scans on a schedule and on request, in a worker: every `pollMs` it asks Redis whether a scan is
 * due — `intervalMs` after the last one finished, or requested (POST /v1/compliance/scan) since the
 * last one started — and tries to run it (the lock lets one process through). When no scan has
 * ever finished, the first waits `firstDelayMs` after start: start-up traffic goes first, and a
 * worker restarting in a loop does not list every subaccount each time. `intervalMs` 0: on request only.
 */
export function startComplianceScans(opts: { scanner: ComplianceScanner; facts: ComplianceFacts; log: Logger; intervalMs: number; pollMs?: number; firstDelayMs?: number; now?: () => number }): Periodic {
  const now = opts.now ?? Date.now;
  const startedAt = now();
  const firstDelay = opts.firstDelayMs ?? Math.min(opts.intervalMs, 10 * 60_000);
  // After a failed scan (Redis gone, the lock lost), wait this long before trying again.
  const retryMs = 60_000;
  let failedAt = -Infinity;
  const tick = async (): Promise<void> => {
    if (now() - failedAt < retryMs) return;
    const [last, requested, busy] = await Promise.all([opts.facts.lastScan(), opts.facts.requestedAt(), opts.facts.running()]);
    if (busy) return;
    const lastStart = last ? Date.parse(last.startedAt) : null;
    const byRequest = requested !== null && (lastStart === null || requested > lastStart);
    const bySchedule = opts.intervalMs > 0 && (last ? now() - Date.parse(last.finishedAt) >= opts.intervalMs : now() - startedAt >= firstDelay);
    if (!byRequest && !bySchedule) return;
    await opts.scanner.scanOnce(byRequest ? 'request' : 'schedule');
  };
  const pollMs = opts.pollMs ?? 1_000;
  return runPeriodically(tick, {
    firstMs: pollMs,
    everyMs: pollMs,
    onError(err) {
      failedAt = now();
      opts.log.warn({ err: { message: err.message } }, 'compliance scan failed; trying again in a minute');
    },
  });
}

async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}
