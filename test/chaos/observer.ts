import type { SecretStore } from '../../providers/secret-store.ts';
import type { TwilioEmulator } from '../emulators/twilio/server.ts';

const DELETE_KEY = /\/Accounts\/(AC[0-9a-f]{32})\/Keys\/(SK[0-9a-f]{32})\.json$/;

/**
 * Watches what applications could be handed, and what Twilio deletes:
 *  - every `everyMs` it reads each subaccount's current key from the store, as a consumer would,
 *    remembering for each key the start of the latest read that returned it;
 *  - it follows the emulator's request log for successful key deletions.
 *
 * Rotator promises that a key is deleted only after the store stopped offering it *and* a drain
 * passed. A read that started at `s` and returned key K proves the store still offered K at or
 * after `s`, so the deletion of K must come at `s + drain` or later. The emulator logs a request
 * after handling it, so the logged time is never earlier than the deletion: no tolerance is needed.
 */
export class KeyObserver {
  /** keySid → start time of the latest read that returned it as current. */
  readonly lastSeenCurrent = new Map<string, number>();
  /** keySid → when Twilio deleted it (the emulator's log time). */
  readonly deletedAt = new Map<string, { at: number; accountSid: string }>();
  /** keySid → when Twilio refused it (401), for judging consumers' 401s by Twilio's own clock. */
  readonly refusedAt = new Map<string, number[]>();
  samples = 0;
  readErrors = 0;
  #authSeq = 0;
  #running = false;
  #loops: Promise<void>[] = [];

  constructor(
    private readonly opts: { store: SecretStore; pathOf: (sid: string) => string; accounts: string[]; emu: TwilioEmulator; everyMs: number },
  ) {}

  start(): void {
    this.#running = true;
    this.#loops = [this.#sampleLoop(), this.#deletionLoop()];
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
    this.#followDeletions();
  }

  async #sampleLoop(): Promise<void> {
    while (this.#running) {
      const started = Date.now();
      await Promise.all(
        [...this.opts.accounts].map(async (sid) => {
          const at = Date.now();
          try {
            const cur = await this.opts.store.readCurrent(this.opts.pathOf(sid));
            this.samples++;
            if (cur) this.lastSeenCurrent.set(cur.apiKeySid, Math.max(this.lastSeenCurrent.get(cur.apiKeySid) ?? 0, at));
          } catch {
            this.readErrors++;
          }
        }),
      );
      await new Promise((r) => setTimeout(r, Math.max(0, this.opts.everyMs - (Date.now() - started))));
    }
  }

  async #deletionLoop(): Promise<void> {
    while (this.#running) {
      this.#followDeletions();
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  #followDeletions(): void {
    for (const e of this.opts.emu.authLog(this.#authSeq)) {
      this.#authSeq = e.seq;
      if (e.status === 401 && e.principal.startsWith('SK')) this.refusedAt.set(e.principal, [...(this.refusedAt.get(e.principal) ?? []), e.at]);
      if (e.method !== 'DELETE' || e.status !== 204) continue;
      const m = DELETE_KEY.exec(e.path);
      if (m && !this.deletedAt.has(m[2]!)) this.deletedAt.set(m[2]!, { at: e.at, accountSid: m[1]! });
    }
  }

  /** Every deletion that came too early: while the store offered the key, or within the drain after. */
  violations(drainMs: number): string[] {
    const out: string[] = [];
    for (const [sid, del] of this.deletedAt) {
      const seen = this.lastSeenCurrent.get(sid);
      if (seen === undefined) continue;
      if (seen >= del.at) {
        out.push(`key ${sid} of ${del.accountSid} was deleted at Twilio at ${iso(del.at)} while the store still offered it (read as current at ${iso(seen)})`);
      } else if (del.at - seen < drainMs) {
        out.push(`key ${sid} of ${del.accountSid} was deleted at Twilio ${del.at - seen} ms after the store last offered it (read at ${iso(seen)}), before the ${drainMs} ms drain ended`);
      }
    }
    return out;
  }
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
