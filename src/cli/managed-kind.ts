import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import type { CredentialKind, CredentialRef } from '../domain/credential.ts';
import { CredentialRepository } from '../state/credentials.ts';
import { openDataDirRedis, type DataDirRedis } from '../state/embedded-redis.ts';
import { connectRedis } from '../state/redis.ts';
import { waitForRedis } from '../startup.ts';

/**
 * The kind of a managed credential, read from this host's Redis (REDIS_URL, REDIS_SENTINELS or
 * REDIS_CLUSTER_NODES, else DATA_DIR's embedded one) for a command-line tool. A credential Rotator
 * does not manage, or a data directory with no Redis yet (nothing managed), is an api-key. Reads
 * only.
 */
export async function managedKind(cfg: Pick<Config, 'redis' | 'redisPrefix' | 'redisConnectTimeoutMs' | 'dataDir'>, ref: CredentialRef): Promise<CredentialKind> {
  let target = cfg.redis;
  let embedded: DataDirRedis | undefined;
  if (target) await waitForRedis(target, cfg.redisConnectTimeoutMs);
  else {
    const dir = join(cfg.dataDir, 'redis');
    if (!existsSync(dir)) return 'api-key';
    embedded = await openDataDirRedis(dir);
    target = { kind: 'url', url: embedded.url };
  }
  const redis = connectRedis(target, 'shared', { overrides: { maxRetriesPerRequest: 2, lazyConnect: true } });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const managed = await new CredentialRepository(redis, cfg.redisPrefix).get(ref);
    return managed?.kind ?? 'api-key';
  } finally {
    redis.disconnect();
    await embedded?.stop();
  }
}
