/**
 * Where Rotator's Redis is, as configuration says (src/config.ts reads it): one server by URL, a
 * Sentinel-managed primary, or a Redis Cluster. Pure: no connection here (state/redis.ts connects).
 */
import type { Secret } from '../domain/secret.ts';

export interface HostPort {
  host: string;
  port: number;
}

/** TLS towards Redis (and towards the Sentinels): on or off, and the CA that signed their certificates. */
export interface RedisTls {
  /** REDIS_TLS_CA_FILE: a PEM file; without it Node's default CAs are trusted. */
  caFile?: string;
}

export type RedisTarget =
  /** REDIS_URL (redis://, rediss:// or a unix socket path); REDIS_USERNAME and REDIS_PASSWORD when the URL carries none. */
  | { kind: 'url'; url: string; username?: string; password?: Secret; tls?: RedisTls }
  /** REDIS_SENTINELS + REDIS_SENTINEL_NAME: ask the Sentinels for the primary, follow its failovers. */
  | { kind: 'sentinel'; sentinels: HostPort[]; name: string; sentinelPassword?: Secret; username?: string; password?: Secret; db: number; tls?: RedisTls }
  /** REDIS_CLUSTER_NODES: any of the cluster's nodes; the rest are discovered. */
  | { kind: 'cluster'; nodes: HostPort[]; username?: string; password?: Secret; tls?: RedisTls };

/**
 * The hash tag Redis Cluster would hash a key starting with `prefix` by, or undefined when the
 * prefix does not fix one. Redis hashes the text between the first `{` and the first `}` after
 * it, when that text is not empty; otherwise the whole key. So a prefix fixes every key's slot
 * only if that closing brace is inside the prefix itself: `{rotator}` and `app:{rotator}` do,
 * `rotator`, `{}rotator` (an empty tag: the whole key is hashed) and `{rotator` (the tag would end
 * somewhere in each key) do not.
 */
export function prefixHashTag(prefix: string): string | undefined {
  const open = prefix.indexOf('{');
  if (open < 0) return undefined;
  const close = prefix.indexOf('}', open + 1);
  if (close < 0 || close === open + 1) return undefined;
  return prefix.slice(open + 1, close);
}

/** Why a prefix cannot be used on a Redis Cluster, or undefined when it can. */
export function clusterPrefixProblem(prefix: string): string | undefined {
  if (prefixHashTag(prefix) !== undefined) return undefined;
  return (
    `REDIS_PREFIX "${prefix}" has no hash tag, so in a Redis Cluster Rotator's keys (and BullMQ's, under "${prefix}:bull") would hash to different slots, ` +
    `and every Lua script and MULTI that touches several of them would fail with CROSSSLOT: use a prefix whose first "{…}" is complete and not empty, such as {rotator}`
  );
}

/** The target as logs may show it: hosts and the Sentinel name, never a password. */
export function describeRedisTarget(t: RedisTarget, urlLocation: (url: string) => string): string {
  const list = (hs: HostPort[]): string => hs.map((h) => `${h.host}:${h.port}`).join(',');
  switch (t.kind) {
    case 'url':
      return urlLocation(t.url);
    case 'sentinel':
      return `sentinel ${t.name} via ${list(t.sentinels)}${t.tls ? ' (tls)' : ''}`;
    case 'cluster':
      return `cluster ${list(t.nodes)}${t.tls ? ' (tls)' : ''}`;
  }
}
