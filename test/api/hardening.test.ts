import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, startApiHarness, type ApiHarness } from './support.ts';

describe('hardening: rate limits, security headers, CORS, request ids, malformed HTTP', () => {
  let h: ApiHarness;
  let base: string;

  beforeAll(async () => {
    h = await startApiHarness({
      env: { RATE_LIMIT_MAX: '5', RATE_LIMIT_WINDOW: '60s', TRUST_PROXY: '127.0.0.1', CORS_ORIGINS: 'https://ops.example.com' },
      logLevel: 'info',
    });
    base = await h.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => h?.close());

  let ipSeq = 0;
  const freshIp = () => `198.51.100.${++ipSeq}`;
  const get = (url: string, headers: Record<string, string>) => h.app.inject({ method: 'GET', url, headers });

  it('limits one token across addresses: the 6th request in the window is a 429 with the error body and Retry-After', async () => {
    const token = await h.jwt('viewer', { sub: 'rate-limited-user' });
    for (let i = 0; i < 5; i++) expect((await get('/v1/rotations', { ...bearer(token), 'x-forwarded-for': freshIp() })).statusCode).toBe(200);
    const res = await get('/v1/rotations', { ...bearer(token), 'x-forwarded-for': freshIp() });
    expect(res.statusCode).toBe(429);
    expect(res.json().error).toMatchObject({ code: 'rate_limited', message: expect.stringMatching(/for "oidc:rate-limited-user": at most 5 per 60s/), requestId: res.headers['x-request-id'] });
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    // Another principal is not affected.
    expect((await get('/v1/rotations', { ...bearer(h.tokens.viewer), 'x-forwarded-for': freshIp() })).statusCode).toBe(200);
  });

  it('limits one address across tokens, before authentication (so guessing tokens is throttled)', async () => {
    const ip = freshIp();
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await get('/v1/rotations', { authorization: `Bearer rot_guess-${i}`, 'x-forwarded-for': ip })).statusCode);
    expect(statuses).toEqual([401, 401, 401, 401, 401]);
    const res = await get('/v1/rotations', { ...bearer(h.tokens.admin), 'x-forwarded-for': ip });
    expect(res.statusCode).toBe(429);
    expect(res.json().error.message).toMatch(/from this address/);
  });

  it('never limits health, readiness, metrics or the docs', async () => {
    const ip = freshIp();
    for (let i = 0; i < 12; i++) {
      for (const url of ['/healthz', '/readyz', '/metrics', '/docs/json']) expect((await get(url, { 'x-forwarded-for': ip })).statusCode).toBe(200);
    }
  });

  it('does not write rate-limited requests to the audit trail', async () => {
    const ip = freshIp();
    const token = await h.jwt('operator', { sub: 'burst' });
    const accountSid = h.stack.emu.createSubaccount('burst').sid;
    for (let i = 0; i < 7; i++) await h.app.inject({ method: 'POST', url: '/v1/rotations', headers: { ...bearer(token), 'x-forwarded-for': ip }, payload: { accountSid, dryRun: true } });
    const entries = [];
    for await (const e of h.rt.audit.entries()) if (e.actor === 'oidc:burst') entries.push(e);
    expect(entries.map((e) => e.status)).toEqual([202, 409, 409, 409, 409]);
    expect(entries[0]!.ip).toBe(ip);
  });

  it('sends security headers', async () => {
    const res = await get('/healthz', {});
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(res.headers['content-security-policy']).toMatch(/default-src 'self'/);
    expect(res.headers['strict-transport-security']).toMatch(/max-age=/);
    expect(res.headers['x-powered-by']).toBeUndefined();
  });

  it('answers CORS only for the configured origins', async () => {
    const allowed = await h.app.inject({ method: 'OPTIONS', url: '/v1/rotations', headers: { origin: 'https://ops.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,idempotency-key', 'x-forwarded-for': freshIp() } });
    expect(allowed.statusCode).toBe(204);
    expect(allowed.headers['access-control-allow-origin']).toBe('https://ops.example.com');
    expect(String(allowed.headers['access-control-allow-headers'])).toMatch(/idempotency-key/);
    const other = await get('/healthz', { origin: 'https://evil.example' });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('puts the request id in the error body, the response header and every log line of the request', async () => {
    const res = await get('/v1/rotations/not-an-id', { ...bearer(h.tokens.admin), 'x-forwarded-for': freshIp() });
    expect(res.statusCode).toBe(400);
    const id = res.json().error.requestId;
    expect(res.headers['x-request-id']).toBe(id);
    const lines = h.stack.logs.lines.flatMap((l) => l.split('\n')).filter((l) => l.includes(id));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const l of lines) expect(JSON.parse(l).reqId).toBe(id);
    // A client cannot choose its request id.
    const chosen = await get('/healthz', { 'x-request-id': 'attacker-chosen' });
    expect(chosen.headers['x-request-id']).not.toBe('attacker-chosen');
  });

  it('answers HTTP it cannot parse with a 4xx error body', async () => {
    const { port } = new URL(base);
    const raw = await new Promise<string>((resolve) => {
      const socket = connect(Number(port), '127.0.0.1', () => socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n'));
      let text = '';
      socket.on('data', (d) => (text += d.toString()));
      socket.on('close', () => resolve(text));
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: 'malformed_request', message: expect.any(String) } });
    const url = await fetch(`${base}/v1/rotations/%E0%A4%A`, { headers: bearer(h.tokens.admin) });
    expect(url.status).toBe(400);
    expect(((await url.json()) as { error: { code: string } }).error.code).toBe('bad_url');
  });
});
