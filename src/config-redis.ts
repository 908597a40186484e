import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Secret } from './domain/secret.ts';
import { clusterPrefixProblem, type HostPort, type RedisTarget, type RedisTls } from './state/redis-target.ts';

/**
 * The Redis part of the configuration (config.ts calls this with its readers): which of REDIS_URL,
 * REDIS_SENTINELS and REDIS_CLUSTER_NODES is set, the credentials and TLS that go with it, and the
 * key prefix — which on a Cluster must carry a hash tag (see redis-target.ts).
 *
 * Key names stay what they were on one server and under Sentinel (a replica holds the same keys, so
 * no migration): only a Cluster needs the tag, and Rotator could not use a Cluster before, so
 * there is no existing data whose keys would change. On a Cluster REDIS_PREFIX defaults to
 * `{rotator}`, and a prefix without a tag is refused.
 */
export function readRedisTarget(
  str: (name: string) => string | undefined,
  int: (name: string, fallback: number, min?: number) => number,
  problems: string[],
): { redis?: RedisTarget; redisPrefix: string; redisWait: { replicas: number; timeoutMs: number } } {
  const out = readTarget(str, int, problems);
  // With Sentinel an API change waits for one replica by default (plugins/replication.ts); elsewhere for none.
  const replicas = int('REDIS_WAIT_REPLICAS', out.redis?.kind === 'sentinel' ? 1 : 0, 0);
  if (replicas > 0 && out.redis?.kind === 'cluster') problems.push('REDIS_WAIT_REPLICAS is not supported with REDIS_CLUSTER_NODES (WAIT is per node): set it to 0');
  if (replicas > 0 && !out.redis) problems.push('REDIS_WAIT_REPLICAS needs REDIS_URL or REDIS_SENTINELS: the embedded Redis has no replica');
  return { ...out, redisWait: { replicas, timeoutMs: int('REDIS_WAIT_TIMEOUT_MS', 500, 1) } };
}

function readTarget(
  str: (name: string) => string | undefined,
  int: (name: string, fallback: number, min?: number) => number,
  problems: string[],
): { redis?: RedisTarget; redisPrefix: string } {
  const url = str('REDIS_URL');
  const sentinels = str('REDIS_SENTINELS');
  const clusterNodes = str('REDIS_CLUSTER_NODES');
  const given = [url && 'REDIS_URL', sentinels && 'REDIS_SENTINELS', clusterNodes && 'REDIS_CLUSTER_NODES'].filter(Boolean);
  if (given.length > 1) problems.push(`set one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER_NODES, not ${given.join(' and ')}`);

  const password = str('REDIS_PASSWORD');
  const username = str('REDIS_USERNAME');
  const tls = readTls(str, problems, url);
  const secret = password ? new Secret(password) : undefined;
  const prefixGiven = str('REDIS_PREFIX');

  if (clusterNodes && given.length === 1) {
    const nodes = hostPorts('REDIS_CLUSTER_NODES', clusterNodes, problems);
    const redisPrefix = prefixGiven ?? '{rotator}';
    const problem = clusterPrefixProblem(redisPrefix);
    if (problem) problems.push(problem);
    return { redis: { kind: 'cluster', nodes, ...(username ? { username } : {}), ...(secret ? { password: secret } : {}), ...(tls ? { tls } : {}) }, redisPrefix };
  }
  const redisPrefix = prefixGiven ?? 'rotator';
  if (str('REDIS_SENTINEL_NAME') && !sentinels) problems.push('REDIS_SENTINEL_NAME needs REDIS_SENTINELS (the Sentinels\' host:port list)');
  if (sentinels && given.length === 1) {
    const name = str('REDIS_SENTINEL_NAME');
    if (!name) problems.push('REDIS_SENTINEL_NAME is required with REDIS_SENTINELS: the name of the primary the Sentinels monitor (sentinel monitor <name> …), e.g. mymaster');
    const sentinelPassword = str('REDIS_SENTINEL_PASSWORD');
    return {
      redis: {
        kind: 'sentinel',
        sentinels: hostPorts('REDIS_SENTINELS', sentinels, problems),
        name: name ?? '',
        ...(sentinelPassword ? { sentinelPassword: new Secret(sentinelPassword) } : {}),
        ...(username ? { username } : {}),
        ...(secret ? { password: secret } : {}),
        db: int('REDIS_DB', 0, 0),
        ...(tls ? { tls } : {}),
      },
      redisPrefix,
    };
  }
  if (str('REDIS_SENTINEL_PASSWORD') && !sentinels) problems.push('REDIS_SENTINEL_PASSWORD needs REDIS_SENTINELS');
  if (url && given.length === 1) {
    if (password && /^rediss?:\/\/[^/@]*:[^/@]*@/i.test(url)) problems.push('REDIS_URL carries a password and REDIS_PASSWORD is set too: keep one (REDIS_PASSWORD keeps it out of the URL)');
    if (username && /^rediss?:\/\/[^/@:]+(:[^/@]*)?@/i.test(url)) problems.push('REDIS_URL carries a user name and REDIS_USERNAME is set too: keep one');
    return { redis: { kind: 'url', url, ...(username ? { username } : {}), ...(secret ? { password: secret } : {}), ...(tls ? { tls } : {}) }, redisPrefix };
  }
  if (!given.length && (password || username)) problems.push('REDIS_PASSWORD and REDIS_USERNAME need REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES (the embedded Redis has its own password)');
  return { redisPrefix };
}

/** TLS: rediss:// turns it on for REDIS_URL, REDIS_TLS=true for Sentinel and Cluster; REDIS_TLS_CA_FILE trusts a private CA. */
function readTls(str: (name: string) => string | undefined, problems: string[], url: string | undefined): RedisTls | undefined {
  const flag = str('REDIS_TLS');
  if (flag !== undefined && flag !== 'true' && flag !== 'false') problems.push(`REDIS_TLS must be true or false (got "${flag}")`);
  const caFile = str('REDIS_TLS_CA_FILE');
  if (caFile && !existsSync(resolve(caFile))) problems.push(`REDIS_TLS_CA_FILE ${resolve(caFile)} does not exist: give the PEM file of the CA that signed Redis's certificate`);
  if (url) {
    const secure = /^rediss:\/\//i.test(url);
    if (flag === 'true' && !secure) problems.push('REDIS_TLS=true with a redis:// REDIS_URL: write rediss:// instead (REDIS_TLS is for REDIS_SENTINELS and REDIS_CLUSTER_NODES)');
    if (caFile && !secure) problems.push('REDIS_TLS_CA_FILE is set but REDIS_URL is redis://: use rediss:// to connect with TLS');
    return secure ? (caFile ? { caFile: resolve(caFile) } : {}) : undefined;
  }
  if (caFile && flag !== 'true') problems.push('REDIS_TLS_CA_FILE is set but REDIS_TLS is not true');
  return flag === 'true' ? (caFile ? { caFile: resolve(caFile) } : {}) : undefined;
}

/** `host:port,host:port` (IPv6 as `[::1]:26379`). */
function hostPorts(name: string, raw: string, problems: string[]): HostPort[] {
  const out: HostPort[] = [];
  for (const item of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(item);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port < 1 || port > 65_535) {
      problems.push(`${name} must be a comma-separated list of host:port (got "${item}")`);
      continue;
    }
    out.push({ host: (m[1] ?? m[2])!, port });
  }
  if (!out.length && !problems.some((p) => p.startsWith(name))) problems.push(`${name} must list at least one host:port`);
  return out;
}
