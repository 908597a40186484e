import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startStack, testLogger, waitFor, type Stack } from '../helpers/stack.ts';
import { loadConfig } from '../../src/config.ts';
import { startRuntime, type Runtime } from '../../src/runtime.ts';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';

/** Redis going away under a running process: log lines, not stack traces on the console. */
describe('Redis stops under a running API and worker', () => {
  let stack: Stack;
  let rt: Runtime;
  let restarted: EmbeddedRedis | undefined;
  beforeAll(async () => {
    stack = await startStack({ subaccounts: 1 });
    rt = await startRuntime(loadConfig({ ...stack.env, ACCOUNT_SYNC_SECONDS: '0' }), { api: true, worker: true, log: testLogger(stack.logs) });
  });
  afterAll(async () => {
    const t0 = Date.now();
    // A close that hung in CI (60 s, twice): give up on a part after 8 s and name it.
    await rt?.close({ giveUpAfterMs: 8_000 });
    const slow = stack?.logs.text().match(/"part":"[^"]+"[^\n]*(still waiting|gave up)/g) ?? [];
    console.log(`redis-outage figures: close ${Date.now() - t0} ms${slow.length ? `; slow parts: ${slow.join(', ')}` : ''}`);
    await restarted?.stop();
    await stack?.close();
  }, 150_000);

  it('prints no stack traces while it reconnects, and reconnects', async () => {
    const printed = vi.spyOn(console, 'error');
    try {
      await stack.redis.stop();
      await new Promise((r) => setTimeout(r, 3_000));
      expect(printed.mock.calls.map((c) => String(c[0]).split('\n')[0])).toEqual([]);
      expect(stack.logs.text()).toMatch(/"msg":"redis connection error"/);
    } finally {
      printed.mockRestore();
      // Same directory, same password and socket: the runtime reconnects and can close cleanly.
      restarted = await startEmbeddedRedis({ dir: join(stack.dir, 'redis'), persist: false });
    }
    await waitFor('the runtime and its worker to reconnect', () => rt.queue.getWorkersCount().then((n) => n > 0, () => false), 30_000, 200);
  });
});
