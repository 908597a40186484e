import twilio from 'twilio';
import type { SecretStore } from '../../providers/secret-store.ts';
import { isAuthTokenId, type TwilioApiKeyCredential } from '../../src/domain/secret.ts';

export interface ConsumerStats {
  requests: number;
  ok: number;
  unauthorized: number;
  otherErrors: number;
  /** Store reads that failed: the consumer then sends nothing until it can read again. */
  storeErrors: number;
  keysUsed: Set<string>;
  /** Each 401 with the key that got it, for diagnosis (`principal`: the Basic username Twilio saw, an AC for an Auth Token). */
  failures: Array<{ accountSid: string; keySid: string; principal?: string; at: number; readAt: number }>;
}

/**
 * An application as Rotator's users run them: it reads its Twilio credential from the store,
 * caches it for at most `refreshMs`, and sends traffic with it continuously (real twilio client,
 * a Standard or restricted key, or the account's Auth Token, Messages API).
 */
export class SimulatedConsumer {
  readonly stats: ConsumerStats = { requests: 0, ok: 0, unauthorized: 0, otherErrors: 0, storeErrors: 0, keysUsed: new Set(), failures: [] };
  readonly #cache = new Map<string, { cred: TwilioApiKeyCredential; readAt: number }>();
  #running = false;
  #loop?: Promise<void>;

  constructor(
    private readonly opts: {
      store: SecretStore;
      pathOf: (sid: string) => string;
      accounts: string[];
      refreshMs: number;
      baseUrl: string;
      pauseMs?: number;
      /** Told the key it uses after every read of the store, before any request with it (a consumer heartbeat). */
      onKey?: (accountSid: string, keySid: string) => Promise<void>;
    },
  ) {}

  start(): void {
    this.#running = true;
    this.#loop = this.#run();
  }

  async stop(): Promise<ConsumerStats> {
    this.#running = false;
    await this.#loop;
    return this.stats;
  }

  async #credential(sid: string): Promise<{ cred: TwilioApiKeyCredential; readAt: number } | undefined> {
    const cached = this.#cache.get(sid);
    if (cached && Date.now() - cached.readAt < this.opts.refreshMs) return cached;
    const readAt = Date.now();
    const cred = await this.opts.store.readCurrent(this.opts.pathOf(sid));
    if (!cred) return undefined;
    const entry = { cred, readAt };
    await this.opts.onKey?.(sid, cred.apiKeySid);
    this.#cache.set(sid, entry);
    return entry;
  }

  async #run(): Promise<void> {
    const inner = new twilio.RequestClient({ keepAlive: true });
    const httpClient = { request: (o: { uri: string }) => inner.request({ ...(o as object as { method: "get" }), uri: o.uri.replace(/^https:\/\/api\.twilio\.com/, this.opts.baseUrl) }) };
    let i = 0;
    while (this.#running) {
      const sid = this.opts.accounts[i++ % this.opts.accounts.length] as string;
      let entry: { cred: TwilioApiKeyCredential; readAt: number } | undefined;
      try {
        entry = await this.#credential(sid);
      } catch {
        // The store cannot be read: a credential older than the refresh interval is never used
        // (the drain contract covers applications that re-read), so send nothing until it can.
        this.stats.storeErrors++;
      }
      if (!entry) {
        await new Promise((r) => setTimeout(r, this.opts.pauseMs ?? 5));
        continue;
      }
      const { cred, readAt } = entry;
      // An Auth Token credential authenticates as the account itself (its apiKeySid is a fingerprint).
      const username = isAuthTokenId(cred.apiKeySid) ? sid : cred.apiKeySid;
      const client = twilio(username, cred.apiKeySecret.reveal(), { accountSid: sid, httpClient: httpClient as never });
      this.stats.requests++;
      this.stats.keysUsed.add(cred.apiKeySid);
      try {
        await client.messages.create({ to: '+15005550006', from: '+15005550001', body: 'ping' });
        this.stats.ok++;
      } catch (err) {
        if ((err as { status?: number }).status === 401) {
          this.stats.unauthorized++;
          this.stats.failures.push({ accountSid: sid, keySid: cred.apiKeySid, principal: username, at: Date.now(), readAt });
        } else this.stats.otherErrors++;
      }
      await new Promise((r) => setTimeout(r, this.opts.pauseMs ?? 5));
    }
  }
}

/**
 * The consumers' 401s that break the zero-downtime contract: those where Twilio refused a
 * credential the consumer had read from the store at most a drain earlier (Twilio's log time is
 * when it refused it). A request that reached Twilio later than that — the test process was
 * starved between the consumer's freshness check and its request, as on a loaded host — used a
 * credential older than the contract covers, and is counted apart (`late`), as the chaos run does.
 */
export function contractFailures(
  failures: ConsumerStats['failures'],
  emu: { authLog(since?: number): Array<{ status: number; principal: string; at: number }> },
  drainMs: number,
): { within: ConsumerStats['failures']; late: number } {
  const refusals = new Map<string, number[]>();
  for (const e of emu.authLog(0)) if (e.status === 401) refusals.set(e.principal, [...(refusals.get(e.principal) ?? []), e.at]);
  const within: ConsumerStats['failures'] = [];
  let late = 0;
  for (const f of failures) {
    const refused = (refusals.get(f.principal ?? f.keySid) ?? []).filter((t) => t <= f.at).at(-1) ?? f.at;
    if (refused - f.readAt > drainMs) late++;
    else within.push(f);
  }
  return { within, late };
}
