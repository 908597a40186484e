import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { connectRedis } from '../state/redis.ts';
import { loadConfig } from '../config.ts';
import { openDataDirRedis, type DataDirRedis } from '../state/embedded-redis.ts';
import { waitForRedis } from '../startup.ts';
import { exportedChainSource, redisChainSource, verifyAuditChain, type ChainSource } from '../state/audit.ts';

export { CHAIN_HASH } from '../state/audit.ts';

/** Where the chain to check comes from: an export's JSON lines, or this host's Redis (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES, else DATA_DIR's embedded one). */
export type AuditChainInput = { lines: readonly string[] } | { redis: true };

export interface AuditChainIo {
  /** The verdict (stdout). */
  out(line: string): void;
  /** What is being checked (stderr). */
  note(line: string): void;
}

/**
 * Walk the audit chain and print the verdict: `chain intact: N entries (head <hash>)`, or where it
 * is broken. `keptHead`: a head printed earlier and kept outside Redis; the chain must still
 * contain it. True when intact. Errors (Redis unreachable, bad configuration) are thrown: the
 * caller decides the exit code. Shared by `npm run audit:verify` and `rotator audit verify`.
 */
export async function checkAuditChain(input: AuditChainInput, keptHead: string | undefined, io: AuditChainIo): Promise<boolean> {
  let source: ChainSource;
  let redis: Redis | undefined;
  let embedded: DataDirRedis | undefined;
  if ('lines' in input) source = exportedChainSource(input.lines);
  else {
    const cfg = loadConfig(undefined, { requireTwilio: false });
    let target = cfg.redis;
    if (target) await waitForRedis(target, cfg.redisConnectTimeoutMs);
    else {
      embedded = await openDataDirRedis(join(cfg.dataDir, 'redis'));
      target = { kind: 'url', url: embedded.url };
      io.note(`checking the embedded Redis of ${cfg.dataDir} (${embedded.started ? 'started for this check' : 'running'}, ${embedded.location})`);
    }
    redis = connectRedis(target, 'shared', { overrides: { maxRetriesPerRequest: 2, lazyConnect: true } });
    redis.on('error', () => undefined);
    await redis.connect();
    source = redisChainSource(redis, cfg.redisPrefix);
  }
  try {
    const verdict = await verifyAuditChain(source, keptHead ? { keptHead } : {});
    if (verdict.ok) {
      io.out(`chain intact: ${verdict.count} entries (head ${verdict.head})`);
      if (verdict.kept) io.out(`the kept head is entry ${verdict.kept.id}, followed by ${verdict.kept.newer} newer entries`);
      return true;
    }
    io.out(`chain BROKEN after ${verdict.count} good entries: ${verdict.problem} at ${verdict.at}: ${verdict.message}`);
    return false;
  } finally {
    redis?.disconnect();
    await embedded?.stop();
  }
}
