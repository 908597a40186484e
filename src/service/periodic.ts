/**
 * A background pass run again and again: the first after `firstMs`, each next one `everyMs` after
 * the one before ended — never two at once, however long a pass takes. A pass that throws is
 * reported to `onError` and the loop goes on. `stop()` ends the loop and waits for a pass that is
 * running. Timers are unref'd: the loop never keeps a process alive.
 */
export interface Periodic {
  stop(): Promise<void>;
}

export function runPeriodically(pass: () => Promise<unknown>, opts: { firstMs: number; everyMs: number; onError(err: Error): void }): Periodic {
  let running: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const schedule = (ms: number): void => {
    timer = setTimeout(tick, ms);
    timer.unref();
  };
  const tick = (): void => {
    running = pass().catch((err: Error) => opts.onError(err));
    void running.finally(() => {
      if (timer) schedule(opts.everyMs);
    });
  };
  schedule(opts.firstMs);
  return {
    async stop() {
      const t = timer;
      timer = undefined;
      if (t) clearTimeout(t);
      await running.catch(() => undefined);
    },
  };
}
