import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ConfigError, loadConfig } from '../config.ts';
import { EmbeddedRedisError, openDataDirRedis, type DataDirRedis } from '../state/embedded-redis.ts';
import { StartupError, waitForRedis } from '../startup.ts';
import { CHAIN_HASH, combinedChainSource, exportedChainSource, redisChainSource, verifyAuditChain, type ChainSource } from '../state/audit.ts';

const USAGE = 'usage: npm run audit:verify [-- [--file <export.jsonl>] [--export <file or directory>]… [--expect-head <sha256 hex>]]';

/**
 * `npm run audit:verify`: walk the audit chain in Redis (REDIS_URL, REDIS_PREFIX; without REDIS_URL
 * the data directory's embedded Redis, DATA_DIR: the running one, or started here on its data and
 * stopped again) — or an export, with `-- --file <export.jsonl>` — and report the first broken
 * link. `--expect-head <hash>`: a head this command printed earlier, which the operator kept
 * outside Redis; the chain must still contain it (else it was cut short or re-hashed).
 *
 * A chain trimmed past AUDIT_RETENTION_DAYS starts at a signed checkpoint: AUDIT_CHECKPOINT_KEY
 * must be set to verify it. `--export <file or directory>` (repeatable; a directory means its
 * *.jsonl files): the exports a trim wrote, followed by the stream in Redis — one chain from its
 * genesis (or from a checkpoint) to the head. Exit 0 when intact, 1 when broken, 2 when it could
 * not check.
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
  const exports: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] !== '--export') continue;
    const path = args[i + 1];
    if (!path) {
      console.error(`--export needs a file or a directory\n${USAGE}`);
      return 2;
    }
    exports.push(...exportFiles(path));
  }
  const cfg = loadConfig(undefined, { requireTwilio: false });
  const checkpointKey = cfg.auditRetention.checkpointKey?.reveal();
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
    let url = cfg.redisUrl;
    if (url) await waitForRedis(url, cfg.redisConnectTimeoutMs);
    else {
      embedded = await openDataDirRedis(join(cfg.dataDir, 'redis'));
      url = embedded.url;
      console.error(`checking the embedded Redis of ${cfg.dataDir} (${embedded.started ? 'started for this check' : 'running'}, ${embedded.location})`);
    }
    redis = new Redis(url, { maxRetriesPerRequest: 2, lazyConnect: true });
    redis.on('error', () => undefined);
    await redis.connect();
    source = redisChainSource(redis, cfg.redisPrefix);
    if (exports.length) {
      source = combinedChainSource(exportedChainSource(exports.flatMap((f) => readFileSync(f, 'utf8').split('\n'))), source);
      console.error(`checking ${exports.length} export file(s) followed by the stream in Redis`);
    }
  }
  try {
    const verdict = await verifyAuditChain(source, { ...(keptHead ? { keptHead } : {}), ...(checkpointKey ? { checkpointKey } : {}) });
    if (verdict.ok) {
      console.log(`chain intact: ${verdict.count} entries (head ${verdict.head})`);
      if (verdict.anchoredBy) console.log(`the chain starts after a trim, vouched for by the signed checkpoint ${verdict.anchoredBy}`);
      if (verdict.kept) console.log(`the kept head is entry ${verdict.kept.id}, followed by ${verdict.kept.newer} newer entries`);
      return 0;
    }
    if (verdict.problem === 'checkpoint-unverifiable') {
      console.log(`could not check the chain: ${verdict.message}`);
      return 2;
    }
    console.log(`chain BROKEN after ${verdict.count} good entries: ${verdict.problem} at ${verdict.at}: ${verdict.message}`);
    return 1;
  } finally {
    redis?.disconnect();
    await embedded?.stop();
  }
}

/** A file, or a directory's export files (*.jsonl, in name order: a trim names them by stream id). */
function exportFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .filter((n) => n.endsWith('.jsonl') && !n.startsWith('.'))
    .sort()
    .map((n) => join(path, n));
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const known = err instanceof ConfigError || err instanceof StartupError || err instanceof EmbeddedRedisError;
    console.error(known ? (err as Error).message : `audit:verify could not check the chain: ${(err as Error).message}`);
    process.exit(2);
  },
);
