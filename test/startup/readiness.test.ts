import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { startRuntime, type Runtime } from '../../src/runtime.ts';
import { cachedCheck } from '../../src/startup.ts';
import { testLogger, waitFor } from '../helpers/stack.ts';
import { startApiHarness, type ApiHarness } from '../api/support.ts';

/**
 * /readyz covers Twilio (the admin credential) and says when no worker serves the queue; it answers
 * ok/fail per component, the reason in the log. Issue 12, item 13.
 */
describe('/readyz', () => {
  let h: ApiHarness;
  let worker: Runtime | undefined;
  beforeAll(async () => {
    h = await startApiHarness({ worker: false, logLevel: 'info' });
  });
  afterAll(async () => {
    await worker?.close();
    await h?.close();
  });
  const readyz = async () => {
    const res = await h.app.inject({ method: 'GET', url: '/readyz' });
    return { status: res.statusCode, body: res.json() as { status: string; checks: Record<string, string> } };
  };

  it('an API with no worker on the queue is degraded (still 200: reads work), and says so', async () => {
    expect(await readyz()).toEqual({ status: 200, body: { status: 'degraded', checks: { redis: 'ok', store: 'ok', twilio: 'ok', worker: 'fail' } } });
    expect(h.stack.logs.text()).toMatch(/"check":"worker".*no worker is connected to the rotation queue.*"msg":"readiness: worker failing"/);
  });

  it('is ready once a worker process serves the queue', async () => {
    worker = await startRuntime(loadConfig({ ...h.stack.env, ACCOUNT_SYNC_SECONDS: '0' }), { api: false, worker: true, log: testLogger(h.stack.logs) });
    await waitFor('the worker to be counted', async () => (await readyz()).body.status === 'ready', 30_000);
    expect(await readyz()).toEqual({ status: 200, body: { status: 'ready', checks: { redis: 'ok', store: 'ok', twilio: 'ok', worker: 'ok' } } });
  });

});

describe('/readyz with the Twilio admin credential refused after start-up', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({ worker: true, logLevel: 'info' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('is not ready; the public answer carries no error text, the log says why', async () => {
    // Revoked before /readyz first asks (a success is remembered for a minute).
    h.stack.emu.revokeCredential(h.stack.emu.parent.accountSid);
    const res = await h.app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toEqual({ status: 'not_ready', checks: { redis: 'ok', store: 'ok', twilio: 'fail', worker: expect.stringMatching(/^(ok|fail)$/) } });
    expect(h.stack.logs.text()).toMatch(/"check":"twilio".*Twilio rejected the admin credential.*"msg":"readiness: twilio failing"/);
  });
});

describe('cachedCheck (how often /readyz asks Twilio)', () => {
  it('asks again only after okMs following a success, failMs following a failure', async () => {
    let now = 0;
    let calls = 0;
    let fail = false;
    const check = cachedCheck(
      async () => {
        calls++;
        if (fail) throw new Error('refused');
      },
      { okMs: 60_000, failMs: 10_000, now: () => now },
    );
    await check();
    await check();
    expect(calls).toBe(1);
    fail = true;
    now = 59_999;
    await check();
    expect(calls).toBe(1);
    now = 60_000;
    await expect(check()).rejects.toThrow('refused');
    now = 69_999;
    await expect(check()).rejects.toThrow('refused');
    expect(calls).toBe(2);
    fail = false;
    now = 70_000;
    await check();
    expect(calls).toBe(3);
  });
});
