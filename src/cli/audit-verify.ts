import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { ConfigError, loadConfig } from '../config.ts';
import { exportedChainSource, redisChainSource, verifyAuditChain, type ChainSource } from '../state/audit.ts';

/**
 * `npm run audit:verify`: walk the audit chain in Redis (REDIS_URL, REDIS_PREFIX) — or an export,
 * with `-- --file <export.jsonl>` — and report the first broken link. Exit 0 when intact, 1 when
 * broken, 2 when it could not check.
 */
async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const fileAt = args.indexOf('--file');
  let source: ChainSource;
  let redis: Redis | undefined;
  if (fileAt >= 0) {
    const path = args[fileAt + 1];
    if (!path) {
      console.error('usage: npm run audit:verify [-- --file <export.jsonl>]');
      return 2;
    }
    source = exportedChainSource(readFileSync(path, 'utf8').split('\n'));
  } else {
    const cfg = loadConfig(undefined, { requireTwilio: false });
    if (!cfg.redisUrl) {
      console.error('set REDIS_URL to the Redis that holds the audit trail');
      return 2;
    }
    redis = new Redis(cfg.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: true });
    await redis.connect();
    source = redisChainSource(redis, cfg.redisPrefix);
  }
  try {
    const verdict = await verifyAuditChain(source);
    if (verdict.ok) {
      console.log(`chain intact: ${verdict.count} entries (head ${verdict.head})`);
      return 0;
    }
    console.log(`chain BROKEN after ${verdict.count} good entries: ${verdict.problem} at ${verdict.at}: ${verdict.message}`);
    return 1;
  } finally {
    redis?.disconnect();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof ConfigError ? err.message : `audit:verify could not check the chain: ${(err as Error).message}`);
    process.exit(2);
  },
);
