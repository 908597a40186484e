import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { dumpRedis, findSecrets } from '../helpers/leaks.ts';
import { waitFor } from '../helpers/stack.ts';
import { bearer, startApiHarness, type ApiHarness } from './support.ts';

/**
 * Issue 14 item 2: the dashboard's cookie session. A pasted token becomes an httpOnly,
 * SameSite=Strict cookie; the session lives in Redis under the hash of its id; every state-changing
 * request on the cookie needs this origin and the CSRF token; signing out ends it server-side;
 * Bearer clients are unchanged.
 */
describe('dashboard session (POST/GET/DELETE /v1/session)', () => {
  let h: ApiHarness;
  let url: string;
  const ORIGIN = 'http://localhost:80';
  const sessionIds: string[] = [];

  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'trace' });
    url = await h.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => h?.close());

  async function signIn(role: 'viewer' | 'operator' | 'admin'): Promise<{ cookie: string; csrf: string; res: LightMyRequestResponse }> {
    const res = await h.app.inject({ method: 'POST', url: '/v1/session', headers: { origin: ORIGIN }, payload: { token: h.tokens[role] } });
    expect(res.statusCode, res.body).toBe(201);
    const setCookie = String(res.headers['set-cookie']);
    const id = /^rotator_session=([A-Za-z0-9_-]+);/.exec(setCookie)![1]!;
    sessionIds.push(id);
    return { cookie: `rotator_session=${id}`, csrf: res.json().csrfToken, res };
  }
  const withCookie = (cookie: string, opts: InjectOptions, extra: Record<string, string> = {}) =>
    h.app.inject({ ...opts, headers: { cookie, ...extra, ...(opts.headers as Record<string, string>) } });

  it('trades a token for an httpOnly, SameSite=Strict cookie; the body has who and the CSRF token, never the token', async () => {
    const { cookie, csrf, res } = await signIn('operator');
    expect(res.headers['set-cookie']).toMatch(/; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    expect(res.headers['set-cookie']).not.toMatch(/Secure/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.json()).toMatchObject({ name: 'ci', role: 'operator', csrfToken: csrf });
    expect(res.body).not.toContain(h.tokens.operator);
    const me = await withCookie(cookie, { method: 'GET', url: '/v1/session' });
    expect(me.json()).toMatchObject({ signedIn: true, name: 'ci', role: 'operator', csrfToken: csrf });
    expect((await h.app.inject({ method: 'GET', url: '/v1/session' })).json()).toEqual({ signedIn: false, sso: false });
    // The cookie reads the API like a token does.
    expect((await withCookie(cookie, { method: 'GET', url: '/v1/credentials' })).statusCode).toBe(200);
  });

  it('behind TLS (a trusted proxy saying https) the cookie is Secure', async () => {
    const { rt } = h;
    const res = await rt.app!.inject({ method: 'POST', url: '/v1/session', headers: { 'x-forwarded-proto': 'https' }, payload: { token: h.tokens.viewer } });
    // TRUST_PROXY is off in the harness: the header is ignored, as it must be from an untrusted hop.
    expect(res.headers['set-cookie']).not.toMatch(/Secure/);
  });

  it('a bad token is 401 and sets no cookie; a sign-in from another site is 403', async () => {
    const bad = await h.app.inject({ method: 'POST', url: '/v1/session', headers: { origin: ORIGIN }, payload: { token: 'rot_nope' } });
    expect(bad.statusCode).toBe(401);
    expect(bad.headers['set-cookie']).toBeUndefined();
    const cross = await h.app.inject({ method: 'POST', url: '/v1/session', headers: { origin: 'https://evil.example' }, payload: { token: h.tokens.admin } });
    expect(cross.statusCode).toBe(403);
    expect(cross.headers['set-cookie']).toBeUndefined();
    const missing = await h.app.inject({ method: 'POST', url: '/v1/session', payload: {} });
    expect(missing.statusCode).toBe(400);
    expect(missing.json().error.fields?.[0]?.path ?? missing.json().error.message).toMatch(/token/);
  });

  it('a forged request (no CSRF token) is 403, and so is one from another origin; with both it passes', async () => {
    const { cookie, csrf } = await signIn('admin');
    const pause = { method: 'POST' as const, url: '/v1/schedule/pause', payload: { reason: 'session test' } };
    const noCsrf = await withCookie(cookie, pause, { origin: ORIGIN });
    expect(noCsrf.statusCode).toBe(403);
    expect(noCsrf.json().error.code).toBe('csrf_token_invalid');
    const wrongCsrf = await withCookie(cookie, pause, { origin: ORIGIN, 'x-csrf-token': csrf.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) });
    expect(wrongCsrf.statusCode).toBe(403);
    const otherSite = await withCookie(cookie, pause, { origin: 'https://evil.example', 'x-csrf-token': csrf });
    expect(otherSite.statusCode).toBe(403);
    expect(otherSite.json().error.code).toBe('cross_origin_refused');
    const noOrigin = await withCookie(cookie, pause, { 'x-csrf-token': csrf, 'sec-fetch-site': 'cross-site' });
    expect(noOrigin.statusCode).toBe(403);
    expect(await h.rt.planner.paused()).toBeNull();
    const ok = await withCookie(cookie, pause, { origin: ORIGIN, 'x-csrf-token': csrf });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(await h.rt.planner.paused()).toMatchObject({ by: 'sec' });
    const resume = await withCookie(cookie, { method: 'POST', url: '/v1/schedule/resume', payload: { reason: 'session test' } }, { origin: ORIGIN, 'x-csrf-token': csrf });
    expect(resume.statusCode).toBe(200);
  });

  it('a viewer\'s session is refused what needs an operator, even with the CSRF token', async () => {
    const { cookie, csrf } = await signIn('viewer');
    const res = await withCookie(cookie, { method: 'POST', url: '/v1/rotations', payload: { accountSid: h.stack.emu.subaccounts[0]!.sid, dryRun: true } }, { origin: ORIGIN, 'x-csrf-token': csrf });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.message).toMatch(/operator role; "dash" is viewer/);
  });

  it('Bearer clients are unchanged: no CSRF token, no Origin needed; a Bearer header wins over a cookie', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/v1/schedule/pause', headers: bearer(h.tokens.admin), payload: { reason: 'bearer' } });
    expect(res.statusCode).toBe(200);
    await h.app.inject({ method: 'POST', url: '/v1/schedule/resume', headers: bearer(h.tokens.admin), payload: { reason: 'bearer' } });
    const { cookie } = await signIn('admin');
    const viewerWins = await withCookie(cookie, { method: 'POST', url: '/v1/schedule/pause', payload: { reason: 'x' } }, bearer(h.tokens.viewer));
    expect(viewerWins.statusCode).toBe(403);
  });

  it('sign-out ends the session server-side: the cookie is dead even if kept, and its event stream closes', async () => {
    const { cookie, csrf } = await signIn('viewer');
    // An event stream on the cookie (a real connection), closed by the sign-out.
    const controller = new AbortController();
    const stream = await fetch(`${url}/v1/events`, { headers: { cookie }, signal: controller.signal });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    await reader.read();
    const host = new URL(url).host;
    const noCsrf = await fetch(`${url}/v1/session`, { method: 'DELETE', headers: { cookie, origin: `http://${host}` } });
    expect(noCsrf.status).toBe(403);
    const out = await fetch(`${url}/v1/session`, { method: 'DELETE', headers: { cookie, origin: `http://${host}`, 'x-csrf-token': csrf } });
    expect(out.status).toBe(204);
    expect(out.headers.get('set-cookie')).toMatch(/^rotator_session=; .*Max-Age=0/);
    // The stream ends (read until done; a guard against a hang only).
    await waitFor('the event stream to end after sign-out', async () => (await reader.read()).done);
    controller.abort();
    const after = await withCookie(cookie, { method: 'GET', url: '/v1/session' });
    expect(after.json()).toEqual({ signedIn: false, sso: false });
    const read = await withCookie(cookie, { method: 'GET', url: '/v1/credentials' });
    expect(read.statusCode).toBe(401);
    expect(read.json().error.code).toBe('session_ended');
    const audit = (await h.app.inject({ method: 'GET', url: '/v1/audit?limit=500', headers: bearer(h.tokens.admin) })).json().items as Array<{ action: string; actor: string }>;
    expect(audit.filter((e) => e.action === 'session.delete' && e.actor === 'dash').length).toBeGreaterThan(0);
    expect(audit.filter((e) => e.action === 'session.create').length).toBeGreaterThan(0);
  });

  it('neither tokens nor session ids reach Redis or the logs (trace level); Redis holds only hashed ids', async () => {
    const secrets = [...h.issued, ...sessionIds];
    expect(findSecrets(secrets, h.stack.logs.lines)).toEqual([]);
    const values = await dumpRedis(h.stack.redis.url);
    expect(findSecrets(secrets, values)).toEqual([]);
    expect(values.some((v) => /:session:[A-Za-z0-9_-]{43}$/.test(v))).toBe(true);
  });
});
