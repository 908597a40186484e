import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InjectOptions } from 'fastify';
import { bearer, rotationIn, startApiHarness, type ApiHarness } from './support.ts';

/**
 * Issue 15 items 2 and 4: POST /v1/consumers/heartbeat for the `consumer` role only, strict about
 * what it accepts, limited per token, expiring consumers that stop reporting; GET
 * /v1/accounts/{sid}/consumers shows who uses which key.
 */
describe('consumer heartbeats and who uses which key', () => {
  let h: ApiHarness;
  let t = Date.parse('2026-12-07T12:00:00Z');
  let sid: string;
  const key = (c: string) => `SK${c.repeat(32)}`;
  const beat = (body: unknown, opts: Partial<InjectOptions> = {}) =>
    h.app.inject({ method: 'POST', url: '/v1/consumers/heartbeat', headers: { ...bearer(h.tokens.consumer), ...(opts.headers as Record<string, string>) }, payload: body as object, ...(opts.remoteAddress ? { remoteAddress: opts.remoteAddress } : {}) });

  beforeAll(async () => {
    // A settable clock for the expiry; per-token limit of 20 a minute (addresses vary below, so
    // the per-address limit, the same 20, is not what answers).
    h = await startApiHarness({ logLevel: 'warn', now: () => t, env: { CONSUMER_EXPIRY_SECONDS: '120', RATE_LIMIT_MAX: '20' } });
    sid = h.stack.emu.subaccounts[0]!.sid;
    await h.rt.credentials.ensure({ accountSid: sid, name: 'default' });
    await h.rt.credentials.ensure({ accountSid: sid, name: 'billing' });
  });
  afterAll(async () => h?.close());

  it('records a heartbeat and lists each consumer with its key and when it was last seen, per credential', async () => {
    const a = await beat({ consumer: 'web@pod-1', accountSid: sid, keySid: key('a') }, { remoteAddress: '10.0.0.1' });
    expect(a.statusCode, a.body).toBe(200);
    expect(a.json()).toEqual({ consumer: 'web@pod-1', accountSid: sid, credential: 'default', keySid: key('a'), expiresAt: new Date(t + 120_000).toISOString() });
    expect((await beat({ consumer: 'billing-worker', accountSid: sid, credential: 'billing', keySid: key('b') }, { remoteAddress: '10.0.0.2' })).statusCode).toBe(200);

    const list = await h.app.inject({ method: 'GET', url: `/v1/accounts/${sid}/consumers`, headers: bearer(h.tokens.viewer) });
    expect(list.statusCode, list.body).toBe(200);
    expect(list.json()).toEqual({
      accountSid: sid,
      credentials: [
        { credential: 'billing', consumers: [{ consumer: 'billing-worker', keySid: key('b'), lastSeen: new Date(t).toISOString(), reportedBy: 'app-1' }], rotation: null },
        { credential: 'default', consumers: [{ consumer: 'web@pod-1', keySid: key('a'), lastSeen: new Date(t).toISOString(), reportedBy: 'app-1' }], rotation: null },
      ],
    });
  });

  it('forgets a consumer that stops reporting for CONSUMER_EXPIRY_SECONDS', async () => {
    const other = h.stack.emu.subaccounts[1]!.sid;
    await h.rt.credentials.ensure({ accountSid: other, name: 'default' });
    expect((await beat({ consumer: 'short-lived', accountSid: other, keySid: key('c') }, { remoteAddress: '10.0.0.3' })).statusCode).toBe(200);
    const names = async () => (await h.app.inject({ method: 'GET', url: `/v1/accounts/${other}/consumers`, headers: bearer(h.tokens.viewer) })).json().credentials[0].consumers.map((c: { consumer: string }) => c.consumer);
    t += 119_000;
    expect(await names()).toEqual(['short-lived']);
    t += 1_000;
    expect(await names()).toEqual([]);
  });

  it('refuses tokens of every other role (403) and requests without one (401)', async () => {
    const body = { consumer: 'web', accountSid: sid, keySid: key('a') };
    for (const role of ['viewer', 'operator', 'admin'] as const) {
      const res = await beat(body, { headers: bearer(h.tokens[role]), remoteAddress: '10.0.1.1' });
      expect(res.statusCode, role).toBe(403);
      expect(res.json().error).toMatchObject({ code: 'forbidden', message: expect.stringContaining('needs the consumer role') });
    }
    expect((await beat(body, { headers: { authorization: '' }, remoteAddress: '10.0.1.2' })).statusCode).toBe(401);
  });

  it('refuses malformed, oversized and unknown-field heartbeats with a 4xx naming the problem, and stores nothing', async () => {
    const good = { consumer: 'web', accountSid: sid, keySid: key('d') };
    const cases: Array<[unknown, number, RegExp]> = [
      [{ ...good, accountSid: 'AC123' }, 400, /accountSid/],
      [{ ...good, keySid: 'not-a-key-sid' }, 400, /keySid/],
      [{ ...good, consumer: 'has spaces and / slashes' }, 400, /consumer/],
      [{ ...good, consumer: '' }, 400, /consumer/],
      [{ accountSid: sid, keySid: key('d') }, 400, /consumer/],
      [{ ...good, credential: 'Not_Valid!' }, 400, /credential/],
      // A secret never belongs in a heartbeat: an unknown field, refused, never stored.
      [{ ...good, apiKeySecret: 'this-is-a-secret-value-0123456789' }, 400, /unknown field apiKeySecret/],
      [{ ...good, consumer: 'x'.repeat(2000) }, 413, /body|large/i],
      [{ ...good, credential: 'no-such-credential' }, 404, /no-such-credential/],
    ];
    let i = 0;
    for (const [body, status, message] of cases) {
      const res = await beat(body, { remoteAddress: `10.0.2.${++i}` });
      expect(res.statusCode, `${JSON.stringify(body).slice(0, 80)}: ${res.body}`).toBe(status);
      expect(res.json().error.message).toMatch(message);
      if (status === 400) expect(JSON.stringify(res.json().error.fields ?? res.json().error)).toMatch(message);
    }
    const text = await h.app.inject({ method: 'POST', url: '/v1/consumers/heartbeat', headers: { ...bearer(h.tokens.consumer), 'content-type': 'text/plain' }, payload: 'web SK…', remoteAddress: '10.0.2.99' });
    expect(text.statusCode).toBe(415);
    const stored = await h.rt.consumers.list(sid, t);
    expect(stored.map((c) => c.keySid)).not.toContain(key('d'));
    const dump = JSON.stringify(await h.rt.redis.hgetall(`rotator:consumers:${sid}`));
    expect(dump).not.toContain('this-is-a-secret-value');
  });

  it('limits heartbeats per token, whatever address they come from (429 with Retry-After)', async () => {
    const statuses: number[] = [];
    let retryAfter: string | undefined;
    for (let i = 0; i < 25; i++) {
      const res = await beat({ consumer: `pod-${i}`, accountSid: sid, keySid: key('e') }, { remoteAddress: `10.1.${i}.1` });
      statuses.push(res.statusCode);
      if (res.statusCode === 429) {
        retryAfter = res.headers['retry-after'] as string;
        expect(res.json().error.message).toContain('for "app-1"');
      }
    }
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(20);
    expect(Number(retryAfter)).toBeGreaterThan(0);
  });

  it('answers 409 to a force-promote of a rotation that is not in promote', async () => {
    const rec = await rotationIn(h.rt, h.stack.emu.subaccounts[2]!.sid, 'running', { step: 'create-secondary' });
    const res = await h.app.inject({ method: 'POST', url: `/v1/rotations/${rec.id}/promote`, headers: bearer(h.tokens.operator), remoteAddress: '10.2.0.1' });
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json().error.message).toContain('not waiting in promote');
  });
});
