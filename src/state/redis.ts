import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { HostPort, RedisTarget } from './redis-target.ts';

/**
 * Every connection to Rotator's Redis is made here, from the configured target (redis-target.ts):
 * one server by URL, a Sentinel-managed primary or a Redis Cluster.
 *
 * Roles. BullMQ workers need `maxRetriesPerRequest: null` (blocking commands survive a reconnect);
 * the shared connection (records, audit, Twilio cap, leases) fails fast instead of queueing
 * commands while Redis is down.
 *
 * `autoPipeline`: commands issued in the same tick leave in one write. A worker's many small
 * commands gain (at fleet scale it halves the socket writes per rotation); an API serving list
 * pages loses — each request then waits behind the whole batch's replies, 60 KB a rotations page:
 * without it the page route measured 8,200 rather than 6,200 requests/s at 50 connections, p99
 * 17 rather than 27 ms. So a process pipelines when it runs a worker.
 *
 * Sentinel: ioredis asks the Sentinels for the primary whenever it (re)connects, so a primary
 * that died is followed once the Sentinels promote another; a READONLY reply (a demoted primary
 * still answering) reconnects and resends. Not `failoverDetector`: in a chaos run its reaction to
 * +switch-master left a connection ended ("Connection is closed") instead of reconnected. Cluster: ioredis routes each command by its keys' slot, and
 * every key carries the prefix's hash tag (config-redis.ts), so each script and MULTI has one slot.
 *
 * The Cluster client is returned typed as `Redis`: both implement ioredis's Commander (every
 * command, pipeline, multi, evalsha), which is all the repositories use; what differs (duplicate,
 * status) goes through this module (duplicateRedis) or BullMQ, which knows both.
 */
export function connectRedis(target: string | RedisTarget, role: 'worker' | 'shared', opts: { autoPipeline?: boolean; overrides?: RedisOptions } = {}): Redis {
  const t: RedisTarget = typeof target === 'string' ? { kind: 'url', url: target } : target;
  const options: RedisOptions = {
    ...(role === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 2, enableOfflineQueue: true, connectTimeout: 5_000, enableAutoPipelining: opts.autoPipeline ?? false }),
    lazyConnect: false,
    ...opts.overrides,
  };
  return connectTarget(t, options);
}

/** A new connection like `conn` (same target, same credentials), with `overrides`: for the event stream's blocking reads. */
export function duplicateRedis(conn: Redis, overrides: RedisOptions): Redis {
  if ((conn as unknown as { isCluster?: boolean }).isCluster) {
    const cluster = conn as unknown as Cluster;
    const { retryStrategy, enableOfflineQueue, lazyConnect, ...nodeOptions } = overrides;
    return cluster.duplicate([], {
      redisOptions: { ...cluster.options.redisOptions, ...nodeOptions },
      ...(lazyConnect !== undefined ? { lazyConnect } : {}),
      ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
      ...(retryStrategy ? { clusterRetryStrategy: (times: number) => retryStrategy(times) } : {}),
    }) as unknown as Redis;
  }
  return conn.duplicate(overrides);
}

function connectTarget(t: RedisTarget, options: RedisOptions): Redis {
  const tls = t.tls ? { ...(t.tls.caFile ? { ca: readFileSync(t.tls.caFile) } : {}) } : undefined;
  switch (t.kind) {
    case 'url':
      return new Redis(t.url, { ...options, ...(t.username ? { username: t.username } : {}), ...(t.password ? { password: t.password.reveal() } : {}), ...(tls ? { tls } : {}) });
    case 'sentinel':
      return new Redis({
        ...options,
        sentinels: t.sentinels,
        name: t.name,
        role: 'master',
        db: t.db,
        // A primary demoted by a failover may still answer, read-only: reconnect (to the new one) and resend.
        reconnectOnError: (err) => (/^READONLY/.test(err.message) ? 2 : false),
        ...(t.username ? { username: t.username } : {}),
        ...(t.password ? { password: t.password.reveal() } : {}),
        ...(t.sentinelPassword ? { sentinelPassword: t.sentinelPassword.reveal() } : {}),
        ...(tls ? { tls, sentinelTLS: tls, enableTLSForSentinelMode: true } : {}),
      });
    case 'cluster': {
      const { lazyConnect, enableOfflineQueue, enableAutoPipelining, retryStrategy, ...nodeOptions } = options;
      const clusterOptions: ClusterOptions = {
        lazyConnect: lazyConnect ?? false,
        enableOfflineQueue: enableOfflineQueue ?? true,
        enableAutoPipelining: enableAutoPipelining ?? false,
        ...(retryStrategy ? { clusterRetryStrategy: (times: number) => retryStrategy(times) } : {}),
        redisOptions: {
          ...nodeOptions,
          ...(t.username ? { username: t.username } : {}),
          ...(t.password ? { password: t.password.reveal() } : {}),
          ...(tls ? { tls } : {}),
        },
      };
      return new Cluster(t.nodes, clusterOptions) as unknown as Redis;
    }
  }
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
  // Sentinel and Cluster add their own: no Sentinel answering, or no node, while a failover runs.
  if (e.name === 'ClusterAllFailedError') return true;
  return typeof e.message === 'string' && /^(Connection is closed|Stream isn't writeable|LOADING |TRYAGAIN |CLUSTERDOWN |MASTERDOWN |READONLY |All sentinels are unreachable|None of startup nodes is available|Failed to refresh slots cache)/.test(e.message);
}

/** Node's codes for a server certificate it does not trust (wrong CA, self-signed, expired, other name). */
const CERTIFICATE_REFUSED = /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE|CERT_REJECTED|ERR_TLS_CERT_ALTNAME_INVALID)$/;

export function isCertificateRefused(err: unknown): err is Error & { code: string } {
  return !!err && typeof err === 'object' && typeof (err as { code?: unknown }).code === 'string' && CERTIFICATE_REFUSED.test((err as { code: string }).code);
}

/** The servers a target names: the URL's host, the Sentinels, the Cluster's seed nodes (a unix socket: none). */
function listedServers(t: RedisTarget): HostPort[] {
  if (t.kind === 'sentinel') return t.sentinels;
  if (t.kind === 'cluster') return t.nodes;
  if (t.url.startsWith('/')) return [];
  try {
    const u = new URL(t.url);
    return u.hostname ? [{ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 6379) }] : [];
  } catch {
    return [];
  }
}

/**
 * What a TLS handshake with the target's listed servers finds, made as Rotator's connections make
 * it (the same CA): `refused` — a server's certificate is not trusted (its code and Node's reason);
 * `speaksTls` — the target is configured without TLS but a server completed a TLS handshake. For
 * start-up's error line: ioredis reports both only as "Connection is closed" when it goes through
 * the Sentinels.
 */
export async function probeTls(t: RedisTarget, timeoutMs: number): Promise<{ refused?: { server: string; code: string; reason: string }; speaksTls?: string }> {
  const ca = t.tls?.caFile ? readFileSync(t.tls.caFile) : undefined;
  const one = (s: HostPort): Promise<{ server: string; ok: boolean; err?: Error & { code?: string } }> =>
    new Promise((resolve) => {
      const server = `${s.host}:${s.port}`;
      const socket = tlsConnect({ host: s.host, port: s.port, ...(isIP(s.host) ? {} : { servername: s.host }), ...(ca ? { ca } : {}), rejectUnauthorized: !!t.tls });
      const done = (ok: boolean, err?: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        resolve({ server, ok, ...(err ? { err } : {}) });
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      socket.once('secureConnect', () => done(true));
      socket.once('error', (err) => done(false, err));
    });
  const results = await Promise.all(listedServers(t).map(one));
  const refused = results.find((r) => isCertificateRefused(r.err));
  if (refused) return { refused: { server: refused.server, code: refused.err!.code!, reason: refused.err!.message } };
  const tlsServer = t.tls ? undefined : results.find((r) => r.ok);
  return tlsServer ? { speaksTls: tlsServer.server } : {};
}

export { startEmbeddedRedis, openDataDirRedis, EmbeddedRedisError, RedisNotInstalledError, type EmbeddedRedis } from './embedded-redis.ts';
