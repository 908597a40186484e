import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.ts';
import { EmbeddedRedisError } from '../state/embedded-redis.ts';
import { StartupError } from '../startup.ts';
import { CHAIN_HASH, checkAuditChain, exportFiles } from './audit-chain.ts';

const USAGE = 'usage: npm run audit:verify [-- [--file <export.jsonl>] [--export <file or directory>]… [--expect-head <sha256 hex>]]';

/**
 * `npm run audit:verify`: walk the audit chain in Redis (REDIS_URL, REDIS_SENTINELS or
 * REDIS_CLUSTER_NODES, REDIS_PREFIX; without them the data directory's embedded Redis, DATA_DIR:
 * the running one, or started here on its data and stopped again) — or an export, with
 * `-- --file <export.jsonl>` — and report the first broken link. `--expect-head <hash>`: a head
 * this command printed earlier, which the operator kept outside Redis; the chain must still
 * contain it (else it was cut short or re-hashed).
 *
 * A chain trimmed past AUDIT_RETENTION_DAYS starts at a signed checkpoint: AUDIT_CHECKPOINT_KEY
 * must be set to verify it. `--export <file or directory>` (repeatable; a directory means its
 * *.jsonl files): the exports a trim wrote, followed by the stream in Redis — one chain from its
 * genesis (or from a checkpoint) to the head. Exit 0 when intact, 1 when broken, 2 when it could
 * not check. `rotator audit verify` does the same (src/cli/audit-chain.ts), and can also check the
 * API's export.
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
  if (fileAt >= 0 && !args[fileAt + 1]) {
    console.error(USAGE);
    return 2;
  }
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
  const input = fileAt >= 0 ? { lines: readFileSync(args[fileAt + 1]!, 'utf8').split('\n') } : { redis: true as const, exports };
  const verdict = await checkAuditChain(input, keptHead, { out: (l) => console.log(l), note: (l) => console.error(l) });
  return verdict === 'intact' ? 0 : verdict === 'broken' ? 1 : 2;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const known = err instanceof ConfigError || err instanceof StartupError || err instanceof EmbeddedRedisError;
    console.error(known ? (err as Error).message : `audit:verify could not check the chain: ${(err as Error).message}`);
    process.exit(2);
  },
);
