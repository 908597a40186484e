/**
 * Reports, in the background, which key SID an application uses (POST /v1/consumers/heartbeat):
 * once every interval, and soon after the key changes (so a rotation waiting for this consumer
 * promotes within seconds). Never blocks a request, never throws into the application: a failed
 * report is handed to `onError` (default: ignored) and the next one tries again. Its timers are
 * unref'd, so an application that is otherwise done exits.
 */
export interface HeartbeatOptions {
  /** Rotator's API origin, e.g. https://rotator.internal:8080. */
  url: string;
  /** A token of the `consumer` role (`npm run mint-token -- <name> consumer`). */
  token: string;
  /** This application instance's name: 1–128 letters, digits, "_", ".", ":", "@" or "-". */
  consumer: string;
  /** Seconds between reports while nothing changes (default 30; keep it well under CONSUMER_EXPIRY_SECONDS). */
  intervalSeconds?: number;
  /** A report that failed (network, 4xx, 5xx). */
  onError?: (err: Error) => void;
}

export interface HeartbeatTarget {
  accountSid: string;
  credential: string;
  /** The key in use now, refreshing the credential first when it is stale; undefined: nothing to report yet. */
  keySid(): Promise<string | undefined>;
}

export class HeartbeatReporter {
  readonly #opts: Required<Pick<HeartbeatOptions, 'url' | 'token' | 'consumer'>> & { intervalMs: number; onError: (err: Error) => void };
  readonly #target: HeartbeatTarget;
  #timer: NodeJS.Timeout | undefined;
  #sending: Promise<void> | undefined;
  /** A report was asked for while one was in flight: send again when it ends (coalesced, not queued). */
  #again = false;
  #closed = false;
  #lastSent: string | undefined;

  constructor(opts: HeartbeatOptions, target: HeartbeatTarget) {
    this.#opts = { url: opts.url.replace(/\/+$/, ''), token: opts.token, consumer: opts.consumer, intervalMs: Math.max(1, opts.intervalSeconds ?? 30) * 1000, onError: opts.onError ?? (() => undefined) };
    this.#target = target;
  }

  start(): void {
    this.#schedule(0);
  }

  /** The key changed: report soon, whatever the interval. */
  nudge(): void {
    if (this.#closed) return;
    this.#schedule(0);
  }

  /** The key last reported (tests, diagnostics). */
  get lastSent(): string | undefined {
    return this.#lastSent;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#sending;
  }

  #schedule(delayMs: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#tick(), delayMs);
    this.#timer.unref();
  }

  #tick(): void {
    if (this.#closed) return;
    if (this.#sending) {
      this.#again = true;
      return;
    }
    this.#sending = this.#send()
      .catch((err: unknown) => {
        try {
          this.#opts.onError(err instanceof Error ? err : new Error(String(err)));
        } catch {
          // The application's handler must not break the reporter either.
        }
      })
      .finally(() => {
        this.#sending = undefined;
        if (this.#closed) return;
        if (this.#again) {
          this.#again = false;
          this.#schedule(0);
        } else this.#schedule(this.#opts.intervalMs);
      });
  }

  async #send(): Promise<void> {
    const keySid = await this.#target.keySid();
    if (!keySid) return;
    const res = await fetch(`${this.#opts.url}/v1/consumers/heartbeat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.#opts.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ consumer: this.#opts.consumer, accountSid: this.#target.accountSid, credential: this.#target.credential, keySid }),
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      throw new Error(`heartbeat refused: HTTP ${res.status} ${text.slice(0, 300)}`);
    }
    await res.arrayBuffer();
    this.#lastSent = keySid;
  }
}
