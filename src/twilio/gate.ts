/**
 * A cap on concurrent Twilio requests. Twilio counts concurrency per account (20429 past about 100),
 * so the cap must hold across all workers and processes: the Redis-backed gate does that; the
 * local one is for a single process and tests.
 */
export interface ConcurrencyGate {
  acquire(): Promise<() => void>;
}

export class LocalGate implements ConcurrencyGate {
  #active = 0;
  readonly #waiters: Array<() => void> = [];

  constructor(readonly limit: number) {}

  acquire(): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = (): void => {
        this.#active++;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.#active--;
          this.#waiters.shift()?.();
        });
      };
      if (this.#active < this.limit) grant();
      else this.#waiters.push(grant);
    });
  }
}

export const UNLIMITED: ConcurrencyGate = { acquire: async () => () => undefined };
