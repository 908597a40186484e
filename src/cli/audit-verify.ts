import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { connectRedis } from '../state/redis.ts';
import { ConfigError, loadConfig } from '../config.ts';
import { EmbeddedRedisError, openDataDirRedis, type DataDirRedis } from '../state/embedded-redis.ts';
import { StartupError, waitForRedis } from '../startup.ts';
import { CHAIN_HASH, exportedChainSource, redisChainSource, verifyAuditChain, type ChainSource } from '../state/audit.ts';

const USAGE = 'usage: npm run audit:verify [-- [--file <export.jsonl>] [--expect-head <sha256 hex>]]';

/**
 * `npm run audit:verify`: walk the audit chain in Redis (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES, REDIS_PREFIX; without them
 * the data directory's embedded Redis, DATA_DIR: the running one, or started here on its data and
 * stopped again) — or an export, with `-- --file <export.jsonl>` — and report the first broken
 * link. `--expect-head <hash>`: a head this command printed earlier, which the operator kept
 * outside Redis; the chain must still contain it (else it was cut short or re-hashed). Exit 0 when
 * intact, 1 when broken, 2 when it could not check.
 */
async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const headAt = args.indexOf('--expect-head');
  const keptHead = headAt >= 0 ? args[headAt + 1]?.toLowerCase() : undefined;
  if (headAt >= 0 && !(keptHead && CHAIN_HASH.test(keptHead))) {
    console.error(`--expect-head needs the 64-hex-digit head hash audit:verify printed earlier\n${USAGE}`);
    return 2;
  }
  const fileAt = args.indexOf('--file');
  let source: ChainSource;
  let redis: Redis | undefined;
  let embedded: DataDirRedis | undefined;
  if (fileAt >= 0) {
    const path = args[fileAt + 1];
    if (!path) {
      console.error(USAGE);
      return 2;
    }
    source = exportedChainSource(readFileSync(path, 'utf8').split('\n'));
  } else {
    const cfg = loadConfig(undefined, { requireTwilio: false });
    let target = cfg.redis;
    if (target) await waitForRedis(target, cfg.redisConnectTimeoutMs);
    else {
      embedded = await openDataDirRedis(join(cfg.dataDir, 'redis'));
      target = { kind: 'url', url: embedded.url };
      console.error(`checking the embedded Redis of ${cfg.dataDir} (${embedded.started ? 'started for this check' : 'running'}, ${embedded.location})`);
    }
    redis = connectRedis(target, 'shared', { overrides: { maxRetriesPerRequest: 2, lazyConnect: true } });
    redis.on('error', () => undefined);
    await redis.connect();
    source = redisChainSource(redis, cfg.redisPrefix);
  }
  try {
    const verdict = await verifyAuditChain(source, keptHead ? { keptHead } : {});
    if (verdict.ok) {
      console.log(`chain intact: ${verdict.count} entries (head ${verdict.head})`);
      if (verdict.kept) console.log(`the kept head is entry ${verdict.kept.id}, followed by ${verdict.kept.newer} newer entries`);
      return 0;
    }
    console.log(`chain BROKEN after ${verdict.count} good entries: ${verdict.problem} at ${verdict.at}: ${verdict.message}`);
    return 1;
  } finally {
    redis?.disconnect();
    await embedded?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const known = err instanceof ConfigError || err instanceof StartupError || err instanceof EmbeddedRedisError;
    console.error(known ? (err as Error).message : `audit:verify could not check the chain: ${(err as Error).message}`);
    process.exit(2);
  },
);
