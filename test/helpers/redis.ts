import { afterAll, beforeAll } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';

/**
 * A real Redis of its own for the describe block that calls this: an embedded redis-server in a
 * temporary directory, started before the block's tests and stopped (directory removed) after.
 * `connection()` is a client connected to it, valid inside the tests.
 */
export function useEmbeddedRedis(name: string, options: RedisOptions = {}): { connection(): Redis; url(): string } {
  let dir: string | undefined;
  let server: EmbeddedRedis | undefined;
  let redis: Redis | undefined;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `rotator-${name}-`));
    server = await startEmbeddedRedis({ dir, persist: false });
    redis = new Redis(server.url, options);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return {
    connection: () => {
      if (!redis) throw new Error('useEmbeddedRedis: the connection exists only inside the tests');
      return redis;
    },
    url: () => server!.url,
  };
}
