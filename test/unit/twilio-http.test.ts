import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import twilio from 'twilio';
import { createTwilioHttpClient } from '../../src/twilio/http.ts';
import type { ConcurrencyGate } from '../../src/twilio/gate.ts';

/**
 * The transport under twilio-node (undici instead of its axios RequestClient): what Twilio
 * receives must be what twilio-node would have sent, and what comes back must parse the same.
 */
describe('Twilio HTTP transport', () => {
  let server: Server;
  let base: string;
  const seen: Array<{ method: string; url: string; auth: string; type: string; body: string }> = [];
  /** `hang`: never answer (the connection is dropped when the server closes). */
  let answer: (req: IncomingMessage) => { status: number; body: unknown; hang?: boolean } = () => ({ status: 200, body: {} });
  const gate: ConcurrencyGate = { acquire: async () => () => undefined };

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization ?? '', type: req.headers['content-type'] ?? '', body });
        const a = answer(req);
        if (a.hang) return;
        res.writeHead(a.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(a.body));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  // The default is no part of what is tested, only a guard: generous, so a busy machine never
  // turns a local answer into a timeout.
  const client = (timeoutMs = 30_000) =>
    twilio('SK' + 'a'.repeat(32), 'pass word:with/odd&chars', { accountSid: 'AC' + '1'.repeat(32), httpClient: createTwilioHttpClient({ baseUrl: base, timeoutMs, gate, maxAttempts: 1 }) as never, autoRetry: false });

  it('sends Basic auth, form bodies and query parameters as twilio-node does, and parses the answers', async () => {
    answer = () => ({ status: 201, body: { sid: 'SK' + 'b'.repeat(32), friendly_name: 'rotator: a&b = c', secret: 's3cr3t', date_created: 'Mon, 23 Nov 2026 10:00:00 +0000' } });
    const key = await client().api.v2010.accounts('AC' + '2'.repeat(32)).newKeys.create({ friendlyName: 'rotator: a&b = c' });
    expect(key).toMatchObject({ sid: 'SK' + 'b'.repeat(32), friendlyName: 'rotator: a&b = c', secret: 's3cr3t' });
    const req = seen.at(-1)!;
    expect(req).toMatchObject({ method: 'POST', url: `/2010-04-01/Accounts/AC${'2'.repeat(32)}/Keys.json`, type: 'application/x-www-form-urlencoded' });
    expect(Object.fromEntries(new URLSearchParams(req.body))).toEqual({ FriendlyName: 'rotator: a&b = c' });
    expect(Buffer.from(req.auth.replace('Basic ', ''), 'base64').toString()).toBe(`SK${'a'.repeat(32)}:pass word:with/odd&chars`);

    answer = () => ({ status: 200, body: { messages: [], page: 0, page_size: 1, uri: '/x', next_page_uri: null } });
    await client().api.v2010.accounts('AC' + '2'.repeat(32)).messages.page({ pageSize: 1 });
    expect(seen.at(-1)).toMatchObject({ method: 'GET', url: `/2010-04-01/Accounts/AC${'2'.repeat(32)}/Messages.json?PageSize=1` });
  });

  it("turns Twilio's error body into a RestException with status and code", async () => {
    answer = () => ({ status: 404, body: { code: 20404, message: 'The requested resource was not found', more_info: 'https://www.twilio.com/docs/errors/20404', status: 404 } });
    await expect(client().api.v2010.accounts('AC' + '2'.repeat(32)).keys('SK' + 'c'.repeat(32)).remove()).rejects.toMatchObject({ status: 404, code: 20404 });
  });

  it('times out a request that gets no answer, as a network error without the credential in it', async () => {
    // An answer that never comes, rather than one 1 s away: the outcome does not depend on which
    // of two timers a busy machine fires first.
    answer = () => ({ status: 200, body: {}, hang: true });
    const err = (await client(100).api.v2010.accounts('AC' + '2'.repeat(32)).messages.page({ pageSize: 1 }).catch((e: unknown) => e)) as Error & { code?: string };
    expect(err.code).toBe('ETIMEDOUT');
    expect(JSON.stringify({ ...err, message: err.message, stack: err.stack })).not.toContain('odd&chars');
  });
});
