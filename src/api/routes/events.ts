import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Redis } from 'ioredis';
import { HttpError } from '../errors.ts';
import { errorResponses, EventsHeaders, EventsQuery } from '../schemas.ts';
import { isRedisStreamId } from '../../state/audit.ts';
import type { SessionStreams } from '../../state/sessions.ts';

export interface EventRoutesDeps {
  /** The events stream (`${prefix}:events`): every rotation record update, and every batch change (`t` = `batch`). */
  streamKey: string;
  /** A new connection for one client's blocking reads. */
  connect(): Redis;
  /** For the replay checks (first and last ids). */
  redis: Redis;
  heartbeatMs: number;
  maxClients: number;
  /** Streams opened on a dashboard session, which signing out ends. */
  sessionStreams?: SessionStreams;
}

type Row = [string, string[]];

/** setTimeout's longest delay (about 24.8 days); a later expiry re-arms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * GET /v1/events: server-sent events of rotation changes. Each client gets its own Redis
 * connection reading the stream with XREAD BLOCK from where it is, so `Last-Event-ID` (header, or
 * `?lastEventId=` for clients that cannot set headers) replays exactly what it missed, then
 * continues live. `id:` is the stream id. A comment line every heartbeat keeps proxies from
 * closing an idle stream. The stream ends when the client goes, when Redis fails (the browser
 * reconnects with its Last-Event-ID), when the client's token expires (an `expired` event first)
 * and when the app closes.
 */
export const eventRoutes: FastifyPluginAsyncTypebox<EventRoutesDeps> = async (app, deps) => {
  const open = new Set<() => void>();
  /** Streams admitted, counting those still resolving where to start (they hold a slot too). */
  let active = 0;
  app.addHook('preClose', async () => {
    for (const end of [...open]) end();
  });

  app.get(
    '/v1/events',
    {
      config: { role: 'viewer' },
      exposeHeadRoute: false,
      schema: {
        summary: 'Server-sent events of rotation and batch changes (text/event-stream), resumable with Last-Event-ID',
        tags: ['events'],
        querystring: EventsQuery,
        headers: EventsHeaders,
        response: {
          200: { description: 'id: stream id; event: rotation, data: {type: "rotation", id, accountSid, credential, status, step, at, transition}; or event: batch, data: {type: "batch", id, status, at, event, wave, by, detail, progress}', content: { 'text/event-stream': { schema: { type: 'string' } } } },
          ...errorResponses(400, 401, 403, 429, 503),
        },
      },
    },
    async (req, reply) => {
      // The slot is taken before the first await: checked and taken in one synchronous step, so
      // requests arriving together cannot all pass the check (12 at once with a cap of 2 admitted 5).
      if (active >= deps.maxClients) {
        reply.header('retry-after', 5);
        throw new HttpError(503, 'too_many_streams', `this server already serves ${deps.maxClients} event streams; retry shortly`);
      }
      active++;
      let slotHeld = true;
      const releaseSlot = (): void => {
        if (slotHeld) active--;
        slotHeld = false;
      };
      let resumeFrom: string | undefined;
      let cursor: string;
      let gap = false;
      try {
        resumeFrom = req.headers['last-event-id'] ?? req.query.lastEventId;
        if (resumeFrom && !isRedisStreamId(resumeFrom)) throw new HttpError(400, 'invalid_last_event_id', `Last-Event-ID ${resumeFrom} is not a stream id (each part at most 18446744073709551615)`);
        // Resolve where to start before the headers go out, so a Redis failure is still a clean error.
        const [first] = (await deps.redis.xrange(deps.streamKey, '-', '+', 'COUNT', 1)) as Row[];
        if (resumeFrom) {
          cursor = resumeFrom;
          gap = resumeFrom !== '0-0' && first !== undefined && compareIds(first[0], resumeFrom) > 0 && !(await idExists(deps.redis, deps.streamKey, resumeFrom));
        } else {
          const [last] = (await deps.redis.xrevrange(deps.streamKey, '+', '-', 'COUNT', 1)) as Row[];
          cursor = last?.[0] ?? '0-0';
        }
      } catch (err) {
        releaseSlot();
        throw err;
      }

      const conn = deps.connect();
      conn.on('error', () => undefined);
      const raw = reply.raw;
      let ended = false;
      let expiry: NodeJS.Timeout | undefined;
      const end = (): void => {
        if (ended) return;
        ended = true;
        open.delete(end);
        releaseSlot();
        if (expiry) clearTimeout(expiry);
        conn.disconnect();
        if (!raw.writableEnded) raw.end();
      };
      open.add(end);
      if (req.sessionId && deps.sessionStreams) {
        const forget = deps.sessionStreams.add(req.sessionId, end);
        raw.on('close', forget);
      }
      raw.on('close', end);
      raw.on('error', end);
      reply.hijack();
      // The client may have gone during the awaits above, before 'close' had a listener.
      if (raw.destroyed || req.raw.socket?.destroyed === true) {
        end();
        return reply;
      }
      raw.writeHead(200, {
        ...(reply.getHeaders() as Record<string, string>),
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-request-id': req.id,
      });
      // The starting point as an id without data: a browser takes it as its last event id without
      // dispatching anything, so a stream dropped before its first event resumes from here, not
      // from wherever the stream is by the time it reconnects (a gap).
      raw.write(`retry: 3000\nid: ${cursor}\n: connected${resumeFrom ? `, replaying after ${resumeFrom}` : ''}\n\n`);
      if (gap) raw.write(`event: resync\ndata: {"reason":"events after ${resumeFrom} were trimmed; reload the full state"}\n\n`);
      // A stream outlives no credential: it ends when the token does (an OIDC JWT's exp), saying so.
      const expiresAt = req.principal?.expiresAt;
      if (expiresAt !== undefined) {
        const closeExpired = (): void => {
          const left = expiresAt - Date.now();
          if (left > 0) {
            expiry = setTimeout(closeExpired, Math.min(left, MAX_TIMER_MS));
            return;
          }
          if (!ended) raw.write('event: expired\ndata: {"reason":"the bearer token expired; reconnect with a fresh one"}\n\n');
          end();
        };
        closeExpired();
      }

      void (async () => {
        try {
          if (!ended) await conn.connect();
          while (!ended) {
            const res = (await conn.xread('COUNT', 200, 'BLOCK', deps.heartbeatMs, 'STREAMS', deps.streamKey, cursor)) as Array<[string, Row[]]> | null;
            if (ended) break;
            const rows = res?.[0]?.[1] ?? [];
            if (rows.length === 0) {
              // A session signed out elsewhere (another API process) ends its streams here too.
              if (req.sessionAlive && !(await req.sessionAlive())) {
                if (!ended) raw.write('event: expired\ndata: {"reason":"the session has ended; sign in again"}\n\n');
                break;
              }
              raw.write(': heartbeat\n\n');
              continue;
            }
            for (const [id, fields] of rows) {
              cursor = id;
              const data = fields[1] ?? '{}';
              // Batch changes carry their kind in a field of their own (state/batches.ts): named without parsing.
              const kind = fields[2] === 't' && fields[3] === 'batch' ? 'batch' : 'rotation';
              if (!raw.write(`id: ${id}\nevent: ${kind}\ndata: ${data}\n\n`)) await drained(raw);
              if (ended) break;
            }
          }
        } catch (err) {
          if (!ended) req.log.warn({ err: { message: (err as Error).message } }, 'event stream ended by a Redis error');
        } finally {
          end();
        }
      })();
      return reply;
    },
  );
};

function drained(raw: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      raw.off('drain', done);
      raw.off('close', done);
      resolve();
    };
    raw.on('drain', done);
    raw.on('close', done);
  });
}

function compareIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt);
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt);
  return am === bm ? (as === bs ? 0 : as < bs ? -1 : 1) : am < bm ? -1 : 1;
}

async function idExists(redis: Redis, key: string, id: string): Promise<boolean> {
  const rows = (await redis.xrange(key, id, id)) as Row[];
  return rows.length > 0;
}
