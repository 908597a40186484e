import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { connectRedis } from '../state/redis.ts';
import { loadConfig } from '../config.ts';
import { openDataDirRedis, type DataDirRedis } from '../state/embedded-redis.ts';
import { waitForRedis } from '../startup.ts';
import { combinedChainSource, exportedChainSource, redisChainSource, verifyAuditChain, type ChainSource } from '../state/audit.ts';

export { CHAIN_HASH } from '../state/audit.ts';

/**
 * Where the chain to check comes from: an export's JSON lines, or this host's Redis (REDIS_URL,
 * REDIS_SENTINELS or REDIS_CLUSTER_NODES, else DATA_DIR's embedded one), optionally preceded by
 * the export files a trim wrote (`exports`: files, in order).
 */
export type AuditChainInput = { lines: readonly string[] } | { redis: true; exports?: readonly string[] };

export interface AuditChainIo {
  /** The verdict (stdout). */
  out(line: string): void;
  /** What is being checked (stderr). */
  note(line: string): void;
}

/** intact; broken (a link or a checkpoint fails); unverifiable (a checkpoint and no AUDIT_CHECKPOINT_KEY to check it). */
export type AuditChainVerdict = 'intact' | 'broken' | 'unverifiable';

/**
 * Walk the audit chain and print the verdict: `chain intact: N entries (head <hash>)`, or where it
 * is broken. `keptHead`: a head printed earlier and kept outside Redis; the chain must still
 * contain it. A chain trimmed past AUDIT_RETENTION_DAYS starts at a checkpoint signed with
 * AUDIT_CHECKPOINT_KEY, which must be set to verify it. Errors (Redis unreachable, bad
 * configuration) are thrown: the caller decides the exit code. Shared by `npm run audit:verify`
 * and `rotator audit verify`.
 */
export async function checkAuditChain(input: AuditChainInput, keptHead: string | undefined, io: AuditChainIo): Promise<AuditChainVerdict> {
  const cfg = loadConfig(undefined, { requireTwilio: false });
  const checkpointKey = cfg.auditRetention.checkpointKey?.reveal();
  let source: ChainSource;
  let redis: Redis | undefined;
  let embedded: DataDirRedis | undefined;
  if ('lines' in input) source = exportedChainSource(input.lines);
  else {
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
    const exports = input.exports ?? [];
    if (exports.length) {
      source = combinedChainSource(exportedChainSource(exports.flatMap((f) => readFileSync(f, 'utf8').split('\n'))), source);
      io.note(`checking ${exports.length} export file(s) followed by the stream in Redis`);
    }
  }
  try {
    const verdict = await verifyAuditChain(source, { ...(keptHead ? { keptHead } : {}), ...(checkpointKey ? { checkpointKey } : {}) });
    if (verdict.ok) {
      io.out(`chain intact: ${verdict.count} entries (head ${verdict.head})`);
      if (verdict.anchoredBy) io.out(`the chain starts after a trim, vouched for by the signed checkpoint ${verdict.anchoredBy}`);
      if (verdict.kept) io.out(`the kept head is entry ${verdict.kept.id}, followed by ${verdict.kept.newer} newer entries`);
      return 'intact';
    }
    if (verdict.problem === 'checkpoint-unverifiable') {
      io.out(`could not check the chain: ${verdict.message}`);
      return 'unverifiable';
    }
    io.out(`chain BROKEN after ${verdict.count} good entries: ${verdict.problem} at ${verdict.at}: ${verdict.message}`);
    return 'broken';
  } finally {
    redis?.disconnect();
    await embedded?.stop();
  }
}

/** A file, or a directory's export files (*.jsonl, in name order: a trim names them by stream id). */
export function exportFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .filter((n) => n.endsWith('.jsonl') && !n.startsWith('.'))
    .sort()
    .map((n) => join(path, n));
}
