import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, waitFor, within, type Stack } from '../helpers/stack.ts';
import { describeRotation, startEngine, startRotation, waitFinished, expectSettled } from '../helpers/engine.ts';
import { spawnTsEntry, type RotatorProcess } from '../helpers/processes.ts';
import { dumpRedis, findSecrets } from '../helpers/leaks.ts';
import { mintToken } from '../../src/api/tokens.ts';
import type { Runtime } from '../../src/runtime.ts';
import type { RotationRecord } from '../../src/domain/rotation.ts';

/** The drain maximum: what promote would wait without the consumer gate (10 minutes). */
const DRAIN_SECONDS = 600;

type AppLine = { event: 'key'; keySid: string; at: number } | { event: 'stats'; ok: number; failures: string[]; retriedAfter401: number } | { event: 'heartbeat-error'; message: string };

/**
 * Issue 15's acceptance, with applications as real processes built on the client library
 * (test/helpers/consumer-app.ts, importing `rotator/client`): promote follows the last consumer
 * to move within seconds, long before the drain maximum; a consumer stuck on the old key holds the
 * rotation in `waiting`, named, until an operator force-promotes (audited); the stuck consumer
 * then recovers through the client's 401 re-read without a failed request.
 */
describe('consumer gate: promote when every application has moved', () => {
  let stack: Stack;
  let rt: Runtime;
  let url: string;
  const consumerToken = mintToken('billing-app', 'consumer');
  const admin = mintToken('sec', 'admin');
  const apps: Array<{ name: string; proc: RotatorProcess; file: string }> = [];

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 2, drainSeconds: DRAIN_SECONDS, env: { CONSUMER_GATE_RECHECK_SECONDS: '5', CONSUMER_EXPIRY_SECONDS: '120' } });
    await stack.seedAll();
    rt = await startEngine(stack, { API_TOKENS: [consumerToken.entry, admin.entry].join(','), PORT: '0' });
    await rt.app!.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(rt.app!.server.address() as AddressInfo).port}`;
    for (const s of stack.emu.subaccounts) await rt.credentials.ensure({ accountSid: s.sid, name: 'default' });
  });

  afterAll(async () => {
    await Promise.all(apps.map((a) => a.proc.stop()));
    await rt?.close();
    await stack?.close();
  });

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${admin.token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  function startApp(name: string, accountSid: string, refreshSeconds: number): { name: string; proc: RotatorProcess; file: string } {
    const file = join(stack.dir, `${name}.jsonl`);
    writeFileSync(file, '');
    // What an application has: the store's settings (and the emulator's origin), not Rotator's admin credential.
    const proc = spawnTsEntry('test/helpers/consumer-app.ts', [], {
      ...stack.backend.env,
      TWILIO_BASE_URL: stack.emu.url,
      ACCOUNT_SID: accountSid,
      CONSUMER: name,
      REFRESH_SECONDS: String(refreshSeconds),
      HEARTBEAT_SECONDS: '30',
      ROTATOR_URL: url,
      ROTATOR_TOKEN: consumerToken.token,
      STATS_FILE: file,
    }, stack.logs);
    const app = { name, proc, file };
    apps.push(app);
    return app;
  }
  const lines = (file: string): AppLine[] => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AppLine);
  const stop = async (app: { proc: RotatorProcess; file: string }) => {
    await app.proc.stop();
    const stats = lines(app.file).find((l) => l.event === 'stats');
    if (!stats || stats.event !== 'stats') throw new Error(`${app.file} has no stats`);
    return stats;
  };
  const reporting = (accountSid: string, n: number, keySid: string) =>
    waitFor(`${n} consumers of ${accountSid} to report ${keySid}`, async () => {
      const live = await rt.consumers.forCredential(accountSid, 'default', Date.now());
      return live.length === n && live.every((c) => c.keySid === keySid);
    }, 120_000, 100);

  it('promotes within seconds of the last consumer moving, long before the drain maximum', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    expect((await api('PUT', '/v1/policies/default', { interval: 'P90D', consumerGate: { minDrain: 'PT1S', maxWait: 'PT1H', onMaxWait: 'hold' } })).status).toBeLessThan(300);
    const before = (await stack.store.readCurrent(stack.path(sid)))!.apiKeySid;
    const started = ['billing@pod-1', 'billing@pod-2', 'billing@pod-3'].map((n) => startApp(n, sid, 1));
    await within('the consumer apps to start', Promise.all(started.map((a) => a.proc.ready)), 120_000);
    await reporting(sid, 3, before);

    const rec = await startRotation(rt, sid, 'consumer gate');
    const done = await waitFinished(rt, rec.id, 180_000);
    expect(done.status, JSON.stringify(done.error ?? done.lastError)).toBe('succeeded');
    const stats = await Promise.all(started.map(stop));

    const moved = started.map((a) => lines(a.file).find((l) => l.event === 'key' && l.keySid === done.newKeySid));
    expect(moved.every(Boolean)).toBe(true);
    const lastMoved = Math.max(...moved.map((m) => (m as { at: number }).at));
    const promoted = Date.parse(done.history.find((h) => h.step === 'promote' && h.status === 'completed')!.at);
    const operationalized = Date.parse(done.operationalizedAt!);
    const gapMs = promoted - lastMoved;
    console.log(
      `consumer gate: promoted ${gapMs} ms after the last of 3 consumers moved (${((promoted - operationalized) / 1000).toFixed(1)} s after operationalize; drain maximum ${DRAIN_SECONDS} s: ratio ${((promoted - operationalized) / (DRAIN_SECONDS * 1000)).toFixed(4)})`,
    );
    // The gate, not the drain, let it through: long before the drain maximum, after the minimum.
    expect(promoted).toBeLessThan(Date.parse(done.promoteAfter!));
    expect(promoted - operationalized).toBeGreaterThanOrEqual(1000);
    expect(done.history.find((h) => h.step === 'promote' && h.status === 'completed')!.detail).toContain('3 of 3 consumers on the new key');
    expect(publicConsumers(done)).toMatchObject({ onNewKey: 3, total: 3, lagging: [] });
    // No application saw a failed request.
    expect(stats.flatMap((s) => s.failures)).toEqual([]);
    expect(stats.every((s) => s.ok > 0)).toBe(true);
    expect((await expectSettled(stack, sid)).problems).toEqual([]);
  });

  it('holds a rotation whose consumer is stuck on the old key, naming it, until an operator force-promotes (audited); the stuck app then recovers on a 401 re-read', async () => {
    const sid = stack.emu.subaccounts[1]!.sid;
    expect((await api('PUT', '/v1/policies/held', { interval: 'P90D', consumerGate: { minDrain: 'PT0S', maxWait: 'PT2S', onMaxWait: 'hold' } })).status).toBe(201);
    expect((await api('PATCH', `/v1/accounts/${sid}`, { policy: 'held' })).status).toBe(200);
    const before = (await stack.store.readCurrent(stack.path(sid)))!.apiKeySid;
    const mover = startApp('web@pod-1', sid, 1);
    // Caches the credential for an hour: it will not move by itself.
    const stuck = startApp('legacy-cron', sid, 3600);
    await within('the consumer apps to start', Promise.all([mover.proc.ready, stuck.proc.ready]), 120_000);
    await reporting(sid, 2, before);

    const rec = await startRotation(rt, sid, 'stuck consumer');
    const held = await waitFor(`rotation ${rec.id} to be held after the maximum wait`, async () => {
      const r = await rt.repo.get(rec.id);
      return r?.status === 'waiting' && r.history.at(-1)?.detail?.includes('held after the maximum wait') ? r : undefined;
    }, 120_000, 100, () => describeRotation(rt, rec.id));
    expect(held.history.at(-1)!.detail).toContain('1 of 2 consumers on the new key; lagging: legacy-cron');

    // The API shows who lags, on the rotation and per credential; events carry k of n.
    const shown = await api('GET', `/v1/rotations/${rec.id}`);
    expect(shown.body.consumers).toMatchObject({ onNewKey: 1, total: 2, lagging: [{ consumer: 'legacy-cron', keySid: before }] });
    const perCredential = await api('GET', `/v1/accounts/${sid}/consumers`);
    expect((perCredential.body.credentials as Array<{ rotation: { summary: string } }>)[0]!.rotation.summary).toContain('1 of 2 consumers on the new key; lagging: legacy-cron');
    const events = await rt.repo.events('0', 10_000);
    expect(events.some((e) => e.event.type === 'rotation' && e.event.id === rec.id && e.event.consumers?.onNewKey === 1 && e.event.consumers.lagging.includes('legacy-cron'))).toBe(true);
    // Still held: nothing happened at Twilio.
    expect(stack.emu.listKeys(sid).map((k) => k.sid)).toContain(before);

    const forced = await fetch(`${url}/v1/rotations/${rec.id}/promote`, { method: 'POST', headers: { authorization: `Bearer ${admin.token}` } });
    expect(forced.status, await forced.clone().text()).toBe(200);
    const done = await waitFinished(rt, rec.id, 120_000);
    expect(done.status, JSON.stringify(done.error ?? done.lastError)).toBe('succeeded');
    expect(done.forcePromote).toMatchObject({ by: 'sec', lagging: [`legacy-cron (${before})`] });
    expect(done.history.find((h) => h.step === 'promote' && h.status === 'completed')!.detail).toContain('force-promoted by sec');
    const audit = await api('GET', `/v1/audit?rotationId=${rec.id}`);
    const entry = (audit.body.items as Array<Record<string, unknown>>).find((e) => e.action === 'rotation.force-promote');
    expect(entry).toMatchObject({ actor: 'sec', role: 'admin', status: 200, detail: expect.stringContaining(`lagging: legacy-cron (${before})`) });

    // The old key is gone at Twilio: the stuck app's next request gets a 401, re-reads, retries.
    await waitFor('the stuck app to move to the new key through a 401 re-read', async () => lines(stuck.file).some((l) => l.event === 'key' && l.keySid === done.newKeySid), 120_000, 100);
    const [moverStats, stuckStats] = await Promise.all([stop(mover), stop(stuck)]);
    expect(stuckStats.failures).toEqual([]);
    expect(stuckStats.retriedAfter401).toBeGreaterThanOrEqual(1);
    expect(moverStats.failures).toEqual([]);
    expect(stack.emu.authLog(0).some((e) => e.status === 401 && e.principal === before)).toBe(true);

    const secrets = [...stack.emu.issuedSecrets(), ...stack.backend.secrets, consumerToken.token, admin.token];
    expect(findSecrets(secrets, await dumpRedis(stack.redis.url))).toEqual([]);
    expect(findSecrets(secrets, [stack.logs.text()])).toEqual([]);
  });
});

function publicConsumers(rec: RotationRecord) {
  return rec.consumers;
}
