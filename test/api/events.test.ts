import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor, within } from '../helpers/stack.ts';
import { bearer, startApiHarness, type ApiHarness } from './support.ts';

interface SseEvent {
  id?: string;
  event?: string;
  data?: string;
}

/** A raw SSE client over node:http: parses frames as they arrive. */
class SseClient {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  status = 0;
  ended = false;
  /** The response arrived whole (its final chunk), rather than being cut off. */
  complete = false;
  #buf = '';
  #req: ClientRequest;
  #res?: IncomingMessage;
  readonly ready: Promise<void>;

  constructor(url: string, headers: Record<string, string>) {
    let ready!: () => void;
    let failed!: (err: Error) => void;
    this.ready = new Promise<void>((resolve, reject) => ((ready = resolve), (failed = reject)));
    this.#req = httpRequest(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      this.#res = res;
      this.status = res.statusCode ?? 0;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => this.#feed(chunk));
      res.on('end', () => {
        this.complete = true;
        this.ended = true;
      });
      res.on('close', () => (this.ended = true));
      ready();
    });
    this.#req.on('error', (err) => (this.ended ? undefined : failed(err)));
    this.#req.end();
  }

  #feed(chunk: string): void {
    this.#buf += chunk;
    let at: number;
    while ((at = this.#buf.indexOf('\n\n')) >= 0) {
      const frame = this.#buf.slice(0, at);
      this.#buf = this.#buf.slice(at + 2);
      const ev: SseEvent = {};
      for (const line of frame.split('\n')) {
        if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
        else if (line.startsWith('id: ')) ev.id = line.slice(4);
        else if (line.startsWith('event: ')) ev.event = line.slice(7);
        else if (line.startsWith('data: ')) ev.data = line.slice(6);
      }
      if (ev.data !== undefined) this.events.push(ev);
    }
  }

  close(): void {
    this.#res?.destroy();
    this.#req.destroy();
  }
}

/**
 * Deadlines on events that take milliseconds: last guards against a hang, generous so that a slow
 * or busy machine never trips them. (They were 4–5 s, about one scheduling hiccup away on a loaded
 * machine.)
 */
const GUARD_MS = 30_000;

describe('GET /v1/events (server-sent events)', () => {
  let h: ApiHarness;
  let base: string;
  // A real subaccount of the parent: POST /v1/rotations refuses any other account.
  const sid = () => h.stack.emu.createSubaccount('events test').sid;

  beforeAll(async () => {
    h = await startApiHarness({ env: { SSE_HEARTBEAT_SECONDS: '1', SSE_MAX_CLIENTS: '4' }, logLevel: 'warn' });
    base = await h.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => h?.close());

  const start = async (accountSid: string) => (await h.app.inject({ method: 'POST', url: '/v1/rotations', headers: bearer(h.tokens.operator), payload: { accountSid } })).json().id as string;
  const cancel = async (id: string) => h.app.inject({ method: 'POST', url: `/v1/rotations/${id}/cancel`, headers: bearer(h.tokens.operator) });
  const open = async (query = '', headers: Record<string, string> = {}) => {
    const c = new SseClient(`${base}/v1/events${query}`, { ...bearer(h.tokens.viewer), ...headers });
    await c.ready;
    return c;
  };

  it('streams rotation changes live, each with its stream id', async () => {
    const c = await open();
    expect(c.status).toBe(200);
    const id = await start(sid());
    await waitFor('the creation event', async () => c.events.find((e) => e.data?.includes(id)), GUARD_MS);
    const ev = c.events.find((e) => e.data?.includes(id))!;
    expect(ev.event).toBe('rotation');
    expect(ev.id).toMatch(/^\d+-\d+$/);
    expect(JSON.parse(ev.data!)).toMatchObject({ type: 'rotation', id, status: 'pending', step: 'create-secondary', transition: { status: 'created' } });
    c.close();
  });

  it('replays exactly what a client missed after Last-Event-ID, then continues live', async () => {
    const first = await open();
    const a = await start(sid());
    await waitFor('event a', async () => first.events.find((e) => e.data?.includes(a)), GUARD_MS);
    const lastSeen = first.events.at(-1)!.id!;
    first.close();

    // While disconnected: three changes.
    const b = await start(sid());
    await cancel(b);
    const c = await start(sid());
    const missed = (await h.rt.repo.events(lastSeen, 100)).map((e) => e.id);
    expect(missed).toHaveLength(3);

    const again = await open('', { 'last-event-id': lastSeen });
    await waitFor('the replay', async () => again.events.length >= 3, GUARD_MS);
    expect(again.events.map((e) => e.id)).toEqual(missed);
    expect(JSON.parse(again.events[1]!.data!)).toMatchObject({ id: b, transition: { status: 'undo' } });
    expect(JSON.parse(again.events[2]!.data!)).toMatchObject({ id: c });
    const d = await start(sid());
    await waitFor('the live event after the replay', async () => again.events.find((e) => e.data?.includes(d)), GUARD_MS);
    expect(again.events).toHaveLength(4);
    again.close();

    // The query parameter does the same for clients that cannot set headers.
    const viaQuery = await open(`?lastEventId=${encodeURIComponent(lastSeen)}`);
    await waitFor('the replay via ?lastEventId', async () => viaQuery.events.length >= 4, GUARD_MS);
    expect(viaQuery.events.slice(0, 3).map((e) => e.id)).toEqual(missed);
    viaQuery.close();
  });

  it('sends heartbeat comments while nothing happens', async () => {
    const c = await open();
    await waitFor('a heartbeat', async () => c.comments.includes('heartbeat'), GUARD_MS);
    c.close();
  });

  it('refuses a malformed Last-Event-ID with 400 before streaming', async () => {
    for (const bad of ['yesterday', '1-2-3', '-1']) {
      const res = await h.app.inject({ method: 'GET', url: '/v1/events', headers: { ...bearer(h.tokens.viewer), 'last-event-id': bad } });
      expect(res.statusCode).toBe(400);
      expect(res.json().error.code).toBe('invalid_request');
    }
    // The right shape but past 64 bits: Redis would refuse it mid-stream.
    const res = await h.app.inject({ method: 'GET', url: '/v1/events', headers: { ...bearer(h.tokens.viewer), 'last-event-id': '99999999999999999999-0' } });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('invalid_last_event_id');
  });

  it('releases its Redis connection when the client goes away', async () => {
    // Connections blocked in XREAD are the stream readers.
    const readers = async () => ((await h.rt.redis.client('LIST')) as string).split('\n').filter((l) => l.includes('cmd=xread')).length;
    await waitFor('earlier streams to be gone', async () => (await readers()) === 0, GUARD_MS);
    const clients = await Promise.all([open(), open(), open()]);
    await waitFor('three stream readers', async () => (await readers()) === 3, GUARD_MS);
    for (const c of clients) c.close();
    await waitFor('the readers to close', async () => (await readers()) === 0, GUARD_MS);
  });

  it('refuses streams beyond SSE_MAX_CLIENTS with 503 and Retry-After, and takes them again once one closes', async () => {
    const clients = await Promise.all([open(), open(), open(), open()]);
    expect(clients.map((c) => c.status)).toEqual([200, 200, 200, 200]);
    const res = await fetch(`${base}/v1/events`, { headers: bearer(h.tokens.viewer) });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('too_many_streams');
    clients[0]!.close();
    await waitFor('a free slot', async () => {
      const c = await open();
      c.close();
      return c.status === 200;
    }, GUARD_MS);
    for (const c of clients) c.close();
  });

  it('admits exactly SSE_MAX_CLIENTS of many parallel requests (the slot is taken before any await), and frees it after a refusal', async () => {
    await waitFor('every slot free', async () => {
      const all = await Promise.all([open(), open(), open(), open()]);
      for (const c of all) c.close();
      return all.every((c) => c.status === 200);
    }, 5_000);
    // Refused after taking a slot (a malformed Last-Event-ID): the slot comes back.
    for (let i = 0; i < 6; i++) expect((await fetch(`${base}/v1/events`, { headers: { ...bearer(h.tokens.viewer), 'last-event-id': 'nope' } })).status).toBe(400);
    const clients = await Promise.all(Array.from({ length: 12 }, () => open()));
    const statuses = clients.map((c) => c.status);
    for (const c of clients) c.close();
    expect(statuses.filter((s) => s === 200)).toHaveLength(4);
    expect(statuses.filter((s) => s === 503)).toHaveLength(8);
  });

  it('ends a stream when its token expires, with an expired event; a token without expiry keeps streaming', async () => {
    const jwt = await h.idp.sign({ sub: 'short-lived', groups: ['rotator-viewers'] }, { expiresIn: Math.floor(Date.now() / 1000) + 2 });
    h.issued.push(jwt);
    const c = new SseClient(`${base}/v1/events`, bearer(jwt));
    await c.ready;
    expect(c.status).toBe(200);
    const lasting = await open();
    await waitFor('the stream to end', async () => c.ended, 6_000);
    expect(c.events.at(-1)).toMatchObject({ event: 'expired', data: expect.stringMatching(/expired/) });
    expect(lasting.ended).toBe(false);
    lasting.close();
  });

  it('ends open streams cleanly when the app closes', async () => {
    const c = await open();
    expect(c.status).toBe(200);
    // Closing does not wait for the clients to go (it would never return), and each stream is
    // ended by the server with its final chunk, not cut off.
    await within('the app to close with a stream open', h.app.close(), GUARD_MS);
    await waitFor('the stream to end', async () => c.ended, GUARD_MS);
    expect(c.complete).toBe(true);
  });
});
