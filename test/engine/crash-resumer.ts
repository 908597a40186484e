import { createInterface } from 'node:readline';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { startRuntime, type Runtime } from '../../src/runtime.ts';

/**
 * The crash test's fresh worker: one process, started while the doomed workers run, that resumes
 * every crash point of a store backend. Each point has its own queue (REDIS_PREFIX); a line on
 * stdin names one, once the worker killed on it is dead, and this process then starts a worker on
 * that queue through the same runtime as `npm run worker` (config → Redis → store → Twilio →
 * worker). Nothing of the dead process is in it, and one process costs one start-up instead of
 * twelve (each is over a second of CPU).
 *
 * Prints "rotator started: crash resumer" when it reads commands, "resuming <prefix>" once a
 * worker runs on that queue; exits 1, with the reason, if one cannot start.
 */
const env = { ...process.env };
const log = createLogger(loadConfig(env).logLevel);
const runtimes: Runtime[] = [];

async function resume(prefix: string): Promise<void> {
  try {
    const cfg = loadConfig({ ...env, REDIS_PREFIX: prefix });
    runtimes.push(await startRuntime(cfg, { api: false, worker: true, log }));
    log.info({ prefix }, `resuming ${prefix}`);
  } catch (err) {
    console.error(`crash resumer could not start a worker on ${prefix}: ${(err as Error).message}`);
    process.exit(1);
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim()) void resume(line.trim());
});
process.on('SIGTERM', () => {
  Promise.all(runtimes.map((rt) => rt.close())).then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
log.info('rotator started: crash resumer');
