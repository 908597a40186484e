import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';
import { startRuntime, type Runtime } from '../../src/runtime.ts';
import { openSecretStore } from '../../src/stores.ts';
import { mintToken } from '../../src/api/tokens.ts';
import { StoreError } from '../../providers/store-error.ts';
import { spawnRotator, type RotatorProcess } from '../helpers/processes.ts';
import { startStack, waitFor, type Stack } from '../helpers/stack.ts';
import { bearer } from './support.ts';

const DETAIL = 'cannot reach Vault at https://vault.internal.example:8200 to read /srv/rotator/secrets/twilio';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/**
 * /readyz is public (load balancers, probes): it says which component is not ready, never why —
 * an error text names file paths and hosts. The reason goes to the log and to admins.
 */
describe('readiness: public ok/not ok, the reasons for admins', () => {
  let stack: Stack;
  let rt: Runtime;
  let storeBroken = false;
  const admin = mintToken('sec', 'admin');
  const operator = mintToken('ci', 'operator');

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 1 });
    const cfg = loadConfig({ ...stack.env, API_TOKENS: [admin.entry, operator.entry].join(','), ACCOUNT_SYNC_SECONDS: '0' });
    const store = await openSecretStore(cfg.store);
    const realCheck = store.check.bind(store);
    store.check = async () => {
      if (storeBroken) throw new StoreError('store_unavailable', DETAIL);
      return realCheck();
    };
    rt = await startRuntime(cfg, { api: true, worker: false, log: createLogger('info', stack.logs), store });
    // Broken after start-up (a store failing its check at start-up stops the process instead).
    storeBroken = true;
  });
  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  it('GET /readyz says which component is not ready and nothing more; the log says why, once', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await rt.app!.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      // No worker runs in this process: `worker` fails too, which alone would only make it degraded.
      expect(res.json()).toEqual({ status: 'not_ready', checks: { redis: 'ok', store: 'fail', twilio: 'ok', worker: 'fail' } });
      expect(res.body).not.toMatch(/vault|srv|8200/i);
    }
    const logged = stack.logs.lines.filter((l) => l.includes(DETAIL));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/readiness: store failing/);
  });

  it('GET /v1/status gives an admin the reason; other roles and anonymous callers get nothing', async () => {
    const res = await rt.app!.inject({ method: 'GET', url: '/v1/status', headers: bearer(admin.token) });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: 'not_ready', checkedAt: expect.any(String), checks: { redis: { ok: true, required: true, ms: expect.any(Number) }, store: { ok: false, required: true, message: DETAIL }, worker: { ok: false, required: false } } });
    expect((await rt.app!.inject({ method: 'GET', url: '/v1/status', headers: bearer(operator.token) })).statusCode).toBe(403);
    expect((await rt.app!.inject({ method: 'GET', url: '/v1/status' })).statusCode).toBe(401);
  });

  it('answers ready again (degraded: no worker here) once the store is back, and logs the recovery', async () => {
    storeBroken = false;
    const res = await rt.app!.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'degraded', checks: { redis: 'ok', store: 'ok', twilio: 'ok', worker: 'fail' } });
    expect((await rt.app!.inject({ method: 'GET', url: '/v1/status', headers: bearer(admin.token) })).json()).toMatchObject({ status: 'degraded', checks: { store: { ok: true } } });
    expect(stack.logs.text()).toMatch(/readiness: store recovered/);
  });

  describe('METRICS_PORT in an API process', () => {
    let api: RotatorProcess;
    let apiBase: string;
    let metricsBase: string;
    beforeAll(async () => {
      const [port, metricsPort] = [await freePort(), await freePort()];
      apiBase = `http://127.0.0.1:${port}`;
      metricsBase = `http://127.0.0.1:${metricsPort}`;
      api = spawnRotator('api', { ...stack.env, API_TOKENS: admin.entry, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: String(metricsPort), ACCOUNT_SYNC_SECONDS: '0' }, stack.logs);
      await waitFor('the API and its metrics listener', async () => (await fetch(`${metricsBase}/healthz`).catch(() => undefined))?.ok && (await fetch(`${apiBase}/healthz`).catch(() => undefined))?.ok, 30_000, 200);
    });
    afterAll(async () => api?.stop());

    it('serves /metrics on METRICS_PORT and no longer on the API port', async () => {
      await fetch(`${apiBase}/v1/rotations`, { headers: bearer(admin.token) });
      const res = await fetch(`${metricsBase}/metrics`);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/^rotator_http_requests_total\{method="GET",route="\/v1\/rotations",status="200"\} 1$/m);
      expect((await fetch(`${apiBase}/metrics`)).status).toBe(404);
      expect((await fetch(`${apiBase}/readyz`)).status).toBe(200);
    });
  });
});
