import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { prefixHashTag } from '../../src/state/redis-target.ts';
import { replicaWaiter } from '../../src/state/replication.ts';
import { waitForRedis } from '../../src/startup.ts';
import { connectRedis, isRedisUnavailable } from '../../src/state/redis.ts';
import { startRedisCluster, type TestRedisCluster } from '../helpers/redis-topologies.ts';
import { useEmbeddedRedis } from '../helpers/redis.ts';
import type { Redis } from 'ioredis';

const base = { TWILIO_ACCOUNT_SID: `AC${'0'.repeat(32)}`, TWILIO_AUTH_TOKEN: 'x'.repeat(32) };
const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig({ ...base, ...env });
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
};

describe('Redis topology configuration (issue 18)', () => {
  it('reads Sentinel settings, with passwords kept as secrets and WAIT for one replica by default', () => {
    const cfg = loadConfig({ ...base, REDIS_SENTINELS: '10.0.0.1:26379, sentinel-b:26380,[::1]:26381', REDIS_SENTINEL_NAME: 'mymaster', REDIS_SENTINEL_PASSWORD: 'sentinel-pw', REDIS_PASSWORD: 'data-pw' });
    expect(cfg.redis).toMatchObject({ kind: 'sentinel', name: 'mymaster', db: 0, sentinels: [{ host: '10.0.0.1', port: 26379 }, { host: 'sentinel-b', port: 26380 }, { host: '::1', port: 26381 }] });
    expect(JSON.stringify(cfg.redis)).not.toMatch(/sentinel-pw|data-pw/);
    expect(cfg.redisPrefix).toBe('rotator');
    expect(cfg.redisWait).toEqual({ replicas: 1, timeoutMs: 500 });
  });

  it('takes REDIS_USERNAME and REDIS_PASSWORD for a REDIS_URL that carries none, the password kept as a secret', () => {
    const cfg = loadConfig({ ...base, REDIS_URL: 'rediss://redis.internal:6380', REDIS_USERNAME: 'rotator', REDIS_PASSWORD: 'data-pw' });
    expect(cfg.redis).toMatchObject({ kind: 'url', url: 'rediss://redis.internal:6380', username: 'rotator', tls: {} });
    expect(JSON.stringify(cfg.redis)).not.toContain('data-pw');
  });

  it('keeps single-server key names, and no WAIT, when only REDIS_URL is set', () => {
    const cfg = loadConfig({ ...base, REDIS_URL: 'redis://127.0.0.1:6379' });
    expect(cfg.redis).toEqual({ kind: 'url', url: 'redis://127.0.0.1:6379' });
    expect(cfg.redisPrefix).toBe('rotator');
    expect(cfg.redisWait.replicas).toBe(0);
  });

  it('on a Cluster defaults the prefix to {rotator} and accepts any prefix whose first {…} is complete', () => {
    expect(loadConfig({ ...base, REDIS_CLUSTER_NODES: '127.0.0.1:7000' }).redisPrefix).toBe('{rotator}');
    expect(loadConfig({ ...base, REDIS_CLUSTER_NODES: '127.0.0.1:7000', REDIS_PREFIX: 'prod:{rot}' }).redisPrefix).toBe('prod:{rot}');
  });

  it.each([['rotator'], ['{rotator'], ['{}rotator'], ['rot}{ator']])('refuses the Cluster prefix %s, saying why', (prefix) => {
    const p = problems({ REDIS_CLUSTER_NODES: '127.0.0.1:7000', REDIS_PREFIX: prefix });
    expect(p).toHaveLength(1);
    expect(p[0]).toContain(`REDIS_PREFIX "${prefix}" has no hash tag`);
    expect(p[0]).toMatch(/different slots.*CROSSSLOT.*\{rotator\}/);
  });

  it('hashes like Redis: the first non-empty {…}', () => {
    expect(prefixHashTag('{rotator}')).toBe('rotator');
    expect(prefixHashTag('a{b}{c}')).toBe('b');
    expect(prefixHashTag('{}{c}')).toBeUndefined();
    expect(prefixHashTag('a}{b')).toBeUndefined();
  });

  it.each([
    [{ REDIS_URL: 'redis://a:1', REDIS_CLUSTER_NODES: 'b:2' }, 'set one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER_NODES, not REDIS_URL and REDIS_CLUSTER_NODES'],
    [{ REDIS_SENTINELS: 'a:26379' }, 'REDIS_SENTINEL_NAME is required with REDIS_SENTINELS'],
    [{ REDIS_SENTINEL_NAME: 'mymaster' }, 'REDIS_SENTINEL_NAME needs REDIS_SENTINELS'],
    [{ REDIS_SENTINELS: 'a', REDIS_SENTINEL_NAME: 'm' }, 'REDIS_SENTINELS must be a comma-separated list of host:port (got "a")'],
    [{ REDIS_CLUSTER_NODES: 'a:99999' }, 'REDIS_CLUSTER_NODES must be a comma-separated list of host:port (got "a:99999")'],
    [{ REDIS_URL: 'redis://:pw@a:1', REDIS_PASSWORD: 'pw' }, 'REDIS_URL carries a password and REDIS_PASSWORD is set too'],
    [{ REDIS_URL: 'redis://a:1', REDIS_TLS: 'true' }, 'REDIS_TLS=true with a redis:// REDIS_URL: write rediss:// instead'],
    [{ REDIS_URL: 'rediss://a:1', REDIS_TLS_CA_FILE: '/nonexistent/ca.pem' }, 'REDIS_TLS_CA_FILE /nonexistent/ca.pem does not exist'],
    [{ REDIS_CLUSTER_NODES: 'a:1', REDIS_WAIT_REPLICAS: '1' }, 'REDIS_WAIT_REPLICAS is not supported with REDIS_CLUSTER_NODES'],
    [{ REDIS_PASSWORD: 'pw' }, 'REDIS_PASSWORD and REDIS_USERNAME need REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES'],
    [{ REDIS_URL: 'redis://app@a:1', REDIS_USERNAME: 'rotator' }, 'REDIS_URL carries a user name and REDIS_USERNAME is set too'],
  ])('names what to fix: %j', (env, message) => {
    expect(problems(env as Record<string, string>).join('\n')).toContain(message);
  });
});

describe('what a failover looks like to a caller', () => {
  it.each([
    ['All sentinels are unreachable. Retrying from scratch after 10ms.'],
    ['None of startup nodes is available'],
    ['Failed to refresh slots cache.'],
    ['READONLY You can\'t write against a read only replica.'],
    ['CLUSTERDOWN The cluster is down'],
  ])('%s is Redis being unavailable (transient), not a reason to fail a rotation', (message) => {
    expect(isRedisUnavailable(new Error(message))).toBe(true);
  });
});

describe('waiting for a replica (REDIS_WAIT_REPLICAS)', () => {
  const redis = useEmbeddedRedis('redis-wait');

  it('shares one WAIT between the changes written while another is in flight, and stops waiting for 10 s after one falls short', async () => {
    const conn = redis.connection();
    const waits: number[] = [];
    const counting = new Proxy(conn, {
      get: (target, prop, receiver) => (prop === 'wait' ? (n: number, ms: number) => (waits.push(ms), target.wait(n, ms)) : Reflect.get(target, prop, receiver)),
    }) as Redis;
    const warnings: string[] = [];
    let now = 1_000;
    // An embedded Redis has no replica: each WAIT 1 gives 0 after its timeout.
    const replicate = replicaWaiter(counting, { replicas: 1, timeoutMs: 50, log: { warn: (m: string) => warnings.push(m) } as never, now: () => now });
    await Promise.all([replicate(), replicate(), replicate(), replicate()]);
    // The first WAIT, then one for the three that came while it was in flight.
    expect(waits).toHaveLength(2);
    expect(warnings[0]).toMatch(/only 0 of 1 Redis replica\(s\) acknowledged an API change within 50 ms/);
    await replicate();
    expect(waits).toHaveLength(2);
    now += 10_001;
    await replicate();
    expect(waits).toHaveLength(3);
  });
});

describe('start-up against the wrong kind of Redis', () => {
  let dir: string;
  let cluster: TestRedisCluster;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-cluster-startup-'));
    cluster = await startRedisCluster(dir);
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses REDIS_URL pointing at a Cluster node, saying to use REDIS_CLUSTER_NODES', async () => {
    await expect(waitForRedis(cluster.urls[0]!, 5_000)).rejects.toThrow(`Redis at redis://${cluster.nodes[0]} is a node of a Redis Cluster: list the cluster's nodes in REDIS_CLUSTER_NODES instead of REDIS_URL`);
  });

  it('connects through REDIS_CLUSTER_NODES, and a multi-key script under the prefix runs in one slot', async () => {
    const cfg = loadConfig({ ...base, ...cluster.env });
    await waitForRedis(cfg.redis!, 5_000);
    const r = connectRedis(cfg.redis!, 'shared');
    try {
      const keys = [`${cfg.redisPrefix}:a`, `${cfg.redisPrefix}:b:c`, `${cfg.redisPrefix}:audit`];
      expect(await r.eval("for i, k in ipairs(KEYS) do redis.call('SET', k, i) end return #KEYS", keys.length, ...keys)).toBe(3);
      // Without the tag the same script is refused: what the prefix check prevents.
      await expect(r.eval("redis.call('SET', KEYS[1], 1) redis.call('SET', KEYS[2], 2) return 1", 2, 'rotator:a', 'rotator:b')).rejects.toThrow(/CROSSSLOT|slot/i);
    } finally {
      r.disconnect();
    }
  });
});
